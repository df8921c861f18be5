import Crypto
public import LedgerCore
import LMDBKit
import Synchronization

/// The result of one event of an append request.
public struct AppendResult: Sendable, Equatable {
    public let position: UInt64
    public let duplicate: Bool
    public init(position: UInt64, duplicate: Bool) {
        self.position = position
        self.duplicate = duplicate
    }
}

/// What `Ledger.sequence` gathers for a group as its requests validate.
struct Sequencing {
    let start: UInt64
    var accepted: [SequencedGroup.Accepted] = []
    var samples: [DurationSample] = []

    init(start: UInt64, capacity: Int) {
        self.start = start
        accepted.reserveCapacity(capacity)
    }
}

/// The stored values of the events a commit appends: the hash of the group's start, then each
/// value, end to end in one buffer, the hash chain running through them (a value starts with its
/// hash).
struct GroupValues {
    let start: Head
    let recordTail: [UInt8]
    /// `start.hash`, then the values.
    var buffer: [UInt8] = []
    /// Where each value ends in `buffer`.
    var ends: [Int] = []

    init(start: Head, recordedAt: Timestamp, capacity: Int) {
        self.start = start
        recordTail = StoredEvent.recordTail(recordedAt: recordedAt.description)
        buffer.reserveCapacity(32 + capacity * 512)
        buffer.append(contentsOf: start.hash)
        ends.reserveCapacity(capacity)
    }

    var count: Int { ends.count }

    /// Where value `k` starts (its hash).
    func valueStart(_ k: Int) -> Int { k == 0 ? 32 : ends[k - 1] }

    var head: Head {
        let at = count == 0 ? 0 : valueStart(count - 1)
        return Head(position: start.position + UInt64(count), hash: Array(buffer[at..<(at + 32)]))
    }

    /// Appends the value of `event` (at the next position), whose case's previous event is at `previous`.
    mutating func add(_ event: borrowing Event, previous: UInt64) {
        StoredEvent.appendValue(to: &buffer, previousAt: count == 0 ? 0 : valueStart(count - 1), event: event,
                                casePrevious: previous, position: start.position + UInt64(count) + 1, recordTail: recordTail)
        ends.append(buffer.count)
    }

    /// Calls `body` with each value in position order.
    func forEach(_ body: (Int, UnsafeRawBufferPointer) throws -> Void) rethrows {
        try buffer.withUnsafeBytes { b in
            for (k, end) in ends.enumerated() {
                try body(k, UnsafeRawBufferPointer(rebasing: b[valueStart(k)..<end]))
            }
        }
    }
}

/// A group of append requests validated against the writer's state and applied to it, not yet
/// written: `Ledger.sequence` makes it, `Ledger.commit` writes it durably (or fails it). Groups are
/// committed in the order they were sequenced.
public struct SequencedGroup: Sendable {
    struct Accepted: Sendable {
        let request: Int
        let index: Int
        let caseHash: UInt64
        /// The position of the case's previous event (0 for its first).
        let previous: UInt64
    }

    let requests: [[Event]]
    /// Each request's outcome of validation (a success is durable only once `commit` says so).
    public let validated: [Result<[AppendResult], LedgerError>]
    /// The events appended, at positions `start + 1 …`.
    let accepted: [Accepted]
    let start: UInt64
    let recordedAt: Timestamp
    /// The `WriterState.epoch` it was sequenced in.
    let epoch: UInt64
    /// What the snapshot published after its commit shows (the state after the group).
    let projected: UInt64
    let counters: CounterTable
    let recent: RecentCases
    let samples: SampleChunk?
    let figures: (cases: Int, ids: Int)

    /// The canonical form and id of the event at `position`, if it is in this group.
    func event(at position: UInt64) -> Event? {
        guard position > start, position <= start + UInt64(accepted.count) else { return nil }
        let a = accepted[Int(position - start - 1)]
        return requests[a.request][a.index]
    }
}

/// What the committing stage owns: the head it has written (with its chain hash).
struct CommitterState {
    var head: Head
}

extension Ledger {
    /// Appends a group of requests in one durable commit: `sequence`, then `commit`.
    ///
    /// Each request is atomic on its own: one that fails validation gets its `LedgerError` and leaves
    /// no trace, without affecting the others, which are validated in order, each against the state
    /// the ones before it left. The results are returned after the commit returned and the new
    /// snapshot was published, so a success is durable and visible to every later read. When the
    /// commit fails (disk or map full, an I/O error) every request that validated gets
    /// `unavailable` and nothing is stored.
    ///
    /// Call it from one thread at a time (the daemon's writer); reads go on meanwhile.
    public func append(_ requests: [[Event]], recordedAt: Timestamp = .now()) -> [Result<[AppendResult], LedgerError>] {
        commit(sequence(requests, recordedAt: recordedAt))
    }

    /// Validates a group of requests against the writer's state and applies them to it: the first
    /// stage of an append. Nothing is written; the group must go to `commit` next, in the order
    /// sequenced. The daemon sequences a group while the previous one is committed, on another
    /// thread. Call it from one thread at a time.
    public func sequence(_ requests: [[Event]], recordedAt: Timestamp = .now()) -> SequencedGroup {
        func failed(_ e: LedgerError, epoch: UInt64, state: WriterState) -> SequencedGroup {
            SequencedGroup(requests: [], validated: requests.map { _ in .failure(e) }, accepted: [], start: state.head.position,
                           recordedAt: recordedAt, epoch: epoch, projected: state.projected, counters: state.counters,
                           recent: state.recent, samples: state.samples, figures: (0, 0))
        }
        guard isWriter else {
            let e = LedgerError(.unavailable, "the ledger is open read-only; appends go through ledgerd")
            return writer.withLock { failed(e, epoch: .max, state: $0) }
        }
        return writer.withLock { state in
            do {
                try reloadIfStale(&state)
            } catch {
                return failed(StoreError.wrap(error, "reading the ledger", directory: directory).ledgerError, epoch: .max, state: state)
            }
            // Groups committed since the last one was sequenced are in the snapshot opened below.
            let committed = committedPosition.load(ordering: .acquiring)
            state.inFlight.removeAll { $0.start + UInt64($0.accepted.count) <= committed }
            var sequencing = Sequencing(start: state.head.position, capacity: requests.reduce(0) { $0 + $1.count })
            var results: [Result<[AppendResult], LedgerError>] = []
            results.reserveCapacity(requests.count)
            do {
                try environment.read { txn in
                    if state.filters == nil { state.filters = try idFilters(state, txn) }
                    var undo: WriterState.Undo? = WriterState.Undo()
                    var delta = ProjectionDelta()
                    for r in requests.indices {
                        results.append(try validate(r, requests, into: &sequencing, state: &state, undo: &undo, delta: &delta,
                                                    committed: committed, txn: txn))
                    }
                }
            } catch {
                // Reading the stored state failed: the requests validated so far changed the state.
                state.stale = true
                return failed(StoreError.wrap(error, "reading the ledger", directory: directory).ledgerError, epoch: .max, state: state)
            }
            state.head = Head(position: state.head.position + UInt64(sequencing.accepted.count), hash: [])
            if !sequencing.accepted.isEmpty {
                state.recent = state.recent.adding(sequencing.accepted.enumerated().map {
                    (hash: $0.element.caseHash, position: sequencing.start + UInt64($0.offset) + 1)
                })
                if !sequencing.samples.isEmpty { state.samples = SampleChunk(sequencing.samples, previous: state.samples) }
            }
            let group = SequencedGroup(requests: requests, validated: results, accepted: sequencing.accepted, start: sequencing.start,
                                       recordedAt: recordedAt, epoch: state.epoch, projected: state.projected,
                                       counters: state.counters, recent: state.recent, samples: state.samples,
                                       figures: (state.cases.count, state.ids.count))
            if !group.accepted.isEmpty { state.inFlight.append(group) }
            return group
        }
    }

    /// Writes a sequenced group durably and publishes the snapshot after it: the second stage of an
    /// append. Returns each request's result: its validation outcome, or `unavailable` for every one
    /// that validated when the write failed (then the groups sequenced after it fail too, and the
    /// writer's state is loaded again from what is stored). Groups must be committed in the order
    /// they were sequenced, from one thread at a time.
    public func commit(_ group: SequencedGroup) -> [Result<[AppendResult], LedgerError>] {
        func fail(_ e: LedgerError) -> [Result<[AppendResult], LedgerError>] {
            group.validated.map { r in
                if case .success = r { return .failure(e) }
                return r
            }
        }
        guard !group.accepted.isEmpty else { return group.validated }
        return committer.withLock { c in
            guard group.epoch == epoch.load(ordering: .acquiring), group.start == c.head.position else {
                return fail(LedgerError(.unavailable, "an earlier write failed; nothing of this request was stored; retry"))
            }
            var values = GroupValues(start: c.head, recordedAt: group.recordedAt, capacity: group.accepted.count)
            group.requests.withUnsafeBufferPointer { requests in
                for a in group.accepted {
                    requests[a.request].withUnsafeBufferPointer { events in
                        values.add(events[a.index], previous: a.previous)
                    }
                }
            }
            do {
                try withMapGrowth("appending") {
                    try environment.write { txn in
                        try txn.withCursor(layout.events) { cursor in
                            try values.forEach { k, value in
                                try withUnsafeBytes(of: (values.start.position + UInt64(k) + 1).bigEndian) { key in
                                    try cursor.put(key: key, value: value, flags: .append)
                                }
                            }
                        }
                        try txn.put(layout.meta, key: Layout.MetaKey.head.key, value: Layout.encodeHead(values.head))
                    }
                }
            } catch {
                // The writer's state took in this group (and perhaps the next): a new epoch makes
                // the sequencer load it again from what is stored, and fails the groups in between.
                epoch.wrappingAdd(1, ordering: .releasing)
                return fail(StoreError.wrap(error, "the commit", directory: directory).ledgerError)
            }
            c.head = values.head
            published.withLock {
                $0 = Snapshot(head: c.head, projected: group.projected, counters: group.counters, recent: group.recent,
                              samples: group.samples, casesInMemory: group.figures.cases, idsInMemory: group.figures.ids)
            }
            committedPosition.store(c.head.position, ordering: .releasing)
            trimMappedPages()
            return group.validated
        }
    }

    /// Validates request `r` against `state`, applies it there and adds its new events to
    /// `sequencing`. A request that fails is taken back whole and gets its `LedgerError`; a failure
    /// to read the stored state is thrown.
    /// - Parameter committed: the position up to which `txn` holds the log; later events are in
    ///   `state.inFlight` or `sequencing`.
    private func validate(_ r: Int, _ requests: [[Event]], into sequencing: inout Sequencing, state: inout WriterState,
                          undo: inout WriterState.Undo?, delta: inout ProjectionDelta, committed: UInt64,
                          txn: ReadTransaction) throws -> Result<[AppendResult], LedgerError> {
        undo?.reset()
        let acceptedBefore = sequencing.accepted.count
        let samplesBefore = sequencing.samples.count
        var increments: [(key: CounterKey, by: Int64)] = []
        var results: [AppendResult] = []
        results.reserveCapacity(requests[r].count)
        /// The event at `p` if it was sequenced but is not in `txn`.
        func unstored(_ p: UInt64) -> Event? {
            if p > sequencing.start {
                let a = sequencing.accepted[Int(p - sequencing.start - 1)]
                return requests[a.request][a.index]
            }
            guard p > committed else { return nil }
            return state.inFlight.lazy.compactMap { $0.event(at: p) }.first
        }
        do {
            try requests[r].withUnsafeBufferPointer { request in
                for index in request.indices {
                    let event = UnsafePointer(request.baseAddress! + index)
                    let idHash = keyHash(event.pointee.id, seed: idSeed)
                    if let existing = try position(ofID: event.pointee.id, hash: idHash, state: state, unstored: unstored, txn: txn) {
                        let original: [UInt8]
                        if let e = unstored(existing) {
                            original = e.canonical
                        } else {
                            guard let stored = try self.event(txn, at: existing) else { throw StoreError.unreadable(existing) }
                            original = Array(stored.event)
                        }
                        guard original == event.pointee.canonical else {
                            throw LedgerError(.idConflict, "id \"\(event.pointee.id)\" is already at position \(existing) with other content; use a new id for a new event", index: index)
                        }
                        results.append(AppendResult(position: existing, duplicate: true))
                        continue
                    }
                    let position = sequencing.start + UInt64(sequencing.accepted.count) + 1
                    let caseHash = keyHash(event.pointee.caseID)
                    delta.increments.removeAll(keepingCapacity: true)
                    delta.durations.removeAll(keepingCapacity: true)
                    let previous: UInt64
                    do {
                        previous = try state.apply(event.pointee.facts, caseHash: caseHash, position: position, window: window,
                                                   delta: &delta, undo: &undo) { try storedCaseRecord($0, txn: txn) }
                    } catch let e as LedgerError {
                        throw e.at(index: index)
                    }
                    increments.append(contentsOf: delta.increments)
                    for d in delta.durations { sequencing.samples.append(DurationSample(measure: d.measure, seconds: d.seconds, position: position)) }
                    state.ids.insert(hash: idHash, position: position)
                    undo?.ids.append((idHash, position))
                    state.filters!.all.insert(hash: idHash)
                    sequencing.accepted.append(SequencedGroup.Accepted(request: r, index: index, caseHash: caseHash, previous: previous))
                    results.append(AppendResult(position: position, duplicate: false))
                }
            }
        } catch let e as LedgerError {
            state.rollBack(undo!)
            sequencing.accepted.removeSubrange(acceptedBefore...)
            sequencing.samples.removeSubrange(samplesBefore...)
            return .failure(e)
        }
        for (k, n) in increments { state.counters.add(k, n) }
        return .success(results)
    }

    /// The position of the event whose id is `id` (its `keyHash` under the ledger's seed is `h`),
    /// in the log or sequenced; nil for a new id. `unstored(p)` is the event at `p` when it is not
    /// in `txn`.
    private func position(ofID id: String, hash h: UInt64, state: WriterState, unstored: (UInt64) -> Event?,
                          txn: ReadTransaction) throws -> UInt64? {
        guard let filters = state.filters, filters.all.mayContain(hash: h) else { return nil }  // nearly every new id
        func matches(_ p: UInt64) throws -> UInt64? {
            if let e = unstored(p) { return e.id.hasSameBytes(as: id) ? p : nil }
            return try storedID(txn, at: p, is: id) ? p : nil
        }
        if let p = try state.ids.first(hash: h, matches) { return p }
        for run in filters.runs where run.filter.mayContain(hash: h) {
            for p in try storedPositions(run: run.start, hash: h, txn: txn) {
                if let found = try matches(p) { return found }
            }
        }
        return nil
    }

    /// Loads the id filters now rather than at the first append (about 0.1 s per million events
    /// in the log): the daemon does it before it accepts connections.
    public func prepareToAppend() throws(StoreError) {
        guard isWriter else { return }
        try writer.withLock { (state) throws(StoreError) in
            guard state.filters == nil else { return }
            do {
                let loaded = try environment.read { txn in try idFilters(state, txn) }
                state.filters = loaded
            } catch {
                throw StoreError.wrap(error, "loading the id filters", directory: directory)
            }
        }
    }

    /// The filters of the ids in `ids` as `txn` sees it and of `state`'s ids after it.
    func idFilters(_ state: WriterState, _ txn: ReadTransaction) throws -> IDFilters {
        var filters = try scanIDFilters(txn)
        state.ids.forEach { h, _ in filters.all.insert(hash: h) }
        return filters
    }

    /// Whether the stored event at `position` has the id `id`.
    func storedID(_ txn: some Transaction, at position: UInt64, is id: String) throws -> Bool {
        var id = id
        return try id.withUTF8 { want in
            try withUnsafeBytes(of: position.bigEndian) { k in
                try txn.withValue(layout.events, key: k) { v -> Bool in
                    guard let facts = StoredEvent.factsBytes(in: v), let have = EventFacts.idBytes(in: facts) else {
                        throw StoreError.unreadable(position)
                    }
                    return have.elementsEqual(UnsafeRawBufferPointer(want))
                } ?? false
            }
        }
    }

    func storedCaseRecord(_ id: String, txn: some Transaction) throws -> CaseRecord? {
        var key = id
        return try key.withUTF8 { k in
            try txn.withValue(layout.cases, key: UnsafeRawBufferPointer(k)) { v in
                guard let r = CaseRecord.decode(v) else {
                    throw StoreError(.corrupt, "the record of case \(id) cannot be read; run `ledgerctl replay`", database: "cases")
                }
                return r
            }
        }
    }

    /// Loads the state again from what is stored, if it went ahead of the disk: a write failed (its
    /// epoch is not the committer's), or reading failed half-way through a group (`stale`; then the
    /// groups sequenced before, not committed yet, are failed too, by a new epoch). Waits for a
    /// commit in progress first, so that what it loads is all the committer will have written.
    func reloadIfStale(_ state: inout WriterState) throws {
        guard state.stale || state.epoch != epoch.load(ordering: .acquiring) else { return }
        if state.stale { epoch.wrappingAdd(1, ordering: .releasing) }
        committer.withLock { _ in }
        state = try loadState(writer: isWriter)
        adopt(&state)
    }

    /// Makes a state just loaded from what is stored the one the sequencer, the committer and the
    /// readers go on from.
    func adopt(_ state: inout WriterState) {
        state.epoch = epoch.load(ordering: .acquiring)
        let head = state.head
        committer.withLock { $0.head = head }
        committedPosition.store(head.position, ordering: .releasing)
        publish(state)
    }

    /// Drops this process's mappings of the map's pages when they exceed `mappedPagesLimit`. Reads
    /// of scattered index pages (lookups of cases and ids, a checkpoint's writes) map about 64 KiB of
    /// the file each (Linux maps the pages around the one read), so without it the resident set
    /// grows with the log.
    func trimMappedPages() {
        if Environment.residentFileBytes() - residentFileBaseline > options.mappedPagesLimit { environment.releaseMappedPages() }
    }

    /// Makes `state` (everything in it committed) what readers see.
    func publish(_ state: WriterState) {
        let snapshot = state.snapshot
        published.withLock { $0 = snapshot }
    }

    /// Runs `body` (one write transaction); when the map is full, grows it (doubling, up to the
    /// maximum) and runs `body` again, so a transaction is never half written.
    /// - Throws: `StoreError` with `.full` when the map is at its maximum or the disk is full
    ///   (nothing was stored), or what `body` throws, wrapped.
    func withMapGrowth(_ what: String, _ body: () throws -> Void) throws(StoreError) {
        while true {
            do {
                try body()
                return
            } catch let e as LMDBError where e.isMapFull {
                let info = environment.info()
                let target = min(info.mapSize * 2, options.maxMapSize)
                guard target > info.mapSize else {
                    throw StoreError(.full, "the ledger's map is full at \(info.mapSize >> 20) MiB (max_map_size_gib): \(what) failed; nothing was stored; raise it and restart, then retry",
                                     directory: directory, underlying: e)
                }
                do { try environment.growMap(minimum: target) } catch {
                    throw StoreError(.full, "the ledger's map is full and could not grow: \(what) failed; nothing was stored; retry later",
                                     directory: directory, underlying: error)
                }
            } catch {
                throw StoreError.wrap(error, what, directory: directory)
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension Timestamp {
    /// The current time in UTC with milliseconds.
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let ms = ts.tv_nsec / 1_000_000
        let s = String(ms)
        return Timestamp(seconds: Int64(ts.tv_sec), fraction: String(repeating: "0", count: 3 - s.count) + s)
    }
}
