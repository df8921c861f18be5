internal import CLMDB
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A named LMDB database inside an environment. Valid for the life of its environment.
public struct Database: Sendable, Hashable {
    let dbi: MDB_dbi
}

/// An LMDB environment: one data file and its lock file in a directory.
///
/// Guarantees:
/// - It is opened with `MDB_NOTLS`, so read transactions may be used by Swift tasks that hop threads,
///   and several read transactions may be open on one thread.
/// - Every transaction holds a shared lock; `growMap(minimum:)` takes it exclusively, so the map is
///   never resized while a transaction of this process is active.
/// - With the default flags a write transaction's commit is durable when it returns.
///
/// Rules for the caller:
/// - Open one `Environment` per data directory per process, and open all named databases at start-up.
/// - A transaction is used only inside the closure that received it, on that thread, and never across
///   an `await`. Bytes handed to a closure are valid only inside it: copy them out.
public final class Environment: @unchecked Sendable {
    // @unchecked: `MDB_env` is safe to share between threads for the calls made here (LMDB's
    // documented rules); the only mutable Swift state is `mapRanges`, behind its own mutex.
    let env: OpaquePointer
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>
    /// Where the map is (start address, length), found once in /proc/self/maps and forgotten when
    /// the map grows (it may move).
    private let mapRanges = Mutex<[(start: UInt, length: Int)]?>(nil)
    /// The directory that holds `data.mdb` and `lock.mdb`.
    public let path: String
    /// Whether the environment was opened read-only.
    public let isReadOnly: Bool

    /// Options for opening an environment.
    public struct Options: Sendable {
        /// The initial map size in bytes (rounded by LMDB to pages). An existing larger map is kept.
        public var mapSize: Int = 1 << 30
        /// The number of named databases that may be opened.
        public var maxDatabases: UInt32 = 16
        /// The number of reader slots, shared by all processes that open the environment.
        public var maxReaders: UInt32 = 256
        /// Open read-only: no write transactions; other processes may write meanwhile.
        public var readOnly = false
        /// File mode for newly created files.
        public var fileMode: UInt32 = 0o600
        public init() {}
    }

    /// Opens (and creates when missing and not read-only) the environment in directory `path`.
    /// - Throws: `LMDBError` (for example `ENOENT` for a missing directory, `MDB_INVALID` for a
    ///   file that is not LMDB's, `EACCES`).
    public init(path: String, options: Options = Options()) throws(LMDBError) {
        var envp: OpaquePointer?
        try check(mdb_env_create(&envp), "mdb_env_create")
        guard let env = envp else { throw LMDBError(code: ENOMEM, operation: "mdb_env_create") }
        do {
            try check(mdb_env_set_maxdbs(env, options.maxDatabases), "mdb_env_set_maxdbs")
            try check(mdb_env_set_maxreaders(env, options.maxReaders), "mdb_env_set_maxreaders")
            if !options.readOnly {
                try check(mdb_env_set_mapsize(env, options.mapSize), "mdb_env_set_mapsize")
            }
            var flags = UInt32(MDB_NOTLS)
            if options.readOnly { flags |= UInt32(MDB_RDONLY) }
            try check(mdb_env_open(env, path, flags, mode_t(options.fileMode)), "mdb_env_open(\(path))")
            if !options.readOnly {
                // An existing environment may be larger than the requested size: keep the larger.
                var info = MDB_envinfo()
                mdb_env_info(env, &info)
                if info.me_mapsize < options.mapSize {
                    try check(mdb_env_set_mapsize(env, options.mapSize), "mdb_env_set_mapsize")
                }
            }
        } catch {
            mdb_env_close(env)
            throw error
        }
        self.env = env
        self.path = path
        self.isReadOnly = options.readOnly
        self.lock = .allocate(capacity: 1)
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        mdb_env_close(env)
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    /// Opens or creates the named database. Call once per name at start-up.
    /// - Throws: `LMDBError`; `isNotFound` when it does not exist and `create` is false.
    public func openDatabase(_ name: String, create: Bool = true) throws(LMDBError) -> Database {
        var dbi: MDB_dbi = 0
        do {
            try withTransaction(readOnly: isReadOnly) { txn in
                let flags = (create && !isReadOnly) ? UInt32(MDB_CREATE) : 0
                try check(mdb_dbi_open(txn, name, flags, &dbi), "mdb_dbi_open(\(name))")
                return true  // commit, so the handle is visible to later transactions
            }
        } catch let error as LMDBError {
            throw error
        } catch {
            throw LMDBError(code: EINVAL, operation: "mdb_dbi_open(\(name)): \(error)")
        }
        return Database(dbi: dbi)
    }

    /// The number of entries in the unnamed database: the names of the named databases, or another
    /// program's own keys. 0 for a new, empty environment.
    public func mainDatabaseEntries() throws(LMDBError) -> Int {
        var entries = 0
        do {
            try withTransaction(readOnly: true) { txn in
                var dbi: MDB_dbi = 0
                try check(mdb_dbi_open(txn, nil, 0, &dbi), "mdb_dbi_open(main)")
                var stat = MDB_stat()
                try check(mdb_stat(txn, dbi, &stat), "mdb_stat(main)")
                entries = Int(stat.ms_entries)
                return false
            }
        } catch let error as LMDBError {
            throw error
        } catch {
            throw LMDBError(code: EINVAL, operation: "mdb_stat(main): \(error)")
        }
        return entries
    }

    /// Runs `body` in a read-only transaction, which sees one consistent snapshot.
    /// - Throws: `LMDBError` from LMDB, or what `body` throws.
    public func read<T>(_ body: (ReadTransaction) throws -> T) throws -> T {
        var result: T?
        try withTransaction(readOnly: true) { txn in
            result = try body(ReadTransaction(txn: txn))
            return false
        }
        return result!
    }

    /// Runs `body` in the write transaction and commits when it returns; aborts when it throws.
    ///
    /// When the commit returns, the transaction is durable (default flags). Only one write
    /// transaction exists at a time across all processes: this call blocks until it can begin.
    /// - Throws: `LMDBError` (`isMapFull`: grow the map with `growMap` and redo; `isNoSpace`),
    ///   or what `body` throws. Nothing is written when it throws.
    public func write<T>(_ body: (WriteTransaction) throws -> T) throws -> T {
        precondition(!isReadOnly, "write transaction on a read-only environment")
        var result: T?
        try withTransaction(readOnly: false) { txn in
            result = try body(WriteTransaction(txn: txn))
            return true
        }
        return result!
    }

    private func withTransaction(readOnly: Bool, _ body: (OpaquePointer) throws -> Bool) throws {
        while true {
            pthread_rwlock_rdlock(lock)
            var txnp: OpaquePointer?
            let rc = mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txnp)
            if rc == MDB_MAP_RESIZED {
                // Another process grew the map: adopt its size with no transaction active, retry.
                pthread_rwlock_unlock(lock)
                pthread_rwlock_wrlock(lock)
                mdb_env_set_mapsize(env, 0)
                pthread_rwlock_unlock(lock)
                continue
            }
            defer { pthread_rwlock_unlock(lock) }
            if rc != 0 { throw LMDBError(code: rc, operation: "mdb_txn_begin") }
            let txn = txnp!
            let commit: Bool
            do {
                commit = try body(txn)
            } catch {
                mdb_txn_abort(txn)
                throw error
            }
            if commit {
                // A failed commit frees the transaction: never abort it afterwards.
                let crc = mdb_txn_commit(txn)
                if crc != 0 { throw LMDBError(code: crc, operation: "mdb_txn_commit") }
            } else {
                mdb_txn_abort(txn)
            }
            return
        }
    }

    /// The map size and how much of it is used.
    public struct Info: Sendable {
        public var mapSize: Int
        public var usedBytes: Int
        public var pageSize: Int
        public var maxReaders: Int
        public var readers: Int
    }

    /// The current map size, the bytes in use and the reader count.
    public func info() -> Info {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        mdb_env_info(env, &info)
        mdb_env_stat(env, &stat)
        return Info(
            mapSize: info.me_mapsize,
            usedBytes: (info.me_last_pgno + 1) * Int(stat.ms_psize),
            pageSize: Int(stat.ms_psize),
            maxReaders: Int(info.me_maxreaders),
            readers: Int(info.me_numreaders))
    }

    /// Grows the map to at least `minimum` bytes. Waits until no transaction of this process is
    /// active. Does nothing when the map is already that large.
    /// - Throws: `LMDBError` from `mdb_env_set_mapsize`.
    public func growMap(minimum: Int) throws(LMDBError) {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        if info.me_mapsize >= minimum { return }
        mapRanges.withLock { $0 = nil }  // the map may move
        try check(mdb_env_set_mapsize(env, minimum), "mdb_env_set_mapsize(\(minimum))")
    }

    /// Drops this process's mappings of the map's pages (`madvise(MADV_DONTNEED)`). The pages stay
    /// in the page cache and the file is unchanged: the next access maps them again (a minor fault).
    /// Safe while transactions run, because the map is read-only and shared (no `MDB_WRITEMAP`): it
    /// only keeps pages the process once touched from counting in its resident set for ever.
    public func releaseMappedPages() {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        mapRanges.withLock { ranges in
            if ranges == nil { ranges = findMapRanges() }
            for r in ranges ?? [] {
                guard let address = UnsafeMutableRawPointer(bitPattern: r.start) else { continue }
                _ = madvise(address, r.length, MADV_DONTNEED)
            }
        }
    }

    /// The bytes of files mapped in this process's resident set (`RssFile` and shared memory, from
    /// /proc/self/statm): the pages of the map it touched, and the program's own code.
    public static func residentFileBytes() -> Int {
        guard let f = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(f) }
        var size = 0, resident = 0, shared = 0
        guard fscanf_statm(f, &size, &resident, &shared) else { return 0 }
        return shared * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// LMDB does not tell where it mapped the file (`me_mapaddr` is set only with
    /// MDB_FIXEDMAP), so find the mappings of data.mdb's inode in /proc/self/maps.
    private func findMapRanges() -> [(start: UInt, length: Int)] {
        var fd: Int32 = -1
        var st = stat()
        guard mdb_env_get_fd(env, &fd) == 0, fstat(fd, &st) == 0,
              let maps = fopen("/proc/self/maps", "r") else { return [] }
        defer { fclose(maps) }
        var found: [(start: UInt, length: Int)] = []
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), maps) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let fields = text.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, UInt64(fields[4]) == UInt64(st.st_ino) else { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16),
                  end > start else { continue }
            found.append((start, Int(end - start)))
        }
        return found
    }

    /// Clears reader slots left by processes that died. Returns how many were cleared.
    @discardableResult
    public func clearStaleReaders() throws(LMDBError) -> Int {
        var dead: Int32 = 0
        try check(mdb_reader_check(env, &dead), "mdb_reader_check")
        return Int(dead)
    }

    /// Writes a consistent copy of the environment into the existing empty directory `path`,
    /// while writers go on. With `compact`, free pages are omitted and the copy is renumbered.
    /// - Throws: `LMDBError` (for example `EEXIST` when the directory already holds a data file).
    public func copy(to path: String, compact: Bool = true) throws(LMDBError) {
        try check(mdb_env_copy2(env, path, compact ? UInt32(MDB_CP_COMPACT) : 0), "mdb_env_copy2(\(path))")
    }
}

/// Reads the first three numbers of /proc/self/statm.
private func fscanf_statm(_ f: UnsafeMutablePointer<FILE>, _ size: inout Int, _ resident: inout Int, _ shared: inout Int) -> Bool {
    var line = [CChar](repeating: 0, count: 256)
    guard fgets(&line, Int32(line.count), f) != nil else { return false }
    let fields = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: " ")
    guard fields.count >= 3, let a = Int(fields[0]), let b = Int(fields[1]), let c = Int(fields[2]) else { return false }
    (size, resident, shared) = (a, b, c)
    return true
}
