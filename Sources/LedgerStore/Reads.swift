public import LedgerCore
import LMDBKit
import Synchronization

/// The ledger's figures for `status` and metrics (`Ledger.status()`).
public struct LedgerStatus: Sendable {
    /// The last committed position and its hash.
    public let head: Head
    /// The position up to which the projections stored on disk are current.
    public let projectionsPosition: UInt64
    /// The map's size and the bytes of it in use.
    public let mapSize: Int
    public let mapUsed: Int
    /// The case records and the event ids the writer holds in memory.
    public let casesInMemory: Int
    public let idsInMemory: Int
}

/// A case as `{"op":"case"}` gives it.
public struct CaseHistory: Sendable {
    /// Nil for a case with no events.
    public let state: CaseState?
    public let events: [StoredEvent]
    public var version: UInt64 { state?.version ?? 0 }
}

extension Ledger {
    /// The current snapshot (`Snapshot`).
    var snapshot: Snapshot { published.withLock { $0 } }

    /// The head, the stored projections' position and the map's figures, as of the last commit.
    public func status() -> LedgerStatus {
        let s = snapshot
        let info = environment.info()
        return LedgerStatus(head: s.head, projectionsPosition: s.projected, mapSize: info.mapSize, mapUsed: info.usedBytes,
                            casesInMemory: s.casesInMemory, idsInMemory: s.idsInMemory)
    }

    /// The last committed position and hash.
    public var head: Head { snapshot.head }

    /// Runs `body` with the current snapshot and an LMDB read transaction opened after it was taken.
    func withSnapshot<T>(_ body: (Snapshot, ReadTransaction) throws -> T) throws(StoreError) -> T {
        let s = snapshot
        do {
            return try environment.read { txn in try body(s, txn) }
        } catch {
            throw StoreError.wrap(error, "reading the ledger", directory: directory)
        }
    }

    /// At most `limit` events from position `from` on, in order, up to the head.
    public func read(from: UInt64, limit: Int) throws(StoreError) -> [StoredEvent] {
        guard limit > 0 else { return [] }
        return try withSnapshot { s, txn in try read(txn, from: from, limit: limit, head: s.head.position) }
    }

    func read(_ txn: some Transaction, from: UInt64, limit: Int, head: UInt64) throws -> [StoredEvent] {
        var out: [StoredEvent] = []
        out.reserveCapacity(min(limit, 1024))
        try txn.scan(layout.events, from: max(from, 1)) { key, value in
            guard let position = Layout.decodeUInt64(key), position <= head else { return false }
            guard let e = StoredEvent(position: position, value: value) else { throw StoreError.unreadable(position) }
            out.append(e)
            return out.count < limit
        }
        return out
    }

    /// The event stored at `position`, or nil.
    public func event(at position: UInt64) throws(StoreError) -> StoredEvent? {
        try withSnapshot { _, txn in try event(txn, at: position) }
    }

    func event(_ txn: some Transaction, at position: UInt64) throws -> StoredEvent? {
        try withUnsafeBytes(of: position.bigEndian) { k in
            try txn.withValue(layout.events, key: k) { v in
                guard let e = StoredEvent(position: position, value: v) else { throw StoreError.unreadable(position) }
                return e
            }
        }
    }

    /// Calls `body` with every event from `from` to `to` (inclusive, at most the head) in order,
    /// reading in chunks of `chunk` events per read transaction.
    public func forEach(from: UInt64 = 1, to: UInt64 = .max, chunk: Int = 4096,
                        _ body: (StoredEvent) throws -> Void) throws {
        let last = min(to, head.position)
        var next = max(from, 1)
        while next <= last {
            let batch = try read(from: next, limit: min(chunk, Int(last - next + 1)))
            for e in batch { try body(e) }
            guard let end = batch.last else { return }
            next = end.position + 1
        }
    }

    /// A case's state and events as of the head: its events are found from its latest one back (each
    /// names its case's previous), and its state is what they make, applied in order.
    public func caseHistory(_ caseID: String) throws(StoreError) -> CaseHistory {
        try withSnapshot { s, txn in try caseHistory(caseID, s, txn) }
    }

    func caseHistory(_ caseID: String, _ s: Snapshot, _ txn: some Transaction) throws -> CaseHistory {
            let limit = s.head.position
            var latest: UInt64 = try storedCaseRecord(caseID, txn: txn)?.last ?? 0
            for p in s.recent.candidates(hash: keyHash(caseID), atOrBefore: limit) where p > latest {
                if try storedCase(txn, at: p, is: caseID) {
                    latest = p
                    break
                }
            }
            var facts: [EventFacts] = []
            var events: [StoredEvent] = []
            var next = latest
            while next != 0 {
                let found: (StoredEvent, EventFacts)? = try withUnsafeBytes(of: next.bigEndian) { k in
                    try txn.withValue(layout.events, key: k) { v in
                        guard let e = StoredEvent(position: next, value: v), let fb = StoredEvent.factsBytes(in: v),
                              let f = EventFacts.decode(fb, withID: false) else { throw StoreError.unreadable(next) }
                        return (e, f)
                    }
                }
                guard let (event, f) = found else {
                    throw StoreError(.corrupt, "case \(caseID)'s event at position \(next) is missing; run `ledgerctl verify`",
                                     directory: directory, database: "events", position: next)
                }
                // A checkpoint after the snapshot may name events after its head: those are left out.
                if next <= limit {
                    events.append(event)
                    facts.append(f)
                }
                next = f.previous
            }
            var state: CaseState?
            var delta = ProjectionDelta()
            for (k, f) in facts.reversed().enumerated() {
                do { state = try CaseMachine.apply(f, to: state, window: window, delta: &delta) } catch {
                    throw StoreError.brokenRule(events[events.count - 1 - k].position, error)
                }
                delta.increments.removeAll(keepingCapacity: true)
                delta.durations.removeAll(keepingCapacity: true)
            }
            return CaseHistory(state: state, events: events.reversed())
    }

    /// Whether the stored event at `position` belongs to case `caseID`.
    func storedCase(_ txn: some Transaction, at position: UInt64, is caseID: String) throws -> Bool {
        var id = caseID
        return try id.withUTF8 { want in
            try withUnsafeBytes(of: position.bigEndian) { k in
                try txn.withValue(layout.events, key: k) { v -> Bool in
                    guard let facts = StoredEvent.factsBytes(in: v), let have = EventFacts.caseBytes(in: facts) else {
                        throw StoreError.unreadable(position)
                    }
                    return have.elementsEqual(UnsafeRawBufferPointer(want))
                } ?? false
            }
        }
    }

    /// The pilot report (CONTRACT §4). Without `asOf` it comes from the projections at the head;
    /// with `asOf` from a replay of the log up to the head, keeping the events whose `at` ≤ `asOf`.
    /// Either way `position` and `head_hash` name the head.
    /// - Parameter progress: for a replay, events done and the head, now and then.
    public func report(asOf: Timestamp? = nil, progress: (UInt64, UInt64) -> Void = { _, _ in }) throws(StoreError) -> Report {
        if let asOf { return try replay(asOf: asOf, progress: progress).report }
        return try withSnapshot { s, txn in
            try Report.make(counters: s.counters.nonZero, durations: try samples(s, txn), position: s.head.position,
                            headHash: s.head.hashHex, asOf: nil, window: window)
        }
    }

    /// Every duration sample at the snapshot's head: those stored (up to the stored projections'
    /// position, at most the head) and the snapshot's own after it.
    func samples(_ s: Snapshot, _ txn: some Transaction) throws -> SampleArrays {
        let stored = min(try txn.get(layout.meta, key: Layout.MetaKey.projected.key).flatMap(Layout.decodeUInt64) ?? 0,
                         s.head.position)
        var out = SampleArrays()
        try txn.scan(layout.durations, from: nil) { key, _ in
            guard let d = Layout.decodeDurationKey(key) else {
                throw StoreError(.corrupt, "a stored duration sample cannot be read; run `ledgerctl replay`", directory: directory, database: "durations")
            }
            guard d.position <= stored else { return false }
            out.add(d.measure, d.seconds)
            return true
        }
        for d in s.samples?.all ?? [] where d.position > stored && d.position <= s.head.position { out.add(d.measure, d.seconds) }
        out.sort()
        return out
    }

    /// Replays the log up to the head in memory: the report with the events whose `at` ≤ `asOf`
    /// (all without it), and the replay itself.
    public func replay(asOf: Timestamp? = nil, progress: (UInt64, UInt64) -> Void = { _, _ in }) throws(StoreError) -> (report: Report, replay: Replay) {
        let head = self.head
        var replay = Replay(window: window, asOf: asOf)
        do {
            var next: UInt64 = 1
            while next <= head.position {
                try environment.read { txn in
                    try txn.scan(layout.events, from: next) { key, value in
                        guard let position = Layout.decodeUInt64(key), position <= head.position else { return false }
                        guard let fb = StoredEvent.factsBytes(in: value), let facts = EventFacts.decode(fb, withID: false) else {
                            throw StoreError.unreadable(position)
                        }
                        do { try replay.apply(facts) } catch let e as LedgerError { throw StoreError.brokenRule(position, e) }
                        next = position + 1
                        if position & 0xFFFF == 0 { progress(position, head.position) }
                        return position % 65_536 != 0
                    }
                }
            }
            progress(head.position, head.position)
            return (try replay.report(position: head.position, headHash: head.hashHex), replay)
        } catch {
            throw StoreError.wrap(error, "replaying the log", directory: directory)
        }
    }

    /// The projections at the head, from one snapshot: every case's state and latest position, the
    /// non-zero counters and the samples. For comparisons with a replay (`verify`, `ledgerctl replay`).
    public struct Projections: Sendable, Equatable {
        public let head: Head
        public let counters: [CounterKey: Int64]
        /// Each case's state, encoded, and the position of its latest event.
        public let cases: [String: [UInt8]]
        public let lastPositions: [String: UInt64]
        /// The samples of each measure, ascending.
        public let durations: [[Int64]]
    }

    /// The projections at the head: the stored ones with the snapshot's on top (in a writer, the
    /// writer's cases changed since the checkpoint).
    public func projections() throws(StoreError) -> Projections {
        guard isWriter else { return try projections(writerCases: []) }
        // Under the writer's lock: no append between the writer's cases and the snapshot.
        return try writer.withLock { (state) throws(StoreError) in
            do { try reloadIfStale(&state) } catch { throw StoreError.wrap(error, "reading the ledger", directory: directory) }
            return try projections(writerCases: state.cases.indices.compactMap { i in
                let e = state.cases[value: i]
                guard e.dirty, let r = e.record else { return nil }
                return (state.cases.key(at: i), r)
            })
        }
    }

    private func projections(writerCases: [(String, CaseRecord)]) throws(StoreError) -> Projections {
        try withSnapshot { s, txn in
            var cases: [String: [UInt8]] = [:]
            var positions: [String: UInt64] = [:]
            try txn.scan(layout.cases, from: nil) { key, value in
                let id = String(decoding: key, as: UTF8.self)
                if let record = CaseRecord.decode(value) {
                    cases[id] = record.state.encoded()
                    positions[id] = record.last
                } else {
                    cases[id] = []  // unreadable: differs from any replayed state
                }
                return true
            }
            for (id, r) in writerCases {
                cases[id] = r.state.encoded()
                positions[id] = r.last
            }
            if !isWriter, s.head.position > s.projected {
                // A reader: the cases after the checkpoint, from their events.
                var seen = Set<String>()
                var p = s.head.position
                while p > s.projected {
                    let id: String? = try withUnsafeBytes(of: p.bigEndian) { k in
                        try txn.withValue(layout.events, key: k) { v in
                            StoredEvent.factsBytes(in: v).flatMap { EventFacts.caseBytes(in: $0) }.map { String(decoding: $0, as: UTF8.self) }
                        } ?? nil
                    }
                    guard let id else { throw StoreError.unreadable(p) }
                    if seen.insert(id).inserted {
                        let h = try caseHistory(id, s, txn)
                        cases[id] = h.state?.encoded() ?? []
                        positions[id] = h.events.last?.position
                    }
                    p -= 1
                }
            }
            let samples = try samples(s, txn)
            return Projections(head: s.head, counters: s.counters.nonZero, cases: cases, lastPositions: positions,
                               durations: Measure.allCases.map { samples.all($0) })
        }
    }

    /// Compares the projections at the head with `replay` (a replay of the whole log up to `head`)
    /// and, given `lastPositions`, each case's latest position; nil when they agree, else what differs.
    public func compareProjections(with replay: Replay, head: Head, lastPositions: [String: UInt64]? = nil) throws(StoreError) -> String? {
        let stored = try projections()
        guard stored.head == head else { return "the head moved to \(stored.head.position) during the check" }
        let replayed = replay.counters.nonZero
        if stored.counters != replayed {
            let keys = Set(stored.counters.keys).union(replayed.keys).sorted()
            let k = keys.first { stored.counters[$0] != replayed[$0] }!
            return "the projection counter \(k.dimension)/\(k.key)/\(k.slot)/\(k.metric) is \(stored.counters[k] ?? 0) stored, \(replayed[k] ?? 0) replayed"
        }
        if stored.cases.count != replay.cases.count {
            return "\(stored.cases.count) cases stored, \(replay.cases.count) replayed"
        }
        for i in replay.cases.indices where stored.cases[replay.cases.key(at: i)] != replay.cases[value: i].encoded() {
            return "case \(replay.cases.key(at: i)) is stored in another state than the replay gives"
        }
        var replayedSamples = replay.durations
        replayedSamples.sort()
        for m in Measure.allCases where stored.durations[Int(m.rawValue)] != replayedSamples.all(m) {
            return "the \(m.name) samples differ from the replay"
        }
        if let lastPositions {
            for (id, last) in lastPositions where stored.lastPositions[id] != last {
                return "case \(id)'s latest event is at position \(stored.lastPositions[id].map(String.init) ?? "none") in its record, the log has it at \(last)"
            }
        }
        return nil
    }

    /// The map's size and the bytes of it in use.
    public var storage: (mapSize: Int, usedBytes: Int) {
        let info = environment.info()
        return (info.mapSize, info.usedBytes)
    }
}
