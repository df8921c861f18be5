public import LedgerCore
import LMDBKit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The event log on LMDB, with its projections (docs/STORAGE.md).
///
/// Guarantees:
/// - An append request is atomic: all its events are committed durably together, or none is.
/// - Positions start at 1 and have no gaps; the hash chain covers every event (CONTRACT §5).
/// - Reads never wait for the writer: each is served from the snapshot published by the last commit
///   (`Snapshot`) and an LMDB read transaction; a request that starts after `append` returned sees
///   that append.
/// - The projections stored on disk reflect `projected`, written atomically with them by a checkpoint;
///   the events after it are applied in memory by the writer and again, from the log, at every open.
///
/// Rules for the caller: one `Ledger` per data directory per process; `append`, `checkpoint` and
/// `rebuildProjections` from one thread at a time; a writer needs the directory's `DirectoryLock`.
public final class Ledger: Sendable {
    let environment: Environment
    let layout: Layout
    let options: Options
    /// The data directory.
    public let directory: String
    /// The report window the projections are computed for.
    public let window: ReportWindow
    /// The seed of the id hash (`meta.id_hash`).
    let idSeed: UInt64
    /// The writer's state (for a ledger opened read-only, the state loaded at open or `refresh`).
    let writer: Mutex<WriterState>
    /// Opened to write (not read-only).
    let isWriter: Bool
    /// What readers see.
    let published: Mutex<Snapshot>
    /// The head the committing stage has written (`Ledger.commit`).
    let committer: Mutex<CommitterState>
    /// The file-backed resident bytes when the ledger was opened (the program's code): what
    /// `mappedPagesLimit` is counted above.
    let residentFileBaseline = Environment.residentFileBytes()
    /// `committer`'s head position, readable without waiting for a commit in progress.
    let committedPosition: Atomic<UInt64>
    /// Bumped when a commit fails: groups sequenced before are failed too, and the sequencer loads
    /// its state again from what is stored.
    let epoch = Atomic<UInt64>(0)

    public struct Options: Sendable {
        /// The map size to start with; it doubles when full up to `maxMapSize`.
        public var initialMapSize: Int = 1 << 30
        /// The largest the map may grow to. Past it appends fail with `unavailable`.
        public var maxMapSize: Int = 1 << 40
        /// Open for reading only: nothing is created or written.
        public var readOnly = false
        /// Create the ledger when the directory is missing or empty (only `ledgerd` does).
        public var create = false
        /// The report window. A writer stores it; when it differs from the stored one the
        /// projections are rebuilt at open. Nil keeps the stored one (the pilot's for a new ledger).
        public var window: ReportWindow?
        /// A checkpoint is due when this many events follow the stored projections. More: fewer,
        /// larger checkpoints and more memory; at most this many (plus a group) are replayed at open.
        public var checkpointEvents = 250_000
        /// A checkpoint is due when events follow the stored projections and the last checkpoint is
        /// this old, so that when appends stop the stored projections reach the head this soon.
        public var checkpointSeconds = 5.0
        /// The bytes of `data.mdb` the process may hold mapped in its resident set (pages it touched
        /// through LMDB's map) before the writer drops its mappings of the map after a commit or a
        /// checkpoint. The pages stay in the page cache; only this process's resident set forgets
        /// them, so that it does not grow with the log.
        public var mappedPagesLimit = 32 << 20
        /// Told about a rebuild of the projections at open (events done, total).
        public var rebuildProgress: @Sendable (UInt64, UInt64) -> Void = { _, _ in }
        public init() {}
    }

    /// Opens the ledger in `directory`. A writer rebuilds the projections when they were made by
    /// another version or for another window.
    /// - Throws: `StoreError` naming the directory and what to do.
    public init(directory: String, options: Options = Options()) throws(StoreError) {
        self.directory = directory
        self.options = options
        try Ledger.checkDirectory(directory, options: options)
        var envOptions = Environment.Options()
        envOptions.mapSize = options.initialMapSize
        envOptions.readOnly = options.readOnly
        let fresh: Bool
        do {
            environment = try Environment(path: directory, options: envOptions)
            fresh = try environment.mainDatabaseEntries() == 0
            if !fresh {
                // A ledger of another format is named before its databases are looked for.
                let format: UInt64?
                do {
                    let meta = try environment.openDatabase("meta", create: false)
                    format = try environment.read { txn in try txn.get(meta, key: Layout.MetaKey.format.key).flatMap(Layout.decodeUInt64) }
                } catch let e as LMDBError where e.isNotFound {
                    format = nil
                }
                guard let format else {
                    throw StoreError(.notALedger, "\(directory)/data.mdb is another program's LMDB database, not a ledger; check --data-dir",
                                     directory: directory)
                }
                try Ledger.checkFormat(format, directory: directory)
            }
            layout = try Layout(environment, create: fresh && !options.readOnly)
        } catch let e as StoreError {
            throw e
        } catch let e as LMDBError where e.isNotFound {
            throw StoreError(.notALedger, "\(directory) holds an LMDB environment that is not a ledger of this program; check --data-dir",
                             directory: directory, underlying: e)
        } catch {
            throw StoreError.wrap(error, "opening the ledger", directory: directory)
        }
        let meta: (window: ReportWindow, seed: UInt64, rebuild: Bool)
        do {
            meta = try Ledger.checkMeta(environment, layout, directory: directory, options: options, fresh: fresh)
        } catch {
            throw StoreError.wrap(error, "reading the ledger's format", directory: directory)
        }
        window = meta.window
        idSeed = meta.seed
        let empty = WriterState(head: .empty, projected: 0, indexed: 0, counters: CounterTable())
        published = Mutex(empty.snapshot)
        writer = Mutex(empty)
        committer = Mutex(CommitterState(head: .empty))
        committedPosition = Atomic(0)
        isWriter = !options.readOnly
        do {
            if meta.rebuild {
                try rebuildProjections(progress: options.rebuildProgress)
            } else {
                var state = try loadState(writer: isWriter)
                adopt(&state)
                writer.withLock { $0 = state }
            }
        } catch {
            throw StoreError.wrap(error, "loading the projections", directory: directory)
        }
    }

    /// Refuses a path that cannot hold this ledger before LMDB maps anything: a missing directory or
    /// `data.mdb` for a reader, a directory with other files for a new ledger.
    private static func checkDirectory(_ directory: String, options: Options) throws(StoreError) {
        var st = stat()
        let hasData = stat(directory + "/data.mdb", &st) == 0
        if hasData { return }
        guard options.create, !options.readOnly else {
            throw StoreError(.notALedger, "\(directory) holds no ledger (no data.mdb); check --data-dir", directory: directory)
        }
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw StoreError(.io, "cannot create the data directory \(directory): \(String(cString: strerror(errno)))", directory: directory)
        }
        guard let dir = opendir(directory) else {
            throw StoreError(.io, "cannot read the data directory \(directory): \(String(cString: strerror(errno)))", directory: directory)
        }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard [".", "..", "ledgerd.lock", "lock.mdb"].contains(name) else {
                throw StoreError(.notALedger, "\(directory) is not empty and holds no ledger (it has \(name)); a new ledger is made only in an empty or missing directory",
                                 directory: directory)
            }
        }
    }

    /// Reads (or, for a new ledger, writes) the format, the window and the id hash. Returns whether
    /// the projections must be rebuilt.
    private static func checkMeta(_ env: Environment, _ layout: Layout, directory: String, options: Options,
                                  fresh: Bool) throws -> (window: ReportWindow, seed: UInt64, rebuild: Bool) {
        if fresh {
            guard !options.readOnly else { throw StoreError(.notALedger, "\(directory) holds an empty LMDB environment, not a ledger", directory: directory) }
            let window = options.window ?? .pilot
            var seed: UInt64 = 0
            while seed == 0 { seed = UInt64.random(in: .min ... .max) }
            try env.write { txn in
                try txn.put(layout.meta, key: Layout.MetaKey.format.key, value: Layout.encode(Layout.format))
                try txn.put(layout.meta, key: Layout.MetaKey.head.key, value: Layout.encodeHead(.empty))
                try txn.put(layout.meta, key: Layout.MetaKey.window.key, value: Layout.encodeWindow(window))
                try txn.put(layout.meta, key: Layout.MetaKey.projected.key, value: Layout.encode(0))
                try txn.put(layout.meta, key: Layout.MetaKey.indexed.key, value: Layout.encode(0))
                try txn.put(layout.meta, key: Layout.MetaKey.projectionVersion.key, value: Layout.encode(Layout.projectionVersion))
                try txn.put(layout.meta, key: Layout.MetaKey.idHash.key, value: Layout.encodeIDHash(seed: seed))
            }
            return (window, seed, false)
        }
        let stored = try env.read { txn in
            (format: try txn.get(layout.meta, key: Layout.MetaKey.format.key).flatMap(Layout.decodeUInt64),
             window: try txn.get(layout.meta, key: Layout.MetaKey.window.key).flatMap(Layout.decodeWindow),
             idHash: try txn.get(layout.meta, key: Layout.MetaKey.idHash.key),
             version: try txn.get(layout.meta, key: Layout.MetaKey.projectionVersion.key).flatMap(Layout.decodeUInt64))
        }
        try checkFormat(stored.format ?? 0, directory: directory)
        guard let seed = stored.idHash.flatMap(Layout.decodeIDHash) else {
            throw StoreError(.wrongFormat, "the ledger's id index in \(directory) was built with another id hash than this program's \(keyHashName); run `ledgerctl upgrade --data-dir \(directory)` with the program that wrote it, or rebuild the index with this one (`ledgerctl replay`)",
                             directory: directory, database: "meta")
        }
        let storedWindow = stored.window ?? .pilot
        if options.readOnly { return (storedWindow, seed, false) }
        let window = options.window ?? storedWindow
        return (window, seed, window != storedWindow || stored.version != Layout.projectionVersion)
    }

    /// Throws unless `format` is the one this program reads, naming what to do.
    private static func checkFormat(_ format: UInt64, directory: String) throws(StoreError) {
        guard format != Layout.format else { return }
        if format == 4 {
            throw StoreError(.wrongFormat, "the ledger in \(directory) is of format 4; run `ledgerctl upgrade --data-dir \(directory)` once (with ledgerd stopped), which keeps the old directory",
                             directory: directory)
        }
        throw StoreError(.wrongFormat, "the ledger in \(directory) is of format \(format) and this program reads format \(Layout.format); use the matching release",
                         directory: directory)
    }

    /// Clears LMDB reader slots left by processes that died; returns how many.
    public func clearStaleReaders() throws(StoreError) -> Int {
        do { return try environment.clearStaleReaders() } catch {
            throw StoreError.wrap(error, "clearing stale readers", directory: directory)
        }
    }

    // MARK: Loading

    /// The state at the stored head: the stored projections, with the events after them applied
    /// again from the log (`WriterState.apply`, the path of appending); a writer's with the id
    /// filters. A reader does it in one read transaction (the daemon may checkpoint meanwhile). A
    /// writer reads in chunks and checkpoints whenever `checkpointEvents` events are applied (a
    /// rebuild from position 0), so that its memory stays bounded.
    /// The id filters are left to the first append (`prepareToAppend`).
    /// - Parameters:
    ///   - rebuilding: a rebuild from position 0 (`rebuildProjections`): checkpoints every
    ///     `Ledger.rebuildInterval` events and at the end.
    ///   - progress: events applied and the head, now and then.
    func loadState(writer isWriter: Bool, rebuilding: Bool = false,
                   progress: (UInt64, UInt64) -> Void = { _, _ in }) throws -> WriterState {
        var loader = StateLoader(ledger: self, isWriter: isWriter, interval: rebuilding ? Ledger.rebuildInterval : options.checkpointEvents)
        if isWriter {
            try environment.read { txn in try loader.start(txn) }
            while try environment.read({ txn in try loader.apply(txn, progress: progress) }) {
                try loader.checkpoint()
            }
            if rebuilding { try loader.checkpoint(force: true) }
        } else {
            try environment.read { txn in
                try loader.start(txn)
                _ = try loader.apply(txn, progress: progress)
            }
        }
        return loader.finish(progress: progress)
    }

    /// Events between the checkpoints of a rebuild: more than `checkpointEvents`, since a rebuild
    /// runs with the daemon stopped and each checkpoint rewrites the pages of the cases it changed.
    static let rebuildInterval = 1 << 21
    /// The counters as stored (at `projected`).
    func storedCounters(_ txn: some Transaction) throws -> CounterTable {
        var out = CounterTable()
        try txn.scan(layout.counters, from: nil) { key, value in
            guard let raw = Layout.decodeUInt64(key), let v = Layout.decodeUInt64(value) else {
                throw StoreError(.corrupt, "a stored counter cannot be read; run `ledgerctl replay`", directory: directory, database: "counters")
            }
            out.add(CounterKey(raw: raw), Int64(bitPattern: v))
            return true
        }
        return out
    }
}

/// `Ledger.loadState`'s work: the stored projections, then the events after them.
struct StateLoader {
    let ledger: Ledger
    let isWriter: Bool
    /// A writer checkpoints when this many events follow the stored projections.
    let interval: UInt64
    var state = WriterState(head: .empty, projected: 0, indexed: 0, counters: CounterTable())
    /// The head as stored when loading started: the events are applied up to it.
    var target = Head.empty
    var recent: [(hash: UInt64, position: UInt64)] = []
    var samples: [DurationSample] = []
    var noUndo: WriterState.Undo?
    var delta = ProjectionDelta()

    init(ledger: Ledger, isWriter: Bool, interval: Int) {
        self.ledger = ledger
        self.isWriter = isWriter
        self.interval = UInt64(interval)
    }

    /// Reads the head, the stored positions and counters.
    mutating func start(_ txn: ReadTransaction) throws {
        let layout = ledger.layout
        let head = try txn.get(layout.meta, key: Layout.MetaKey.head.key).flatMap(Layout.decodeHead) ?? .empty
        let projected = try txn.get(layout.meta, key: Layout.MetaKey.projected.key).flatMap(Layout.decodeUInt64) ?? 0
        let indexed = try txn.get(layout.meta, key: Layout.MetaKey.indexed.key).flatMap(Layout.decodeUInt64) ?? 0
        let last = try txn.withLast(layout.events) { key, _ in Layout.decodeUInt64(key) ?? 0 } ?? 0
        // A writer must not extend an inconsistent log; a reader (verify, export) may look at it.
        guard last == head.position || !isWriter else {
            throw StoreError(.corrupt, "the ledger is inconsistent: its head says position \(head.position) but the log ends at \(last); run `ledgerctl verify`",
                             directory: ledger.directory, database: "events", position: min(last, head.position) + 1)
        }
        guard projected <= head.position, indexed <= head.position else {
            throw StoreError(.corrupt, "the stored projections say position \(max(projected, indexed)) but the log ends at \(head.position); run `ledgerctl replay`",
                             directory: ledger.directory, database: "meta")
        }
        target = head
        state = WriterState(head: Head(position: projected, hash: []), projected: projected, indexed: indexed,
                            counters: try ledger.storedCounters(txn),
                            capacity: interval > UInt64(ledger.options.checkpointEvents) ? (16, 16)  // a rebuild: its shards' tables
                                : (min(Int(interval), 1 << 20), min(Int(interval), 1 << 20)))
    }

    /// Applies the events after the state's head, up to the target; a writer stops after a chunk.
    /// Returns whether a checkpoint is due (a writer only) before going on.
    mutating func apply(_ txn: ReadTransaction, progress: (UInt64, UInt64) -> Void) throws -> Bool {
        let target = self.target.position
        let interval = self.interval
        var applied = 0
        var lastValue: UInt64 = 0
        try txn.scan(ledger.layout.events, from: state.head.position + 1) { key, value in
            guard let position = Layout.decodeUInt64(key), position <= target else { return false }
            guard let factsBytes = StoredEvent.factsBytes(in: value), let facts = EventFacts.decode(factsBytes, withID: false) else {
                throw StoreError.unreadable(position)
            }
            let caseHash = keyHash(facts.caseID)
            delta.increments.removeAll(keepingCapacity: true)
            delta.durations.removeAll(keepingCapacity: true)
            do {
                _ = try state.apply(facts, caseHash: caseHash, position: position, window: ledger.window, delta: &delta,
                                    undo: &noUndo) { try ledger.storedCaseRecord($0, txn: txn) }
            } catch let e as LedgerError {
                throw StoreError.brokenRule(position, e)
            }
            delta.apply(to: &state.counters)
            for d in delta.durations { samples.append(DurationSample(measure: d.measure, seconds: d.seconds, position: position)) }
            recent.append((caseHash, position))
            if position > state.indexed {
                guard let id = EventFacts.idBytes(in: factsBytes) else { throw StoreError.unreadable(position) }
                let h = keyHash(id, seed: ledger.idSeed)
                state.ids.insert(hash: h, position: position)
            }
            state.head = Head(position: position, hash: [])
            lastValue = position
            applied += 1
            if position & 0xFFFF == 0 { progress(position, target) }
            // A writer: a read transaction per chunk, and a checkpoint when an interval is full.
            return !isWriter || (applied < 8192 && position - state.projected < interval)
        }
        if lastValue != 0 {
            // The chain hash of the last event applied, read once per chunk.
            state.head = Head(position: lastValue, hash: try withUnsafeBytes(of: lastValue.bigEndian) { k in
                try txn.withValue(ledger.layout.events, key: k) { Array($0.prefix(32)) }
            } ?? [])
        }
        return isWriter && applied > 0 && state.head.position < target
    }

    /// Writes the state applied so far as a checkpoint (a writer, between chunks): when an interval
    /// is full, or, with `force`, when anything was applied.
    mutating func checkpoint(force: Bool = false) throws {
        let behind = state.head.position - state.projected
        guard behind >= interval || (force && behind > 0) else { return }
        state.samples = samples.isEmpty ? nil : SampleChunk(samples, previous: nil)
        try ledger.writeCheckpoint(&state)
        recent.removeAll()
        samples.removeAll()
    }

    /// The state loaded.
    mutating func finish(progress: (UInt64, UInt64) -> Void) -> WriterState {
        if state.head.position == state.projected && state.head.position == target.position { state.head = target }
        if state.head.hash.isEmpty {
            // The log ends before its head (a reader of a damaged ledger): the head as far as it goes.
            state.head = Head(position: state.head.position, hash: target.hash)
        }
        state.recent = RecentCases.empty.adding(recent)
        state.samples = samples.isEmpty ? nil : SampleChunk(samples, previous: nil)
        progress(target.position, target.position)
        return state
    }
}
