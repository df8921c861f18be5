/// Where a report's duration samples come from: sorted arrays after a replay, or the store's index.
public protocol DurationSamples {
    /// The number of samples of `measure`.
    func count(_ measure: Measure) throws -> Int
    /// The `k`-th smallest sample of `measure`, 1-based.
    func kthSmallest(_ measure: Measure, _ k: Int) throws -> Int64?
}

/// The pilot report of CONTRACT §4 as values. `Report.make` computes it from the projections;
/// `json` writes `report.json` and the `report` response, `ReportFiles` the CSV files and
/// `ReportHTML` the page, all from this one model.
public struct Report: Sendable, Equatable {
    /// One figure of the funnel or of a split; a nil count was suppressed (`suppressed(minCell:)`).
    public struct Cell: Sendable, Equatable {
        public var cases: Int64?
        public var persons: Int64?
        public init(cases: Int64?, persons: Int64?) {
            self.cases = cases
            self.persons = persons
        }
    }

    /// The cells of `stages`, in that order: every stage of the funnel, or the referral stages of a
    /// pathway.
    public struct Stages: Sendable, Equatable {
        public let stages: [Stage]
        public var cells: [Cell]

        public subscript(_ stage: Stage) -> Cell {
            get { stages.firstIndex(of: stage).map { cells[$0] } ?? Cell(cases: 0, persons: 0) }
            set { if let i = stages.firstIndex(of: stage) { cells[i] = newValue } }
        }
    }

    /// One key of a split (an office country, a nationality, a pathway) and its stages.
    public struct Split: Sendable, Equatable {
        public var key: String
        public var stages: Stages
    }

    /// The pathway split of one office country.
    public struct OfficePathways: Sendable, Equatable {
        public var office: String
        public var pathways: [Split]
    }

    /// One ISO week of the window: the events of each type (`EventType.ordered`) in it.
    public struct Week: Sendable, Equatable {
        public var week: String
        public var counts: [Int64]
    }

    /// A duration measure: the samples and their nearest-rank percentiles (nil when there are none).
    public struct Duration: Sendable, Equatable {
        public var count: Int64
        public var p50: Int64?
        public var p90: Int64?
    }

    public var position: UInt64
    public var headHash: String
    public var asOf: Timestamp?
    public var window: ReportWindow
    public var funnel: Stages
    public var byOfficeCountry: [Split]
    public var byNationality: [Split]
    public var byPathway: [Split]
    /// The pathway split by office country: an analysts' extra (`pathway_by_office.csv`, the page),
    /// not part of CONTRACT §4's `report`.
    public var pathwaysByOffice: [OfficePathways]
    public var weekly: [Week]
    /// Events dated outside the window, by type (`EventType.ordered`).
    public var outsideWindow: [Int64]
    /// By `Measure.allCases`.
    public var durations: [Duration]
    /// Cases in each state, by `CaseStatus.allCases`.
    public var states: [Int64]
    /// The `min_cell` the splits were suppressed with (0: none).
    public var minCell: Int = 0

    /// Nearest rank: the ⌈p·n/100⌉-th smallest.
    public static func nearestRank(_ p: Int, _ n: Int) -> Int { max(1, (p * n + 99) / 100) }

    /// The report of the projections `counters` and `durations` at log position `position`.
    public static func make(counters: [CounterKey: Int64], durations: some DurationSamples, position: UInt64,
                            headHash: String, asOf: Timestamp?, window: ReportWindow) throws -> Report {
        func value(_ k: CounterKey) -> Int64 { counters[k] ?? 0 }
        func stages(_ dim: CounterKey.Dimension, _ code: UInt32, _ list: [Stage]) -> Stages {
            Stages(stages: list, cells: list.map { stage in
                Cell(cases: value(CounterKey(dim, code, UInt8(stage.rawValue), .cases)),
                     persons: value(CounterKey(dim, code, UInt8(stage.rawValue), .persons)))
            })
        }
        func split(_ dim: CounterKey.Dimension, _ list: [Stage]) -> [Split] {
            codes(dim, in: counters).map { Split(key: CounterKey.name(dim, $0), stages: stages(dim, $0, list)) }
        }
        func typeCounts(_ dim: CounterKey.Dimension, _ code: UInt32) -> [Int64] {
            EventType.ordered.map { value(CounterKey(dim, code, $0.index, .count)) }
        }
        var byOffice: [UInt32: [UInt32]] = [:]
        for code in codes(.officePathway, in: counters) { byOffice[code >> 8, default: []].append(code & 0xFF) }
        func byName(_ dim: CounterKey.Dimension) -> (UInt32, UInt32) -> Bool {
            { CounterKey.name(dim, $0) < CounterKey.name(dim, $1) }
        }
        let pathwaysByOffice = byOffice.keys.sorted(by: byName(.officeCountry)).map { office in
            OfficePathways(office: CounterKey.name(.officeCountry, office), pathways: byOffice[office]!.sorted(by: byName(.pathway)).map {
                Split(key: CounterKey.name(.pathway, $0), stages: stages(.officePathway, office << 8 | $0, Stage.referralStages))
            })
        }
        return Report(
            position: position, headHash: headHash, asOf: asOf, window: window,
            funnel: stages(.all, 0, Stage.allCases),
            byOfficeCountry: split(.officeCountry, Stage.allCases),
            byNationality: split(.nationality, Stage.allCases),
            byPathway: split(.pathway, Stage.referralStages),
            pathwaysByOffice: pathwaysByOffice,
            weekly: window.weekCodes.map { Week(week: ISOWeek.name(code: $0), counts: typeCounts(.weekly, UInt32($0))) },
            outsideWindow: typeCounts(.outside, 0),
            durations: try Measure.allCases.map { m in
                let n = try durations.count(m)
                return Duration(count: Int64(n),
                                p50: n == 0 ? nil : try durations.kthSmallest(m, nearestRank(50, n)),
                                p90: n == 0 ? nil : try durations.kthSmallest(m, nearestRank(90, n)))
            },
            states: CaseStatus.allCases.map { value(CounterKey(.states, 0, $0.rawValue, .count)) })
    }

    /// The key codes of `dim` that have a count, in the order of their names.
    static func codes(_ dim: CounterKey.Dimension, in counters: [CounterKey: Int64]) -> [UInt32] {
        Set(counters.filter { $0.key.dimension == dim && $0.value != 0 }.map(\.key.code))
            .map { (code: $0, name: CounterKey.name(dim, $0)) }
            .sorted { $0.name < $1.name }
            .map(\.code)
    }

    /// The report with every count from 1 to `minCell`−1 of the splits by office country,
    /// nationality and pathway (and of the pathway split by office) replaced by nil (CONTRACT §5).
    public func suppressed(minCell: Int) -> Report {
        guard minCell > 1 else { return self }
        func hide(_ v: Int64?) -> Int64? { v.flatMap { $0 >= 1 && $0 < Int64(minCell) ? nil : $0 } }
        func hide(_ splits: [Split]) -> [Split] {
            splits.map { s in
                var s = s
                s.stages.cells = s.stages.cells.map { Cell(cases: hide($0.cases), persons: hide($0.persons)) }
                return s
            }
        }
        var r = self
        r.byOfficeCountry = hide(byOfficeCountry)
        r.byNationality = hide(byNationality)
        r.byPathway = hide(byPathway)
        r.pathwaysByOffice = pathwaysByOffice.map { OfficePathways(office: $0.office, pathways: hide($0.pathways)) }
        r.minCell = minCell
        return r
    }

    /// The report as CONTRACT §4 shapes it (`report.json`, the `report` response).
    public var json: JSONObject {
        func count(_ v: Int64?) -> JSONValue { v.map { .int($0) } ?? .null }
        func stages(_ s: Stages) -> JSONValue {
            .object(JSONObject(zip(s.stages, s.cells).map { stage, cell in
                (stage.name, .object(JSONObject([("cases", count(cell.cases)), ("persons", count(cell.persons))])))
            }))
        }
        func split(_ list: [Split]) -> JSONValue { .object(JSONObject(list.map { ($0.key, stages($0.stages)) })) }
        func types(_ counts: [Int64]) -> JSONValue {
            .object(JSONObject(zip(EventType.ordered, counts).map { ($0.rawValue, .int($1)) }))
        }
        return JSONObject([
            ("position", .int(Int64(position))),
            ("head_hash", .string(headHash)),
            ("as_of", asOf.map { .string($0.description) } ?? .null),
            ("window", .object(JSONObject([("start", .string(window.start)), ("end", .string(window.end))]))),
            ("funnel", stages(funnel)),
            ("by_office_country", split(byOfficeCountry)),
            ("by_nationality", split(byNationality)),
            ("by_pathway", split(byPathway)),
            ("weekly", .array(weekly.map { .object(JSONObject([("week", .string($0.week)), ("counts", types($0.counts))])) })),
            ("outside_window", types(outsideWindow)),
            ("durations", .object(JSONObject(zip(Measure.allCases, durations).map { m, d in
                (m.name, .object(JSONObject([("count", .int(d.count)), ("p50_seconds", count(d.p50)), ("p90_seconds", count(d.p90))])))
            }))),
            ("states", .object(JSONObject(zip(CaseStatus.allCases, states).map { ($0.name, .int($1)) }))),
        ])
    }

    /// The pathway split by office country as JSON, `{OFFICE:{PATHWAY:{PSTAGE:{"cases":n,"persons":n}}}}`.
    public var pathwaysByOfficeJSON: JSONObject {
        func count(_ v: Int64?) -> JSONValue { v.map { .int($0) } ?? .null }
        return JSONObject(pathwaysByOffice.map { o in
            (o.office, .object(JSONObject(o.pathways.map { p in
                (p.key, .object(JSONObject(zip(p.stages.stages, p.stages.cells).map { stage, cell in
                    (stage.name, .object(JSONObject([("cases", count(cell.cases)), ("persons", count(cell.persons))])))
                })))
            })))
        })
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
    public mutating func report(position: UInt64, headHash: String) throws -> Report {
        durations.sort()
        return try Report.make(counters: counters.nonZero, durations: durations, position: position,
                               headHash: headHash, asOf: asOfText, window: window)
    }
}
