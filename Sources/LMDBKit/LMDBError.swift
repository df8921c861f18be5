internal import CLMDB
#if canImport(Glibc)
import Glibc
#endif

/// An error returned by LMDB, with the operation that failed.
///
/// This is the only place where LMDB's return codes are translated. Callers match on
/// `isMapFull`, `isNotFound`, `isKeyExist` and friends, never on raw numbers.
public struct LMDBError: Error, CustomStringConvertible, Sendable {
    /// LMDB's return code (an `MDB_*` code or an `errno` value such as `ENOSPC`).
    public let code: Int32
    /// The LMDB function or the operation that failed, for example `mdb_txn_commit`.
    public let operation: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// The map is full: abort the transaction, grow the map while no transaction is active, redo.
    public var isMapFull: Bool { code == MDB_MAP_FULL }
    /// The key was not found.
    public var isNotFound: Bool { code == MDB_NOTFOUND }
    /// The key exists (with `noOverwrite`), or an `append` key was out of order.
    public var isKeyExist: Bool { code == MDB_KEYEXIST }
    /// The disk is full or a quota was reached.
    public var isNoSpace: Bool { code == ENOSPC || code == EDQUOT }
    /// The data file is not an LMDB file or is of another version.
    public var isInvalidFile: Bool { code == MDB_INVALID || code == MDB_VERSION_MISMATCH || code == MDB_CORRUPTED }

    public var description: String {
        let text = String(cString: mdb_strerror(code))
        return "\(operation): \(text) (code \(code))"
    }
}

@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if rc != 0 { throw LMDBError(code: rc, operation: operation()) }
}
