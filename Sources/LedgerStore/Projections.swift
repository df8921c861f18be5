public import LedgerCore
import LMDBKit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension StoredEvent {
    /// The stored envelope, parsed and validated again (its canonical form is taken as stored:
    /// `ledgerctl verify` checks it).
    /// - Throws: `StoreError` naming the position when the stored bytes are no valid event.
    public func decodedEvent() throws -> Event {
        do {
            return try Event.validate(storedCanonical: Array(event))
        } catch {
            throw StoreError("the event at position \(position) is no longer valid: \(error)")
        }
    }
}

/// Duration samples read from the `durations` database inside one read transaction.
struct StoredSamples: DurationSamples {
    let txn: ReadTransaction
    let db: Database

    func count(_ m: Measure) throws -> Int {
        var n = 0
        try [m.rawValue].withUnsafeBytes { prefix in
            try txn.scan(db, from: prefix) { key, _ in
                guard key.first == m.rawValue else { return false }
                n += 1
                return true
            }
        }
        return n
    }

    func kthSmallest(_ m: Measure, _ k: Int) throws -> Int64? {
        var seen = 0
        var result: Int64?
        try [m.rawValue].withUnsafeBytes { prefix in
            try txn.scan(db, from: prefix) { key, _ in
                guard key.first == m.rawValue, key.count == 17 else { return false }
                seen += 1
                if seen == k {
                    result = Int64(bitPattern: Ledger.decodeUInt64(Array(key[1..<9])) ^ (1 << 63))
                    return false
                }
                return true
            }
        }
        return result
    }

    /// Every sample of `m`, ascending.
    func all(_ m: Measure) throws -> [Int64] {
        var out: [Int64] = []
        try [m.rawValue].withUnsafeBytes { prefix in
            try txn.scan(db, from: prefix) { key, _ in
                guard key.first == m.rawValue, key.count == 17 else { return false }
                out.append(Int64(bitPattern: Ledger.decodeUInt64(Array(key[1..<9])) ^ (1 << 63)))
                return true
            }
        }
        return out
    }
}

extension Ledger {
    /// The projection counters as stored.
    func storedCounters() throws -> [CounterKey: Int64] {
        try environment.read { txn in try storedCounters(txn) }
    }

    func storedCounters(_ txn: some Transaction) throws -> [CounterKey: Int64] {
        var out: [CounterKey: Int64] = [:]
        try txn.scan(projections, from: nil) { key, value in
            if let k = CounterKey(encoded: Array(key)) {
                out[k] = Int64(bitPattern: Ledger.decodeUInt64(Array(value)))
            }
            return true
        }
        return out
    }

    /// The pilot report (CONTRACT §4). Without `asOf` it is read from the stored projections in one
    /// snapshot; with `asOf` it is computed by a replay of the log up to the head, keeping the
    /// events whose `at` ≤ `asOf`. `position` and `head_hash` name the head either way.
    public func report(asOf: Timestamp? = nil) throws -> JSONObject {
        if let asOf { return try replayReport(asOf: asOf).report }
        return try environment.read { txn in
            let head = try txn.get(meta, key: Ledger.headKey).flatMap(Ledger.decodeHead) ?? .empty
            return try PilotReport.render(counters: try storedCounters(txn), durations: StoredSamples(txn: txn, db: durations),
                                          position: head.position, headHash: head.hashHex, asOf: nil, window: window)
        }
    }

    /// The report and, beside it, the pathway split by office country (`PilotReport.pathwaysByOffice`),
    /// from the same snapshot or replay.
    public func reportWithExtras(asOf: Timestamp? = nil) throws -> (report: JSONObject, pathwaysByOffice: JSONObject) {
        if let asOf {
            let r = try replayReport(asOf: asOf)
            return (r.report, PilotReport.pathwaysByOffice(counters: r.replay.counters))
        }
        return try environment.read { txn in
            let head = try txn.get(meta, key: Ledger.headKey).flatMap(Ledger.decodeHead) ?? .empty
            let counters = try storedCounters(txn)
            let report = try PilotReport.render(counters: counters, durations: StoredSamples(txn: txn, db: durations),
                                                position: head.position, headHash: head.hashHex, asOf: nil, window: window)
            return (report, PilotReport.pathwaysByOffice(counters: counters))
        }
    }

    /// Replays the log up to the current head into memory and renders the report.
    /// - Parameter progress: events replayed so far and the head, now and then.
    public func replayReport(asOf: Timestamp?, progress: (UInt64, UInt64) -> Void = { _, _ in })
        throws -> (report: JSONObject, replay: Replay) {
        let head = try self.head()
        var replay = Replay(window: window, asOf: asOf)
        var n: UInt64 = 0
        try forEach(to: head.position) { stored in
            do { try replay.apply(try stored.decodedEvent()) } catch let e as LedgerError {
                throw StoreError("the log breaks the case rules at position \(stored.position): \(e.message); run `ledgerctl verify`")
            }
            n += 1
            if n % 8192 == 0 { progress(n, head.position) }
        }
        progress(n, head.position)
        let report = try replay.report(position: head.position, headHash: head.hashHex)
        return (report, replay)
    }

    /// Rebuilds the case records and every projection from the log: a replay in memory (the same
    /// `Replay` as `as_of` reports and verify), then one write transaction that replaces the stored
    /// ones with sorted bulk inserts. A crash leaves the previous projections and the marker that
    /// they need a rebuild.
    /// - Parameter progress: events done and the head, now and then.
    /// - Throws: `StoreError` when the log holds an event its case does not allow (altered log).
    public func rebuildProjections(progress: (UInt64, UInt64) -> Void = { _, _ in }) throws {
        try writer.withLock { state in
            let head = state.head
            var replay = Replay(window: window)
            var positions: [String: [UInt64]] = [:]
            var durationKeys: [[UInt8]] = []
            var n: UInt64 = 0
            try forEach(to: head.position) { stored in
                let event = try stored.decodedEvent()
                let samples: [(measure: Measure, seconds: Int64)]
                do { samples = try replay.apply(event) } catch let error as LedgerError {
                    throw StoreError("the log breaks the case rules at position \(stored.position): \(error.message); run `ledgerctl verify`")
                }
                positions[event.caseID, default: []].append(stored.position)
                for s in samples { durationKeys.append(Ledger.durationKey(s.measure, s.seconds, stored.position)) }
                n += 1
                if n % 8192 == 0 { progress(n, head.position) }
            }
            progress(n, head.position)
            let caseRows = replay.cases.map { (id, caseState) in
                (key: Array(id.utf8), value: CaseRecord(state: caseState, positions: positions[id] ?? []).encoded())
            }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
            durationKeys.sort { $0.lexicographicallyPrecedes($1) }
            let counters = replay.counters
            let outcome = withMapGrowth { () throws in
                try environment.write { txn in
                    for db in [cases, projections, durations] { try txn.clear(db) }
                    // Keys in LMDB's order: appended at the end of each tree, page by page.
                    for row in caseRows { try txn.put(cases, key: row.key, value: row.value, flags: .append) }
                    for key in durationKeys { try txn.put(durations, key: key, value: [], flags: .append) }
                    for (k, v) in counters {
                        try txn.put(projections, key: k.encoded, value: Ledger.encodeUInt64(UInt64(bitPattern: v)))
                    }
                    try txn.put(meta, key: Ledger.windowKey, value: Ledger.encodeWindow(window))
                    try txn.put(meta, key: Ledger.projectedKey, value: Ledger.encodeUInt64(head.position))
                    try txn.put(meta, key: Ledger.projectionVersionKey, value: Ledger.encodeUInt64(Ledger.projectionVersion))
                }
            }
            if case .failure(let e) = outcome { throw e }
            state.counters = counters
        }
    }

    /// The projections as stored, in one snapshot: for comparisons with a replay.
    public struct StoredProjections: Sendable, Equatable {
        public let head: Head
        public let projected: UInt64
        public let counters: [CounterKey: Int64]
        /// Each case's state, encoded, and the positions of its events.
        public let cases: [String: [UInt8]]
        public let casePositions: [String: [UInt64]]
        public let durations: [[Int64]]
    }

    public func storedProjections() throws -> StoredProjections {
        try environment.read { txn in
            let head = try txn.get(meta, key: Ledger.headKey).flatMap(Ledger.decodeHead) ?? .empty
            let projected = try txn.get(meta, key: Ledger.projectedKey).map(Ledger.decodeUInt64) ?? 0
            var caseMap: [String: [UInt8]] = [:]
            var positions: [String: [UInt64]] = [:]
            try txn.scan(cases, from: nil) { key, value in
                let id = String(decoding: key, as: UTF8.self)
                if let record = CaseRecord.decode(Array(value)) {
                    caseMap[id] = record.state.encoded()
                    positions[id] = record.positions
                } else {
                    caseMap[id] = []  // unreadable: differs from any replayed state
                }
                return true
            }
            let samples = StoredSamples(txn: txn, db: durations)
            return StoredProjections(head: head, projected: projected, counters: try storedCounters(txn), cases: caseMap,
                                     casePositions: positions, durations: try Measure.allCases.map { try samples.all($0) })
        }
    }

    /// Compares the stored projections with a replay of the log up to `head`, and, given
    /// `casePositions`, each case's list of event positions; nil when they agree, else what differs.
    public func compareProjections(with replay: Replay, head: Head, casePositions: [String: [UInt64]]? = nil) throws -> String? {
        let stored = try storedProjections()
        guard stored.head == head else { return "the head moved to \(stored.head.position) during the check" }
        guard stored.projected == head.position else {
            return "the projections reflect position \(stored.projected), the head is \(head.position); run `ledgerctl replay`"
        }
        if stored.counters != replay.counters {
            let keys = Set(stored.counters.keys).union(replay.counters.keys).sorted()
            let k = keys.first { stored.counters[$0] != replay.counters[$0] }!
            return "the projection counter \(k.dimension)/\(k.key)/\(k.slot)/\(k.metric) is \(stored.counters[k] ?? 0) stored, \(replay.counters[k] ?? 0) replayed"
        }
        if stored.cases.count != replay.cases.count {
            return "\(stored.cases.count) cases stored, \(replay.cases.count) replayed"
        }
        for (id, state) in replay.cases where stored.cases[id] != state.encoded() {
            return "case \(id) is stored in another state than the replay gives"
        }
        for m in Measure.allCases where stored.durations[Int(m.rawValue)] != replay.durations.all(m).sorted() {
            return "the \(m.name) samples differ from the replay"
        }
        if let casePositions {
            for (id, list) in casePositions where stored.casePositions[id] != list {
                return "case \(id) lists its events at positions \(stored.casePositions[id] ?? []), the log has them at \(list)"
            }
        }
        return nil
    }
}

extension Ledger {
    /// The map's size and the bytes of it in use.
    public var storage: (mapSize: Int, usedBytes: Int) {
        let info = environment.info()
        return (info.mapSize, info.usedBytes)
    }

    /// Writes a consistent, compacted copy of the ledger into `directory` (created mode 0700; it
    /// must not hold a ledger yet) while writers go on. The copy opens as a ledger.
    /// - Throws: `StoreError` naming the directory.
    public func backup(to directory: String) throws {
        if mkdir(directory, 0o700) != 0 {
            guard errno == EEXIST else {
                throw StoreError("cannot create the backup directory \(directory): \(String(cString: strerror(errno)))")
            }
            var st = stat()
            if stat(directory + "/data.mdb", &st) == 0 {
                throw StoreError("\(directory) already holds a ledger; choose an empty or new directory")
            }
        }
        do {
            try environment.copy(to: directory, compact: true)
        } catch {
            throw StoreError("the backup into \(directory) failed", underlying: error)
        }
        chmod(directory + "/data.mdb", 0o600)
    }
}
