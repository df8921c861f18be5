internal import CLMDB

/// Flags for `WriteTransaction.put`.
public struct PutFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Fail with `isKeyExist` when the key is present.
    public static let noOverwrite = PutFlags(rawValue: UInt32(MDB_NOOVERWRITE))
    /// The key sorts after every key in the database (fast path); an out-of-order key fails with
    /// `isKeyExist`.
    public static let append = PutFlags(rawValue: UInt32(MDB_APPEND))
}

/// Operations shared by read and write transactions.
///
/// Byte buffers handed to closures point into the map and are valid only inside the closure.
public protocol Transaction {
    var handle: OpaquePointer { get }
}

extension Transaction {
    /// Calls `body` with the value stored under `key`, or returns nil when there is none.
    public func withValue<T>(_ db: Database, key: UnsafeRawBufferPointer,
                             _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_get(handle, db.dbi, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_get")
        return try body(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    /// A copy of the value stored under `key`, or nil.
    public func get(_ db: Database, key: [UInt8]) throws -> [UInt8]? {
        try key.withUnsafeBytes { k in try withValue(db, key: k) { Array($0) } }
    }

    /// A copy of the value stored under the big-endian encoding of `key`, or nil.
    public func get(_ db: Database, key: UInt64) throws -> [UInt8]? {
        try withUnsafeBytes(of: key.bigEndian) { k in try withValue(db, key: k) { Array($0) } }
    }

    /// Visits entries in key order starting at the first key ≥ `from` (the first key when nil),
    /// until `body` returns false or the database ends.
    public func scan(_ db: Database, from: UnsafeRawBufferPointer?,
                     _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, db.dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()
        var rc: Int32
        if let from {
            k = MDB_val(mv_size: from.count, mv_data: UnsafeMutableRawPointer(mutating: from.baseAddress))
            rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
        } else {
            rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
        }
        while rc == 0 {
            let goOn = try body(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
                                UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
            if !goOn { return }
            rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get") }
    }

    /// Visits entries from the big-endian key `from` on; see `scan(_:from:_:)`.
    public func scan(_ db: Database, from: UInt64,
                     _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        try withUnsafeBytes(of: from.bigEndian) { k in try scan(db, from: k, body) }
    }

    /// Calls `body` with the last entry in key order, or returns nil for an empty database.
    public func withLast<T>(_ db: Database,
                            _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> T) throws -> T? {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, db.dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()
        let rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_cursor_get(MDB_LAST)")
        return try body(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
                        UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    /// The number of entries in the database.
    public func count(_ db: Database) throws -> Int {
        try shape(db).entries
    }

    /// The entries of `db` and the leaf pages that hold them (`mdb_stat`).
    public func shape(_ db: Database) throws -> (entries: Int, leafPages: Int) {
        var stat = MDB_stat()
        try check(mdb_stat(handle, db.dbi, &stat), "mdb_stat")
        return (Int(stat.ms_entries), Int(stat.ms_leaf_pages))
    }
}

/// A read-only snapshot. Valid only inside the `Environment.read` closure that received it.
public struct ReadTransaction: Transaction {
    public let handle: OpaquePointer
    init(txn: OpaquePointer) { handle = txn }
}

/// The write transaction. Valid only inside the `Environment.write` closure that received it,
/// on that thread.
public struct WriteTransaction: Transaction {
    public let handle: OpaquePointer
    init(txn: OpaquePointer) { handle = txn }

    /// Stores `value` under `key`.
    /// - Throws: `LMDBError` (`isKeyExist` with `.noOverwrite` or an out-of-order `.append`;
    ///   `isMapFull`: the whole transaction is then dead and must be redone after `growMap`).
    public func put(_ db: Database, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
                    flags: PutFlags = []) throws(LMDBError) {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        try check(mdb_put(handle, db.dbi, &k, &v, flags.rawValue), "mdb_put")
    }

    public func put(_ db: Database, key: [UInt8], value: [UInt8], flags: PutFlags = []) throws(LMDBError) {
        let rc: Int32 = key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in
                var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
                var vv = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
                return mdb_put(handle, db.dbi, &kv, &vv, flags.rawValue)
            }
        }
        try check(rc, "mdb_put")
    }

    /// Stores `value` under the big-endian encoding of `key`.
    public func put(_ db: Database, key: UInt64, value: [UInt8], flags: PutFlags = []) throws(LMDBError) {
        let rc: Int32 = withUnsafeBytes(of: key.bigEndian) { k in
            value.withUnsafeBytes { v in
                var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
                var vv = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
                return mdb_put(handle, db.dbi, &kv, &vv, flags.rawValue)
            }
        }
        try check(rc, "mdb_put")
    }

    /// Calls `body` with a cursor on `db` for a run of puts. Puts through one cursor in key order
    /// (or appends) cost a search within the page it is on, where `put` searches from the root
    /// each time: LMDB's fast path for bulk loads. The cursor is valid only inside `body`.
    public func withCursor<T>(_ db: Database, _ body: (WriteCursor) throws -> T) throws -> T {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, db.dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        return try body(WriteCursor(handle: cursor!))
    }

    /// Removes `key`. Returns false when it was not present.
    @discardableResult
    public func delete(_ db: Database, key: [UInt8]) throws(LMDBError) -> Bool {
        let rc: Int32 = key.withUnsafeBytes { k in
            var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            return mdb_del(handle, db.dbi, &kv, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "mdb_del")
        return true
    }

    /// Removes every entry of `db` (the database stays open).
    public func clear(_ db: Database) throws(LMDBError) {
        try check(mdb_drop(handle, db.dbi, 0), "mdb_drop")
    }

    /// Runs `body` in a nested transaction: its writes join this transaction when `body` returns,
    /// and are undone (with this transaction still usable) when it throws.
    /// - Throws: what `body` throws, or `LMDBError` from LMDB.
    public func nested<T>(_ body: (WriteTransaction) throws -> T) throws -> T {
        var childp: OpaquePointer?
        try check(mdb_txn_begin(mdb_txn_env(handle), handle, 0, &childp), "mdb_txn_begin(nested)")
        let child = WriteTransaction(txn: childp!)
        let result: T
        do {
            result = try body(child)
        } catch {
            mdb_txn_abort(child.handle)
            throw error
        }
        try check(mdb_txn_commit(child.handle), "mdb_txn_commit(nested)")
        return result
    }
}

/// A cursor of a write transaction, for runs of puts (`WriteTransaction.withCursor`).
public struct WriteCursor {
    let handle: OpaquePointer

    /// Stores `value` under `key`, as `WriteTransaction.put` does.
    public func put(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: PutFlags = []) throws(LMDBError) {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        try check(mdb_cursor_put(handle, &k, &v, flags.rawValue), "mdb_cursor_put")
    }
}
