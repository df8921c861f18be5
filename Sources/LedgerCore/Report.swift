/// Where a report's duration samples come from: sorted arrays after a replay, or the store's index.
public protocol DurationSamples {
    /// The number of samples of `measure`.
    func count(_ measure: Measure) throws -> Int
    /// The `k`-th smallest sample of `measure`, 1-based.
    func kthSmallest(_ measure: Measure, _ k: Int) throws -> Int64?
}

/// The pilot report of CONTRACT §4, rendered from the projections.
public enum PilotReport {
    /// Nearest rank: the ⌈p·n/100⌉-th smallest.
    public static func nearestRank(_ p: Int, _ n: Int) -> Int { max(1, (p * n + 99) / 100) }

    /// Renders the report. Every stage, event type, measure and state is present, zeros included.
    public static func render(counters: [CounterKey: Int64], durations: some DurationSamples, position: UInt64,
                              headHash: String, asOf: Timestamp?, window: ReportWindow) throws -> JSONObject {
        func value(_ k: CounterKey) -> Int64 { counters[k] ?? 0 }
        func stages(_ dim: CounterKey.Dimension, _ code: UInt32, _ list: [Stage]) -> JSONValue {
            .object(JSONObject(list.map { stage in
                (stage.name, .object(JSONObject([
                    ("cases", .int(value(CounterKey(dim, code, UInt8(stage.rawValue), .cases)))),
                    ("persons", .int(value(CounterKey(dim, code, UInt8(stage.rawValue), .persons)))),
                ])))
            }))
        }
        func split(_ dim: CounterKey.Dimension, _ list: [Stage]) -> JSONValue {
            .object(JSONObject(codes(dim, in: counters).map { (CounterKey.name(dim, $0), stages(dim, $0, list)) }))
        }
        func typeCounts(_ dim: CounterKey.Dimension, _ code: UInt32) -> JSONValue {
            .object(JSONObject(EventType.allCases.map { t in
                (t.rawValue, .int(value(CounterKey(dim, code, t.index, .count))))
            }))
        }
        var durationMembers: [(key: String, value: JSONValue)] = []
        for m in Measure.allCases {
            let n = try durations.count(m)
            let p50: JSONValue = n == 0 ? .null : .int(try durations.kthSmallest(m, nearestRank(50, n)) ?? 0)
            let p90: JSONValue = n == 0 ? .null : .int(try durations.kthSmallest(m, nearestRank(90, n)) ?? 0)
            durationMembers.append((m.name, .object(JSONObject([("count", .int(Int64(n))), ("p50_seconds", p50), ("p90_seconds", p90)]))))
        }
        return JSONObject([
            ("position", .int(Int64(position))),
            ("head_hash", .string(headHash)),
            ("as_of", asOf.map { .string($0.description) } ?? .null),
            ("window", .object(JSONObject([("start", .string(window.start)), ("end", .string(window.end))]))),
            ("funnel", stages(.all, 0, Stage.allCases)),
            ("by_office_country", split(.officeCountry, Stage.allCases)),
            ("by_nationality", split(.nationality, Stage.allCases)),
            ("by_pathway", split(.pathway, Stage.referralStages)),
            ("weekly", .array(window.weekCodes.map { week in
                .object(JSONObject([("week", .string(ISOWeek.name(code: week))), ("counts", typeCounts(.weekly, UInt32(week)))]))
            })),
            ("outside_window", typeCounts(.outside, 0)),
            ("durations", .object(JSONObject(durationMembers))),
            ("states", .object(JSONObject(CaseStatus.allCases.map { s in
                (s.name, .int(value(CounterKey(.states, 0, s.rawValue, .count))))
            }))),
        ])
    }

    /// The pathway split by office country, `{OFFICE:{PATHWAY:{PSTAGE:{"cases":n,"persons":n}}}}`: an
    /// analysts' extra beside the report (`pathway_by_office.csv`), not part of CONTRACT §4's shape.
    public static func pathwaysByOffice(counters: [CounterKey: Int64]) -> JSONObject {
        var tree: [UInt32: [UInt32]] = [:]
        for code in codes(.officePathway, in: counters) { tree[code >> 8, default: []].append(code & 0xFF) }
        func byName(_ a: UInt32, _ b: UInt32, _ dim: CounterKey.Dimension) -> Bool {
            CounterKey.name(dim, a) < CounterKey.name(dim, b)
        }
        return JSONObject(tree.keys.sorted { byName($0, $1, .officeCountry) }.map { office in
            (CounterKey.name(.officeCountry, office), .object(JSONObject(tree[office]!.sorted { byName($0, $1, .pathway) }.map { pathway in
                (CounterKey.name(.pathway, pathway), .object(JSONObject(Stage.referralStages.map { stage in
                    let code = office << 8 | pathway
                    return (stage.name, .object(JSONObject([
                        ("cases", .int(counters[CounterKey(.officePathway, code, UInt8(stage.rawValue), .cases)] ?? 0)),
                        ("persons", .int(counters[CounterKey(.officePathway, code, UInt8(stage.rawValue), .persons)] ?? 0)),
                    ])))
                })))
            })))
        })
    }

    /// The key codes of `dim` that have a count, in the order of their names.
    static func codes(_ dim: CounterKey.Dimension, in counters: [CounterKey: Int64]) -> [UInt32] {
        Set(counters.filter { $0.key.dimension == dim && $0.value != 0 }.map(\.key.code))
            .map { (code: $0, name: CounterKey.name(dim, $0)) }
            .sorted { $0.name < $1.name }
            .map(\.code)
    }

    /// The splits whose small cells `suppress` hides.
    public static let splitKeys = ["by_office_country", "by_nationality", "by_pathway"]

    /// Replaces every count from 1 to `minCell`−1 in the splits by null (CONTRACT §5).
    public static func suppress(_ report: JSONObject, minCell: Int) -> JSONObject {
        guard minCell > 1 else { return report }
        var out = report
        for (i, m) in out.members.enumerated() where splitKeys.contains(m.key) {
            out.members[i].value = suppressCounts(m.value, minCell: Int64(minCell))
        }
        return out
    }

    /// Suppresses every count from 1 to `minCell`−1 anywhere in `split` (a split in its own right).
    public static func suppressAll(_ split: JSONObject, minCell: Int) -> JSONObject {
        guard minCell > 1, case .object(let o) = suppressCounts(.object(split), minCell: Int64(minCell)) else { return split }
        return o
    }

    static func suppressCounts(_ v: JSONValue, minCell: Int64) -> JSONValue {
        switch v {
        case .int(let n) where n >= 1 && n < minCell: .null
        case .object(let o): .object(JSONObject(o.members.map { ($0.key, suppressCounts($0.value, minCell: minCell)) }))
        case .array(let a): .array(a.map { suppressCounts($0, minCell: minCell) })
        default: v
        }
    }
}

/// Duration samples held in memory, sorted on first use.
public struct SampleArrays: DurationSamples, Sendable {
    var samples: [[Int64]] = Array(repeating: [], count: Measure.allCases.count)
    var sorted = true

    public init() {}

    public mutating func add(_ m: Measure, _ seconds: Int64) {
        samples[Int(m.rawValue)].append(seconds)
        sorted = false
    }

    public mutating func sort() {
        guard !sorted else { return }
        for i in samples.indices { samples[i].sort() }
        sorted = true
    }

    public func count(_ m: Measure) -> Int { samples[Int(m.rawValue)].count }

    public func kthSmallest(_ m: Measure, _ k: Int) -> Int64? {
        precondition(sorted, "call sort() before reading percentiles")
        let list = samples[Int(m.rawValue)]
        return k >= 1 && k <= list.count ? list[k - 1] : nil
    }

    /// All samples of `m`, sorted.
    public func all(_ m: Measure) -> [Int64] { samples[Int(m.rawValue)] }
}

/// The projections rebuilt in memory from events in log order: the replay that `as_of` reports,
/// `ledgerctl replay` and `verify` use. Uses `CaseMachine.apply`, as ingestion does.
public struct Replay: Sendable {
    public let window: ReportWindow
    public let asOf: Instant?
    /// Each case's state, by case id.
    public private(set) var cases = StringTable<CaseState>(capacity: 1 << 16)
    public private(set) var counters = CounterTable()
    public private(set) var durations = SampleArrays()
    /// With `keepsPositions`: each case's latest position (same index as `cases`), and every
    /// duration sample with the position of the event that made it.
    public private(set) var lastPositions: [UInt64] = []
    public private(set) var samples: [(measure: Measure, seconds: Int64, position: UInt64)] = []
    public let keepsPositions: Bool
    /// Events applied, and skipped for being after `asOf`.
    public private(set) var applied = 0
    public private(set) var skipped = 0
    /// Reused for each event's delta.
    private var scratch = ProjectionDelta()
    /// `asOf` as written, for the report.
    private let asOfText: Timestamp?

    public init(window: ReportWindow, asOf: Timestamp? = nil, keepsPositions: Bool = false) {
        self.window = window
        self.asOf = asOf?.instant
        asOfText = asOf
        self.keepsPositions = keepsPositions
    }

    /// Applies the next event of the log.
    /// - Throws: `LedgerError` when the log holds an event its case does not allow: a log that
    ///   ingestion accepted never does, so this means the log was altered.
    /// - Returns: the duration samples the event added (none when it was after `asOf`).
    @discardableResult
    public mutating func apply(_ event: Event) throws(LedgerError) -> [(measure: Measure, seconds: Int64)] {
        try apply(event.facts)
    }

    /// Applies the next event of the log, given its facts (and its position, with `keepsPositions`).
    @discardableResult
    public mutating func apply(_ event: EventFacts, position: UInt64 = 0) throws(LedgerError) -> [(measure: Measure, seconds: Int64)] {
        if let asOf, event.at > asOf {
            skipped += 1
            return []
        }
        scratch.increments.removeAll(keepingCapacity: true)
        scratch.durations.removeAll(keepingCapacity: true)
        let index: Int
        if let i = cases.index(of: event.caseID) {
            try CaseMachine.apply(event, existing: &cases[value: i], window: window, delta: &scratch)
            index = i
        } else {
            let state = try CaseMachine.apply(event, to: nil, window: window, delta: &scratch)
            index = cases.index(of: event.caseID) { state }
        }
        if keepsPositions {
            if index == lastPositions.count { lastPositions.append(position) } else { lastPositions[index] = position }
        }
        scratch.apply(to: &counters)
        for d in scratch.durations {
            durations.add(d.measure, d.seconds)
            if keepsPositions { samples.append((d.measure, d.seconds, position)) }
        }
        applied += 1
        return scratch.durations
    }

    /// The report at this point of the replay.
    public mutating func report(position: UInt64, headHash: String) throws -> JSONObject {
        durations.sort()
        return try PilotReport.render(counters: counters.nonZero, durations: durations, position: position,
                                      headHash: headHash, asOf: asOfText, window: window)
    }
}
