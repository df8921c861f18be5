public import LedgerCore
public import LMDBKit
import Crypto
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The result of one event of an append request.
public struct AppendResult: Sendable, Equatable {
    public let position: UInt64
    public let duplicate: Bool
    public init(position: UInt64, duplicate: Bool) {
        self.position = position
        self.duplicate = duplicate
    }
}

/// The last position and its chain hash (position 0 and 32 zero bytes for an empty ledger).
public struct Head: Sendable, Equatable {
    public let position: UInt64
    public let hash: [UInt8]
    public static let empty = Head(position: 0, hash: [UInt8](repeating: 0, count: 32))
    public var hashHex: String { Hex.string(hash) }
}

/// The event log on LMDB: one environment in the data directory with the named databases
/// `meta` (format, head, window, checkpoint position), `events` (position → hash ‖ facts ‖ C_N),
/// `ids` (event id → position), `cases` (case id → its state and latest position, `CaseRecord`),
/// `projections` (`CounterKey` → count) and `durations` (measure ‖ seconds ‖ position).
///
/// Guarantees:
/// - An append request is atomic: all its events are committed durably together, or none is.
/// - Positions start at 1 and have no gaps; the hash chain covers every event (CONTRACT §5).
/// - The projections (case records, ids, counters, durations) reflect exactly the head: the stored
///   ones reflect a checkpoint (`meta.projected`), written in the transaction of an append, and the
///   events after it are held in memory (`Overlay`) and replayed from the log at open, so a crash
///   loses nothing. Readers combine the two (`withCurrentState`).
/// - Appending is `sequence` (validate a group against the in-memory state, under the writer's
///   lock) then `commit` (write it), in that order for every group; the daemon runs the two on two
///   threads one group apart, `append` runs both. Reads run on their own snapshots and first wait
///   for everything sequenced to be committed, so they never see what is not durable.
public final class Ledger: Sendable {
    public let environment: Environment
    let meta: Database
    let events: Database
    let ids: Database
    let cases: Database
    let projections: Database
    let durations: Database
    /// The writer's id filters (`IDIndex`): each run's, and the filter of all ids as of the last
    /// clean shutdown; nil for a reader of a ledger written before they were stored.
    let filters: Database?
    let options: Options
    /// The report window the projections are computed for.
    public let window: ReportWindow
    /// The sequencer's state: the head and projections as of every group sequenced so far.
    let writer: Mutex<WriterState>
    /// What is durable: readers see this.
    let committed: Mutex<CommittedState>
    /// The page faults a thread that reads scattered pages of the indexes (the sequencer's case and
    /// id lookups, a checkpoint's chunk) may take between two drops of the mapped pages: about
    /// 6 MiB of the file at about 100 KiB a fault (`Environment.releaseMappedPages(ifOver:)`).
    static let faultsPerRelease = 64
    /// Where `appendRequest` folds the words it read ahead, so that those reads are not dropped.
    let touchSink = Atomic<UInt64>(0)

    struct WriterState {
        /// The last position sequenced (its hash is known only to the chain builder and, once
        /// committed, to `committed`).
        var head: Head
        /// The projection counters at the head.
        var counters: CounterTable
        /// What changed after the checkpoint (empty for a read-only ledger, whose readers replay it).
        var overlay: Overlay
        let chain: ChainBuilder
        /// Equal to `committed.epoch` unless a write failed since this state was loaded.
        var epoch: UInt64
        /// The overlay of the last checkpoint handed to the committer: until it is seen stored, what
        /// lookups of its ids and cases must see; then its cases, as a cache (`Overlay`).
        var frozen: Overlay?
        /// The case tables of the checkpoints before `frozen`'s, newest first: with `frozen`'s,
        /// the writer's cache of stored cases, at most `caseCacheEntries` entries (`Overlay`).
        var older: [StringTable<Overlay.CaseSlot>] = []
        /// A checkpoint whose chunks are not all handed to groups yet, and the next chunk's number.
        var plan: CheckpointPlan?
        var nextChunk = 0
        /// The groups sequenced since the last checkpoint was planned, and the events they took:
        /// the pace that bounds the next checkpoint's chunks (`Ledger.chunkLimit`).
        var pace = (groups: 0, events: 0)
        /// Groups sequenced and perhaps not stored yet.
        var recent: [RecentGroup] = []
        /// Filters of every id in the log (and some taken back), and of each run of `ids`: an id
        /// they do not hold is new without a lookup in `ids`, and one they may hold is looked up
        /// only in the runs that may hold it.
        var idFilters = IDFilters()
        /// The sequencer's page faults since it last dropped the mapped pages (`Lookup.readingStored`).
        var faults = FaultBudget(faults: Ledger.faultsPerRelease)

        /// Once the frozen overlay's checkpoint is stored (`stored` has reached it), keeps only its
        /// cases, as a cache: its ids and samples are in their databases.
        /// Its run's filter is stored too (`storesFilters`: the ledger has `filters`), and is read
        /// there from now on (`IDFilters`).
        mutating func retireFrozen(stored: UInt64, storesFilters: Bool) {
            if let f = frozen, f.ids.count != 0, stored >= f.checkpoint {
                frozen = f.retired()
                if storesFilters { idFilters.dropStoredRuns(through: f.checkpoint) }
                Ledger.releaseQueue.async { withExtendedLifetime(f) {} }  // its ids are freed there
            }
        }

        /// Drops the oldest cached case tables until the cache holds at most `entries` entries.
        mutating func trimCache(entries: Int) {
            var total = frozen?.cases.count ?? 0
            var keep = 0
            while keep < older.count, total + older[keep].count <= entries {
                total += older[keep].count
                keep += 1
            }
            let dropped = Array(older[keep...])
            older.removeLast(older.count - keep)
            if !dropped.isEmpty { Ledger.releaseQueue.async { withExtendedLifetime(dropped) {} } }
        }

        init(head: Head, counters: CounterTable, overlay: Overlay, chain: ChainBuilder, epoch: UInt64) {
            self.head = head
            self.counters = counters
            self.overlay = overlay
            self.chain = chain
            self.epoch = epoch
        }
    }

    /// The on-disk format this code writes and reads.
    /// 3: the `ids` index in runs (`IDIndex`), duration samples keyed by position first. A writer
    /// upgrades a ledger of format 2 at open by rebuilding both; readers ask for that first.
    /// 4: case records may be of `CaseState` encoding 3 (varints: about half the bytes), and the
    /// writer's id filters are stored in `filters`. A ledger of format 3 is read as it is, and a
    /// writer marks it 4 at open, rewriting nothing (it stores the filters it builds).
    public static let formatVersion: UInt64 = 4
    /// How the projections are computed; a ledger whose projections were made by another version
    /// is rebuilt at open (by a writer).
    public static let projectionVersion: UInt64 = 4

    public struct Options: Sendable {
        /// The map size to start with; it doubles when full up to `maxMapSize`.
        public var initialMapSize: Int = 1 << 30
        /// The largest the map may grow to. Past it appends fail with `unavailable`.
        public var maxMapSize: Int = 1 << 40
        public var readOnly = false
        /// The report window. A writer stores it; when it differs from the stored one the
        /// projections are rebuilt at open. Nil keeps the stored one (the pilot's for a new ledger).
        /// Readers always use the stored one.
        public var window: ReportWindow?
        /// Told about a projection rebuild at open (events done, total).
        public var rebuildProgress: @Sendable (UInt64, UInt64) -> Void = { _, _ in }
        /// How many events may follow the stored projections before an append's transaction
        /// writes them (a checkpoint). More: fewer, bigger checkpoints and more memory; after a
        /// crash up to this many events are replayed at open.
        public var checkpointEvents = 250_000
        /// About how many cases and ids one commit of a checkpoint writes: a checkpoint with more
        /// goes in chunks with the appends that follow it (`CheckpointPlan`), which bounds the
        /// pages a transaction holds and how long an append waits for a checkpoint.
        public var checkpointChunkKeys = 8_192
        /// The most case records the writer caches besides those changed since the last
        /// checkpoint: the tables of the last checkpoints, newest first, as many as fit. Fewer:
        /// less memory, more reads of `cases` for cases that come back after a while.
        public var caseCacheEntries = 262_144
        public init() {}
    }

    /// Opens the ledger in `directory`, creating it (mode 0700) when missing and not read-only.
    /// A writer rebuilds the projections when they do not reflect the head or the window changed.
    /// - Throws: `StoreError` naming the directory and what to do.
    public init(directory: String, options: Options = Options()) throws(StoreError) {
        self.options = options
        if !options.readOnly {
            if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                throw StoreError("cannot create the data directory \(directory): \(String(cString: strerror(errno)))")
            }
        } else {
            var st = stat()
            guard stat(directory + "/data.mdb", &st) == 0 else {
                throw StoreError("\(directory) holds no ledger (no data.mdb); check --data-dir")
            }
        }
        var envOptions = Environment.Options()
        envOptions.mapSize = options.initialMapSize
        envOptions.readOnly = options.readOnly
        do {
            environment = try Environment(path: directory, options: envOptions)
            let create = !options.readOnly
            meta = try environment.openDatabase("meta", create: create)
            events = try environment.openDatabase("events", create: create)
            ids = try environment.openDatabase("ids", create: create)
            cases = try environment.openDatabase("cases", create: create)
            projections = try environment.openDatabase("projections", create: create)
            durations = try environment.openDatabase("durations", create: create)
            do {
                filters = try environment.openDatabase("filters", create: create)
            } catch where error.isNotFound {
                filters = nil  // a reader of a ledger of format 3: the writer builds them
            }
        } catch {
            if error.isNotFound {
                throw StoreError("\(directory) is an LMDB environment but not a ledger of this version", underlying: error)
            }
            if error.isInvalidFile {
                throw StoreError("\(directory)/data.mdb is not an LMDB file this program can read", underlying: error)
            }
            throw StoreError("cannot open the ledger in \(directory)", underlying: error)
        }
        let state: (head: Head, window: ReportWindow, stale: Bool, upgrade: Bool)
        do {
            state = try Ledger.checkFormatAndHead(environment, meta: meta, events: events, options: options)
        } catch let e as StoreError {
            throw e
        } catch let e as LMDBError {
            throw StoreError("cannot read the ledger's head in \(directory)", underlying: e)
        } catch {
            throw StoreError("cannot read the ledger's head in \(directory): \(error)")
        }
        window = state.window
        let chain = ChainBuilder(head: state.head)
        writer = Mutex(WriterState(head: state.head, counters: CounterTable(), overlay: Overlay(checkpoint: state.head.position),
                                   chain: chain, epoch: 0))
        committed = Mutex(CommittedState(head: state.head, counters: CounterTable(), checkpoint: state.head.position))
        do {
            if state.stale || state.upgrade {
                try rebuildProjections(allIDs: state.upgrade, progress: options.rebuildProgress)
            } else if !options.readOnly {
                let loaded = try loadWriterState(epoch: 0, chain: chain)
                writer.withLock { $0 = loaded }
                committed.withLock {
                    $0.counters = loaded.counters
                    $0.checkpoint = loaded.overlay.checkpoint
                }
            }
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError("cannot load the projections in \(directory): \(error)")
        }
    }

    static let formatKey = Array("format".utf8)
    static let headKey = Array("head".utf8)
    static let windowKey = Array("window".utf8)
    static let projectedKey = Array("projected".utf8)
    static let pendingKey = Array("pending".utf8)
    static let projectionVersionKey = Array("projection_version".utf8)

    /// Reads the format, head and window; writes them for a new ledger; checks the head against
    /// the log. Returns whether the projections must be rebuilt, and whether the ledger is of
    /// format 2 (its `ids` index is rebuilt in runs, and the format set to 3, with them).
    private static func checkFormatAndHead(_ env: Environment, meta: Database, events: Database,
                                           options: Options) throws -> (head: Head, window: ReportWindow, stale: Bool, upgrade: Bool) {
        let stored: (format: UInt64?, head: Head?, last: UInt64?, window: ReportWindow?, projected: UInt64?, version: UInt64?) = try env.read { txn in
            let format = try txn.get(meta, key: formatKey).map(decodeUInt64)
            let head = try txn.get(meta, key: headKey).flatMap(decodeHead)
            let last = try txn.withLast(events) { key, _ in decodeUInt64(Array(key)) }
            let window = try txn.get(meta, key: windowKey).flatMap(decodeWindow)
            let projected = try txn.get(meta, key: projectedKey).map(decodeUInt64)
            let version = try txn.get(meta, key: projectionVersionKey).map(decodeUInt64)
            return (format, head, last, window, projected, version)
        }
        guard let format = stored.format else {
            if options.readOnly { return (.empty, .pilot, false, false) }
            let window = options.window ?? .pilot
            try env.write { txn in
                try txn.put(meta, key: formatKey, value: encodeUInt64(formatVersion))
                try txn.put(meta, key: headKey, value: encodeHead(.empty))
                try txn.put(meta, key: windowKey, value: encodeWindow(window))
                try txn.put(meta, key: projectedKey, value: encodeUInt64(0))
                try txn.put(meta, key: projectionVersionKey, value: encodeUInt64(projectionVersion))
            }
            return (.empty, window, false, false)
        }
        let upgrade = format == 2 && !options.readOnly
        if format == 2 && options.readOnly {
            throw StoreError("the ledger's format is version 2 and this program reads version \(formatVersion); start ledgerd on it once (or run `ledgerctl replay`), which upgrades it in place, then retry")
        }
        guard format == formatVersion || format == 3 || upgrade else {
            throw StoreError("the ledger's format is version \(format), this program reads version \(formatVersion); use the matching release")
        }
        if format == 3 && !options.readOnly {
            // Format 4 adds case records of encoding 3 (encoding 2 is still read) and `filters`
            // (opened above; filled at the first checkpoint or open): nothing to rewrite. The number
            // tells a program of format 3 not to open the ledger any more.
            try env.write { txn in try txn.put(meta, key: formatKey, value: encodeUInt64(formatVersion)) }
        }
        let head = stored.head ?? .empty
        // A writer must not extend an inconsistent log; a reader (verify, export) may look at it.
        guard options.readOnly || (stored.last ?? 0) == head.position else {
            throw StoreError("the ledger is inconsistent: its head says position \(head.position) but the log ends at \(stored.last ?? 0); run `ledgerctl verify`")
        }
        let storedWindow = stored.window ?? .pilot
        if options.readOnly { return (head, storedWindow, false, false) }
        let window = options.window ?? storedWindow
        let stale = (stored.projected ?? 0) > head.position || stored.window != window || stored.version != projectionVersion
        return (head, window, stale, upgrade)
    }

    /// Clears LMDB reader slots left by processes that died; returns how many.
    public func clearStaleReaders() throws -> Int {
        try environment.clearStaleReaders()
    }

    // MARK: Reading

    /// The last committed position and hash.
    public func head() throws -> Head {
        try environment.read { txn in try storedHead(txn) }
    }

    /// The head as `txn` sees it.
    func storedHead(_ txn: some Transaction) throws -> Head {
        try txn.get(meta, key: Ledger.headKey).flatMap(Ledger.decodeHead) ?? .empty
    }

    /// The checkpoint (`meta.projected`) as `txn` sees it.
    func storedCheckpoint(_ txn: some Transaction) throws -> UInt64 {
        try txn.get(meta, key: Ledger.projectedKey).map(Ledger.decodeUInt64) ?? 0
    }

    /// Events appended after the last checkpoint: held in memory by the writer, replayed from the
    /// log after a crash.
    public var eventsSinceCheckpoint: UInt64 {
        committed.withLock { $0.head.position - min($0.checkpoint, $0.head.position) }
    }

    /// The event ids the writer holds in memory (its overlay's: those of the events after the last
    /// checkpoint planned, and any taken back since).
    public var writerIDsInMemory: Int { writer.withLock { $0.overlay.ids.count } }

    /// The position the stored projections reflect (the last checkpoint); the events after it are
    /// held in memory by the writer.
    public func checkpointPosition() throws -> UInt64 {
        try environment.read { txn in try storedCheckpoint(txn) }
    }

    /// The position of a checkpoint being written in chunks (`meta.pending`), nil when none is:
    /// the stored projections are then partly at it and partly at `checkpointPosition()`.
    public func checkpointInProgress() throws -> UInt64? {
        try environment.read { txn in try storedPending(txn)?.position }
    }

    /// At most `limit` events from position `from` on, in order.
    public func read(from: UInt64, limit: Int) throws -> [StoredEvent] {
        guard limit > 0 else { return [] }
        return try environment.read { txn in try read(txn, from: from, limit: limit) }
    }

    func read(_ txn: some Transaction, from: UInt64, limit: Int) throws -> [StoredEvent] {
        var out: [StoredEvent] = []
        out.reserveCapacity(min(limit, 1024))
        try txn.scan(events, from: max(from, 1)) { key, value in
            guard let e = Ledger.decodeEvent(key: key, value: value) else { return false }
            out.append(e)
            return out.count < limit
        }
        return out
    }

    /// The event stored at `position`, or nil.
    public func event(at position: UInt64) throws -> StoredEvent? {
        try environment.read { txn in try event(txn, at: position) }
    }

    func event(_ txn: some Transaction, at position: UInt64) throws -> StoredEvent? {
        try withUnsafeBytes(of: position.bigEndian) { k in
            try txn.withValue(events, key: k) { StoredEvent(position: position, value: $0) } ?? nil
        }
    }

    /// Calls `body` with every event from `from` to `to` (inclusive) in order, reading in chunks of
    /// `chunk` events per snapshot so no read transaction stays open long.
    public func forEach(from: UInt64 = 1, to: UInt64 = .max, chunk: Int = 4096,
                        _ body: (StoredEvent) throws -> Void) throws {
        var next = max(from, 1)
        while next <= to {
            let batch = try read(from: next, limit: chunk)
            for e in batch {
                if e.position > to { return }
                try body(e)
            }
            guard let last = batch.last, batch.count == chunk else { return }
            next = last.position + 1
        }
    }

    /// The state of a case and its events, from one snapshot; nil state for a case with no events.
    /// The events are found from the latest back, each naming its case's previous one.
    public func caseHistory(_ caseID: String) throws -> (state: CaseState?, events: [StoredEvent]) {
        try withCurrentState(cases: [caseID]) { txn, current in
            guard let record = try caseRecord(caseID, overlay: current.overlay, txn: txn) else { return (nil, []) }
            var events: [StoredEvent] = []
            var next = record.last
            while next != 0, events.count < Int(record.state.version) {
                let found: (StoredEvent, UInt64)? = try withUnsafeBytes(of: next.bigEndian) { k in
                    try txn.withValue(self.events, key: k) { v in
                        guard let e = StoredEvent(position: next, value: v), let f = StoredEvent.facts(in: v) else { return nil }
                        return (e, f.previous)
                    } ?? nil
                }
                guard let (event, previous) = found else {
                    throw StoreError("case \(caseID)'s event at position \(next) cannot be read; run `ledgerctl verify`")
                }
                events.append(event)
                next = previous
            }
            return (record.state, events.reversed())
        }
    }

    /// The number of events a case has (its version).
    public func caseVersion(_ caseID: String) throws -> UInt64 {
        try caseHistory(caseID).state?.version ?? 0
    }

    static func decodeEvent(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> StoredEvent? {
        guard key.count == 8 else { return nil }
        return StoredEvent(position: decodeUInt64(key), value: value)
    }

    /// The head, the counters and the overlay that go with one read snapshot.
    struct CurrentState {
        var head: Head
        var counters: CounterTable
        var overlay: Overlay
    }

    /// Calls `body` with a read snapshot and the state at its head. In the writing process the
    /// state is the writer's (the counters, the duration samples and, of the overlay's cases and
    /// ids, those named in `cases`: nil for all); a reader in another process replays the events
    /// after the stored checkpoint (at most `checkpointEvents`) from the snapshot itself.
    func withCurrentState<T>(cases wanted: [String]? = [], _ body: (ReadTransaction, CurrentState) throws -> T) throws -> T {
        if options.readOnly {
            return try environment.read { txn in try body(txn, try currentState(txn, capacity: 16)) }
        }
        for _ in 0..<1000 {
            let done: T? = try environment.read { txn in
                let stored = try storedHead(txn)
                let storedCheckpoint = try storedCheckpoint(txn)
                let current: CurrentState? = try writer.withLock { state in
                    // Everything sequenced is committed first, and a checkpoint's missing chunks
                    // written, so the state is what is stored.
                    try drain(&state)
                    // A commit between the snapshot and the lock: take a newer snapshot.
                    guard state.head == stored, committed.withLock({ $0.checkpoint }) == storedCheckpoint else { return nil }
                    var overlay = Overlay(checkpoint: state.overlay.checkpoint)
                    overlay.durations = state.overlay.durations
                    if let wanted {
                        for id in wanted { if let r = state.overlay.caseRecord(id) { overlay.setCase(id, r) } }
                    } else {
                        overlay.cases = state.overlay.cases
                        overlay.ids = state.overlay.ids
                    }
                    return CurrentState(head: state.head, counters: state.counters, overlay: overlay)
                }
                guard let current else { return nil }
                return try body(txn, current)
            }
            if let done { return done }
        }
        throw StoreError("the ledger kept changing while being read; retry")
    }

    // MARK: Appending

    /// Appends a group of requests in one durable commit.
    ///
    /// Each request is atomic on its own: a request that fails validation gets its `LedgerError` and
    /// leaves no trace, without affecting the others. The results are returned only after the commit
    /// returned, so a success is durable. When the map is full it is grown and the group redone; when
    /// it cannot grow or the disk is full every request gets `unavailable` and nothing is stored.
    public func append(_ requests: [[Event]], recordedAt: Timestamp = .now()) -> [Result<[AppendResult], LedgerError>] {
        commit(sequence(requests, recordedAt: recordedAt))
    }

    /// Writes the events and projections after the checkpoint into their databases now (at a
    /// clean shutdown, so that the next open has nothing to replay), in chunks of their own
    /// transactions like any checkpoint.
    public func checkpoint() throws {
        guard !options.readOnly else { return }
        try writer.withLock { state in
            try drain(&state)
            guard state.overlay.checkpoint < state.head.position else {
                // The last group's checkpoint is at the head: only the filter of all ids is missing.
                try storeAllIDFilter(state.idFilters.all, at: state.head.position)
                return
            }
            let runStart = state.overlay.checkpoint + 1
            let run = state.idFilters.addRun(start: runStart, ids: state.overlay.ids)
            let plan = CheckpointPlan(state.overlay, counters: state.counters, position: state.head.position,
                                      runStart: runStart, idFilters: (state.idFilters.all, run),
                                      chunkKeys: options.checkpointChunkKeys,
                                      casesShape: try environment.read { txn in try txn.shape(cases) })
            try writeCheckpointChunksNow(plan, 0..<plan.chunks)
            state.overlay.checkpointed(at: state.head.position, capacity: options.checkpointEvents)
        }
    }

    /// Stores the filter of all ids as of the checkpoint at `position` unless it is stored already.
    func storeAllIDFilter(_ all: IDFilter, at position: UInt64) throws {
        guard let db = filters else { return }
        let key = Ledger.encodeUInt64(position)
        let outcome = withMapGrowth { () throws in
            try environment.write { txn in
                if try txn.get(db, key: Ledger.allIDsFilterKey)?.prefix(8).elementsEqual(key) == true { return }
                try storeIDFilters(all: Ledger.allIDsFilterValue(all, at: position), runs: [], txn: txn)
            }
        }
        if case .failure(let e) = outcome { throw e }
    }

    /// Writes chunks `chunks` of `plan`, each in a transaction of its own, and then marks the
    /// checkpoint committed. For a writer that holds the lock and has nothing in flight.
    func writeCheckpointChunksNow(_ plan: CheckpointPlan, _ chunks: Range<Int>) throws {
        for chunk in chunks {
            let outcome = withMapGrowth { () throws in
                try environment.write { txn in try writeCheckpointChunk(plan, chunk, txn: txn) }
            }
            if case .failure(let e) = outcome { throw e }
            environment.releaseMappedPages()
        }
        committed.withLock { $0.checkpoint = plan.position }
    }

    /// Runs `body` (one write transaction); when the map is full grows it (doubling, up to the
    /// maximum) and runs `body` again. Resource exhaustion becomes `LedgerError(.unavailable)`.
    func withMapGrowth(_ body: () throws -> Void) -> Result<Void, any Error> {
        while true {
            do {
                try body()
                return .success(())
            } catch let e as LMDBError where e.isMapFull {
                let info = environment.info()
                let target = min(info.mapSize * 2, options.maxMapSize)
                if target <= info.mapSize {
                    return .failure(LedgerError(.unavailable, "the ledger's map is full at \(info.mapSize >> 20) MiB (max_map_size_gib); nothing was stored; raise it and restart, then retry"))
                }
                do { try environment.growMap(minimum: target) } catch {
                    return .failure(LedgerError(.unavailable, "the ledger's map is full and could not grow (\(error)); nothing was stored; retry later"))
                }
            } catch let e as LMDBError where e.isNoSpace {
                return .failure(LedgerError(.unavailable, "the disk is full; nothing was stored; free space, then retry"))
            } catch {
                return .failure(error)
            }
        }
    }

    /// An event accepted in the current group: its request, its index there and the position of
    /// its case's previous event. The group's `n`-th accepted event gets position group start + n.
    struct AcceptedEvent: Sendable {
        let request: Int
        let index: Int
        let previous: UInt64
    }

    /// Validates request `r` of the group against the stored state (`lookup`) and `overlay`,
    /// applies it to the overlay and `delta`, and adds its new events to `accepted`. Throws when an
    /// event fails, with the changes to the overlay noted in `undo` (the caller drops the request's
    /// `accepted`).
    func appendRequest(_ r: Int, requests: [[Event]], groupStart: UInt64, lookup: Lookup,
                       accepted: inout [AcceptedEvent], overlay: inout Overlay, undo: inout Overlay.Undo,
                       delta: inout ProjectionDelta, idFilters: inout IDFilters) throws -> [AppendResult] {
        let request = requests[r]
        var results: [AppendResult] = []
        results.reserveCapacity(request.count)
        // Each id and case id is hashed once. The events go in blocks: first the table slots and
        // filter blocks of the whole block are read, then the entries they name, then the events
        // are applied. The reads of a block are independent, so their cache misses overlap
        // instead of stalling one after the other (the tables outgrow the CPU's caches).
        // (The loops that read ahead do nothing else, so that the processor can have many of
        // those reads in flight.)
        var idHashes = [UInt64](repeating: 0, count: request.count)
        var caseHashes = [UInt64](repeating: 0, count: request.count)
        request.withUnsafeBufferPointer { events in  // (by address: `map` would copy each event)
            for k in events.indices {
                idHashes[k] = keyHash(events[k].id)
                caseHashes[k] = keyHash(events[k].caseID)
            }
        }
        var touched: UInt64 = 0
        for index in request.indices {
            if index % Ledger.touchBlock == 0 {
                let block = index..<min(index + Ledger.touchBlock, request.count)
                for k in block { touched ^= overlay.ids.touch(idHashes[k]) ^ overlay.cases.touch(caseHashes[k]) }
                for k in block { touched ^= idFilters.all.touch(idHashes[k]) ^ lookup.touchCase(caseHashes[k]) }
                for k in block {
                    touched ^= overlay.cases.touchEntry(caseHashes[k]) ^ lookup.touchCaseEntry(caseHashes[k])
                }
            }
            let id = request[index].id
            let idHash = idHashes[index]
            // The id's slot in the overlay, if it has one (0 while it names no event there). Looked
            // up, not inserted: only an event appended takes a slot, so that retries of old events
            // (and rejected requests) do not fill the overlay until the next checkpoint (a 4M-event
            // log sent again grew it by 160 MiB).
            let ii = overlay.ids.index(of: id, hash: idHash)
            let inOverlay = ii.map { overlay.ids[value: $0] } ?? 0
            let existing = inOverlay != 0 ? inOverlay
                : !idFilters.all.mayContain(hash: idHash) ? nil  // never seen: new, no lookup
                : try lookup.frozen?.position(ofID: id) ?? lookup.readingStored {
                    try storedPosition(ofID: id, hash: idHash, filters: idFilters, txn: lookup.txn)
                }
            if let existing {
                let original: [UInt8]
                if existing > groupStart {  // earlier in this group
                    let a = accepted[Int(existing - groupStart - 1)]
                    original = requests[a.request][a.index].canonical
                } else if existing > lookup.storedHead,
                          let g = lookup.recent.last(where: { $0.start < existing && existing <= $0.start + UInt64($0.accepted.count) }) {
                    let a = g.accepted[Int(existing - g.start - 1)]  // in a group not stored yet
                    original = g.requests[a.request][a.index].canonical
                } else {
                    // (Counted as a read of the stored indexes: a retry of old events reads them
                    // all over the file, and their mapped pages went to 112 MiB for a 4M-event log.)
                    guard let stored = try lookup.readingStored({ try self.event(lookup.txn, at: existing) }) else {
                        throw StoreError("the id index points at missing position \(existing); run `ledgerctl verify`")
                    }
                    original = Array(stored.event)
                }
                if original == request[index].canonical {
                    results.append(AppendResult(position: existing, duplicate: true))
                    continue
                }
                throw LedgerError(.idConflict, "id \"\(id)\" is already at position \(existing) with other content; use a new id for a new event", index: index)
            }
            let position = groupStart + UInt64(accepted.count) + 1
            let previous: UInt64
            do {
                previous = try apply(request[index].facts, id: id, idIndex: ii, idHash: idHash, caseHash: caseHashes[index],
                                     position: position, overlay: &overlay, undo: &undo, delta: &delta) { caseID, h in
                    if let cached = lookup.cachedCaseRecord(caseID, hash: h) { return cached }
                    return try lookup.readingStored { try storedCaseRecord(caseID, txn: lookup.txn) }
                }
            } catch let e as LedgerError {
                throw e.at(index: index)
            }
            idFilters.insert(hash: idHash)
            accepted.append(AcceptedEvent(request: r, index: index, previous: previous))
            results.append(AppendResult(position: position, duplicate: false))
        }
        touchSink.wrappingAdd(touched, ordering: .relaxed)
        return results
    }

    /// Events whose table reads `appendRequest` issues together.
    static let touchBlock = 32

    // MARK: Encoding

    static func encodeUInt64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }

    static func decodeUInt64(_ b: [UInt8]) -> UInt64 {
        b.withUnsafeBytes { decodeUInt64($0) }
    }

    static func decodeUInt64(_ b: UnsafeRawBufferPointer) -> UInt64 {
        guard b.count >= 8 else { return 0 }
        var v: UInt64 = 0
        for k in 0..<8 { v = v << 8 | UInt64(b[k]) }
        return v
    }

    static func encodeHead(_ h: Head) -> [UInt8] { encodeUInt64(h.position) + h.hash }

    static func decodeHead(_ b: [UInt8]) -> Head? {
        guard b.count == 40 else { return nil }
        return Head(position: decodeUInt64(Array(b[0..<8])), hash: Array(b[8..<40]))
    }

    static func encodeWindow(_ w: ReportWindow) -> [UInt8] { Array("\(w.start)/\(w.end)".utf8) }

    static func decodeWindow(_ b: [UInt8]) -> ReportWindow? {
        let parts = String(decoding: b, as: UTF8.self).split(separator: "/")
        guard parts.count == 2 else { return nil }
        return ReportWindow(start: String(parts[0]), end: String(parts[1]))
    }

    /// position ‖ measure ‖ seconds (sign bit flipped), all big-endian: in the order samples are
    /// made, so a checkpoint appends its samples at the end of the tree. (Readers load all of them
    /// and sort: the order of the keys is only the writer's concern.)
    static func durationKey(_ m: Measure, _ seconds: Int64, _ position: UInt64) -> [UInt8] {
        encodeUInt64(position) + [m.rawValue] + encodeUInt64(UInt64(bitPattern: seconds) ^ (1 << 63))
    }
}

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

/// Builds the stored values of accepted events and the hash chain on a thread of its own, in the
/// order they are added, group after group; each group's values are laid end to end in one buffer.
/// One per ledger: the chain runs on from group to group.
final class ChainBuilder: @unchecked Sendable {
    // @unchecked: `hash`, `position`, `buffer`, `ends` and `recordTail` are touched only by blocks
    // on `queue`, which runs them one at a time in order.
    private let queue = DispatchQueue(label: "ledger-chain", qos: .userInitiated)
    private var hash: [UInt8]
    private var position: UInt64
    private var buffer: [UInt8] = []
    private var ends: [Int] = []
    private var recordTail: [UInt8] = []
    /// Buffers of committed groups, emptied, for the next groups (`recycle`): a group's buffer is
    /// a few MiB, and a fresh one costs a page fault per 4 KiB written whenever the allocator
    /// maps it anew (it does for every block above its mmap threshold).
    private var spares: [(buffer: [UInt8], ends: [Int])] = []
    /// Enough for the groups in flight: one being built, one sealed, one being written.
    private static let maxSpares = 3

    init(head: Head) {
        hash = head.hash
        position = head.position
    }

    /// One group's values, once sealed.
    final class Sealed: @unchecked Sendable {
        // @unchecked: set once by the chain's queue before `done` is signalled, read after `wait`.
        private let done = DispatchSemaphore(value: 0)
        private let builder: ChainBuilder
        fileprivate var buffer: [UInt8] = []
        fileprivate var ends: [Int] = []
        fileprivate var hash: [UInt8] = []
        private var waited = false

        fileprivate init(builder: ChainBuilder) { self.builder = builder }

        fileprivate func fill(_ buffer: [UInt8], _ ends: [Int], _ hash: [UInt8]) {
            self.buffer = buffer
            self.ends = ends
            self.hash = hash
            done.signal()
        }

        /// Waits for the group's values (once; later calls return at once).
        func wait() -> Sealed {
            if !waited {
                done.wait()
                waited = true
            }
            return self
        }

        /// Calls `body` with each value in position order.
        func forEach(_ body: (Int, UnsafeRawBufferPointer) throws -> Void) rethrows {
            try buffer.withUnsafeBytes { b in
                var start = 0
                for (k, end) in ends.enumerated() {
                    try body(k, UnsafeRawBufferPointer(rebasing: b[start..<end]))
                    start = end
                }
            }
        }

        /// The hash of the group's last event.
        var lastHash: [UInt8] { hash }

        /// Once the values are written: gives the buffers back to the builder for a later group.
        func recycle() { builder.recycle(self) }
    }

    /// Starts a group of at most `events` events recorded with `recordTail` (`,"recorded_at":"…"}`).
    func begin(recordTail: [UInt8], events: Int) {
        queue.async { [self] in
            // Room for the whole group up front: a buffer grown by doubling copies itself (and
            // faults in fresh pages) several times per group.
            if let spare = spares.popLast() {
                buffer = spare.buffer
                ends = spare.ends
            } else {
                buffer = []
                ends = []
            }
            buffer.reserveCapacity(events * 512)
            ends.reserveCapacity(events)
            self.recordTail = recordTail
        }
    }

    /// Queues the events `accepted` (all of `request`'s new ones, in order).
    func add(_ request: [Event], _ accepted: [Ledger.AcceptedEvent]) {
        queue.async { [self] in
            // Worked on as locals (moved out and back): each use of a class's stored property is
            // checked for exclusive access.
            var buffer: [UInt8] = []
            var ends: [Int] = []
            var hash: [UInt8] = []
            swap(&buffer, &self.buffer)
            swap(&ends, &self.ends)
            swap(&hash, &self.hash)
            var position = self.position
            let recordTail = self.recordTail
            request.withUnsafeBufferPointer { events in  // (events by address, not copied)
                for a in accepted {
                    position += 1
                    let start = buffer.count
                    StoredEvent.appendValue(to: &buffer, previous: hash, event: events.baseAddress! + a.index,
                                            casePrevious: a.previous, position: position, recordTail: recordTail)
                    hash.withUnsafeMutableBytes { h in
                        buffer.withUnsafeBytes { b in h.copyMemory(from: UnsafeRawBufferPointer(rebasing: b[start..<(start + 32)])) }
                    }
                    ends.append(buffer.count)
                }
            }
            swap(&buffer, &self.buffer)
            swap(&ends, &self.ends)
            swap(&hash, &self.hash)
            self.position = position
        }
    }

    /// Ends the group: its values, once built.
    func seal() -> Sealed {
        let sealed = Sealed(builder: self)
        queue.async { [self] in
            sealed.fill(buffer, ends, hash)
            buffer = []
            ends = []
        }
        return sealed
    }

    /// Takes back a group's buffers once its values are written, for a later group to reuse.
    private func recycle(_ sealed: Sealed) {
        var spare = (buffer: [UInt8](), ends: [Int]())
        swap(&spare.buffer, &sealed.buffer)
        swap(&spare.ends, &sealed.ends)
        spare.buffer.removeAll(keepingCapacity: true)
        spare.ends.removeAll(keepingCapacity: true)
        queue.async { [self, spare] in
            if spares.count < ChainBuilder.maxSpares { spares.append(spare) }
        }
    }

    /// Continues the chain from `head` (after a failed write: the groups built since are dropped).
    func reset(to head: Head) {
        queue.async { [self] in
            hash = head.hash
            position = head.position
            buffer = []
            ends = []
        }
    }
}
