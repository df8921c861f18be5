public import LedgerCore
import Dispatch
import LMDBKit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension Ledger {
    /// The projection counters as stored (at the checkpoint).
    func storedCounters(_ txn: some Transaction) throws -> CounterTable {
        var out = CounterTable()
        try txn.scan(projections, from: nil) { key, value in
            if let k = CounterKey(encoded: Array(key)) {
                out.add(k, Int64(bitPattern: Ledger.decodeUInt64(value)))
            }
            return true
        }
        return out
    }

    /// Every duration sample at the head: the stored ones and the overlay's, sorted.
    func samples(_ txn: some Transaction, overlay: Overlay) throws -> SampleArrays {
        var out = SampleArrays()
        try txn.scan(durations, from: nil) { key, _ in
            if key.count == 17, let m = Measure(rawValue: key[8]) {  // position ‖ measure ‖ seconds
                out.add(m, Int64(bitPattern: Ledger.decodeUInt64(UnsafeRawBufferPointer(rebasing: key[9..<17])) ^ (1 << 63)))
            }
            return true
        }
        for d in overlay.durations { out.add(d.measure, d.seconds) }
        out.sort()
        return out
    }

    /// The pilot report (CONTRACT §4). Without `asOf` it is rendered from the projections at the
    /// head (stored checkpoint plus what followed it); with `asOf` it is computed by a replay of the
    /// log up to the head, keeping the events whose `at` ≤ `asOf`. `position` and `head_hash` name
    /// the head either way.
    public func report(asOf: Timestamp? = nil) throws -> JSONObject {
        try reportWithExtras(asOf: asOf).report
    }

    /// The report and, beside it, the pathway split by office country (`PilotReport.pathwaysByOffice`),
    /// from the same snapshot or replay.
    public func reportWithExtras(asOf: Timestamp? = nil) throws -> (report: JSONObject, pathwaysByOffice: JSONObject) {
        if let asOf {
            let r = try replayReport(asOf: asOf)
            return (r.report, PilotReport.pathwaysByOffice(counters: r.replay.counters.nonZero))
        }
        return try withCurrentState { txn, current in
            let counters = current.counters.nonZero
            let report = try PilotReport.render(counters: counters, durations: try samples(txn, overlay: current.overlay),
                                                position: current.head.position, headHash: current.head.hashHex,
                                                asOf: nil, window: window)
            return (report, PilotReport.pathwaysByOffice(counters: counters))
        }
    }

    /// Calls `body` with the position and facts of every event up to `head`, in order, from one
    /// snapshot: what a replay reads (no JSON is parsed). The log is read and the facts decoded on a
    /// second thread, in chunks, while `body` runs on this one.
    /// - Parameter progress: events done and `head`, every 65,536 events and at the end.
    func forEachFacts(to head: UInt64, txn: ReadTransaction, progress: (UInt64, UInt64) -> Void,
                      _ body: (UInt64, EventFacts) throws -> Void) throws {
        let channel = FactsChannel(depth: 4)
        let reader = UncheckedSendable((self, txn))
        DispatchQueue.global(qos: .userInitiated).async {
            let (ledger, txn) = reader.value
            var chunk = FactsChannel.Chunk()
            do {
                try txn.scan(ledger.events, from: 1) { key, value in
                    let position = Ledger.decodeUInt64(key)
                    guard position <= head else { return false }
                    guard let facts = StoredEvent.facts(in: value) else { throw StoreError.unreadable(position) }
                    chunk.append((position, facts))
                    if chunk.count == FactsChannel.chunkSize {
                        guard channel.put(chunk) else { return false }
                        chunk = FactsChannel.Chunk()
                    }
                    return true
                }
                if !chunk.isEmpty { _ = channel.put(chunk) }
                channel.finish(nil)
            } catch {
                channel.finish(error)
            }
        }
        // The reader must be done with the snapshot before it closes, however this ends.
        defer { channel.cancelAndWait() }
        var n: UInt64 = 0
        while let chunk = try channel.take() {
            for (position, facts) in chunk {
                try body(position, facts)
                n += 1
                if n & 0xFFFF == 0 { progress(n, head) }
            }
        }
        progress(n, head)
    }

    /// Replays the log up to the current head into memory and renders the report.
    /// - Parameter progress: events replayed so far and the head, now and then.
    public func replayReport(asOf: Timestamp?, progress: (UInt64, UInt64) -> Void = { _, _ in })
        throws -> (report: JSONObject, replay: Replay) {
        try environment.read { txn in
            let head = try storedHead(txn)
            var replay = Replay(window: window, asOf: asOf)
            try forEachFacts(to: head.position, txn: txn, progress: progress) { position, facts in
                do { try replay.apply(facts) } catch let error as LedgerError {
                    throw StoreError.brokenRule(position, error)
                }
            }
            let report = try replay.report(position: head.position, headHash: head.hashHex)
            return (report, replay)
        }
    }

    /// Rebuilds the case records and every projection from the log: a replay in memory (the same
    /// `Replay` as `as_of` reports and verify), then one write transaction that replaces the stored
    /// ones with sorted bulk inserts and adds the ids of the events after the old checkpoint to the
    /// `ids` index. A crash leaves the previous projections and the marker that they need a rebuild.
    /// - Parameter progress: events done and the head, now and then.
    /// - Throws: `StoreError` when the log holds an event its case does not allow (altered log).
    public func rebuildProjections(progress: (UInt64, UInt64) -> Void = { _, _ in }) throws {
        try rebuildProjections(allIDs: false, progress: progress)
    }

    /// - Parameter allIDs: rebuild the whole `ids` index as well (from format 2, whose index was
    ///   not in runs).
    func rebuildProjections(allIDs: Bool, progress: (UInt64, UInt64) -> Void) throws {
        try writer.withLock { state in
            try drain(&state)
            let head = state.head
            var replay = Replay(window: window, keepsPositions: true)
            // The ids of the events after the old checkpoint are not in the `ids` index yet.
            var newIDs: [String] = []
            var newPositions: [UInt64] = []
            var runStart: UInt64 = 1
            try environment.read { txn in
                let checkpoint = allIDs ? 0 : min(try storedCheckpoint(txn), head.position)
                runStart = checkpoint + 1
                try forEachFacts(to: head.position, txn: txn, progress: progress) { position, facts in
                    do { try replay.apply(facts, position: position) } catch let error as LedgerError {
                        throw StoreError.brokenRule(position, error)
                    }
                    if position > checkpoint {
                        newIDs.append(facts.id)
                        newPositions.append(position)
                    }
                }
            }
            // Keys in LMDB's order, so each tree is written by appending at its end, page by page.
            let caseKeys = replay.cases.keys
            let caseOrder = Ledger.sortedIndexes(caseKeys)
            let idOrder = Ledger.sortedIndexes(newIDs)
            let samples = DurationSample.inKeyOrder(replay.samples.map {
                DurationSample(measure: $0.measure, seconds: $0.seconds, position: $0.position)
            })
            let counters = replay.counters
            let outcome = withMapGrowth { () throws in
                try environment.write { txn in
                    for db in [cases, projections, durations] + (allIDs ? [ids] : []) + [filters].compactMap({ $0 }) {
                        try txn.clear(db)
                    }
                    for i in caseOrder {
                        let record = CaseRecord(state: replay.cases[value: i], last: replay.lastPositions[i])
                        try txn.put(cases, key: Array(caseKeys[i].utf8), value: record.encoded(), flags: .append)
                    }
                    for s in samples { try txn.put(durations, key: s.key, value: [], flags: .append) }
                    for (k, v) in counters.all where v != 0 {
                        try txn.put(projections, key: k.encoded, value: Ledger.encodeUInt64(UInt64(bitPattern: v)), flags: .append)
                    }
                    // One run, from the old checkpoint on (`IDIndex`).
                    var key: [UInt8] = []
                    for i in idOrder {
                        Ledger.idKey(run: runStart, newIDs[i], into: &key)
                        try txn.put(ids, key: key, value: Ledger.encodeUInt64(newPositions[i]))
                    }
                    try txn.put(meta, key: Ledger.windowKey, value: Ledger.encodeWindow(window))
                    try txn.put(meta, key: Ledger.projectedKey, value: Ledger.encodeUInt64(head.position))
                    _ = try txn.delete(meta, key: Ledger.pendingKey)
                    try txn.put(meta, key: Ledger.projectionVersionKey, value: Ledger.encodeUInt64(Ledger.projectionVersion))
                    if allIDs { try txn.put(meta, key: Ledger.formatKey, value: Ledger.encodeUInt64(Ledger.formatVersion)) }
                }
            }
            if case .failure(let e) = outcome { throw e }
            state.counters = counters
            state.overlay = Overlay(checkpoint: head.position, capacity: options.checkpointEvents)
            state.frozen = nil  // the cached cases predate the rebuild
            state.older.removeAll()
            state.idFilters = try loadIDFilters(overlay: state.overlay)
            committed.withLock {
                $0.counters = counters
                $0.checkpoint = head.position
            }
        }
    }

    /// The projections at the head, in one snapshot: the stored ones with what followed the
    /// checkpoint applied. For comparisons with a replay.
    public struct CurrentProjections: Sendable, Equatable {
        public let head: Head
        /// The non-zero counters.
        public let counters: [CounterKey: Int64]
        /// Each case's state, encoded, and the position of its latest event.
        public let cases: [String: [UInt8]]
        public let lastPositions: [String: UInt64]
        /// The samples of each measure, ascending.
        public let durations: [[Int64]]
    }

    public func currentProjections() throws -> CurrentProjections {
        try withCurrentState(cases: nil) { txn, current in
            var caseMap: [String: [UInt8]] = [:]
            var positions: [String: UInt64] = [:]
            try txn.scan(cases, from: nil) { key, value in
                let id = String(decoding: key, as: UTF8.self)
                if let record = CaseRecord.decode(value) {
                    caseMap[id] = record.state.encoded()
                    positions[id] = record.last
                } else {
                    caseMap[id] = []  // unreadable: differs from any replayed state
                }
                return true
            }
            let overlayCases = current.overlay.cases
            for i in overlayCases.indices {
                guard let record = overlayCases[value: i].record else { continue }
                let id = overlayCases.key(at: i)
                caseMap[id] = record.state.encoded()
                positions[id] = record.last
            }
            let samples = try samples(txn, overlay: current.overlay)
            return CurrentProjections(head: current.head, counters: current.counters.nonZero, cases: caseMap,
                                      lastPositions: positions, durations: Measure.allCases.map { samples.all($0) })
        }
    }

    /// Compares the projections at the head with a replay of the log up to `head`, and, given
    /// `lastPositions`, each case's latest position; nil when they agree, else what differs.
    public func compareProjections(with replay: Replay, head: Head, lastPositions: [String: UInt64]? = nil) throws -> String? {
        let stored = try currentProjections()
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
            let id = replay.cases.key(at: i)
            return "case \(id) is stored in another state than the replay gives"
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

/// Hands chunks of decoded facts from the thread reading the log to the one replaying them, at
/// most `depth` chunks ahead.
final class FactsChannel: Sendable {
    typealias Chunk = [(position: UInt64, facts: EventFacts)]
    static let chunkSize = 4096

    private struct State {
        var chunks: [Chunk] = []
        var finished = false
        var error: (any Error)?
        var cancelled = false
    }

    private let state = Mutex(State())
    private let filled = DispatchSemaphore(value: 0)
    private let free: DispatchSemaphore
    private let done = DispatchSemaphore(value: 0)

    init(depth: Int) {
        // Start at 0 and signal: libdispatch traps when a semaphore is freed below its initial value.
        free = DispatchSemaphore(value: 0)
        for _ in 0..<depth { free.signal() }
    }

    /// Queues a chunk, waiting for room; false when the consumer has gone.
    func put(_ chunk: Chunk) -> Bool {
        free.wait()
        return state.withLock { s in
            guard !s.cancelled else { return false }
            s.chunks.append(chunk)
            filled.signal()
            return true
        }
    }

    /// The producer is done (with the error that stopped it, if any).
    func finish(_ error: (any Error)?) {
        state.withLock { s in
            s.finished = true
            s.error = error
        }
        filled.signal()
        done.signal()
    }

    /// The next chunk, nil at the end; rethrows the producer's error.
    func take() throws -> Chunk? {
        while true {
            filled.wait()
            let next: Result<Chunk?, any Error>? = state.withLock { s in
                if !s.chunks.isEmpty {
                    return .success(s.chunks.removeFirst())
                }
                if s.finished { return s.error.map { .failure($0) } ?? .success(nil) }
                return nil
            }
            guard let next else { continue }
            if case .success(.some) = next { free.signal() } else { filled.signal() }  // keep the end visible
            return try next.get()
        }
    }

    /// Stops the producer and waits until it no longer reads the snapshot.
    func cancelAndWait() {
        state.withLock { $0.cancelled = true }
        free.signal()
        done.wait()
        done.signal()
    }
}

/// Moves a value the compiler cannot prove `Sendable` to another thread; the caller guarantees it
/// is used by one thread at a time (here: a read transaction, opened with `MDB_NOTLS`).
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
