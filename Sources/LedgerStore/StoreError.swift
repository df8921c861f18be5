public import LedgerCore
public import LMDBKit

/// A problem with the data directory or the storage under it, as opposed to a rejected request
/// (`LedgerError`). It carries a code to match on, a message a person can act on, and where it
/// happened: the data directory, the named database, the position.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The directory holds no ledger, or another program's LMDB environment.
        case notALedger = "not_a_ledger"
        /// The ledger is of a format this program does not read or write (see the message).
        case wrongFormat = "wrong_format"
        /// Another process holds the data directory.
        case locked
        /// What is stored contradicts itself: a value that does not decode, a log that breaks the
        /// case rules. `ledgerctl verify` names the first bad position.
        case corrupt
        /// The map is at its maximum or the disk is full: nothing was stored.
        case full
        /// An operating-system or LMDB failure (permissions, I/O).
        case io
        /// A write was attempted on a ledger opened read-only.
        case readOnly = "read_only"
    }

    public let code: Code
    public let message: String
    public var directory: String?
    public var database: String?
    public var position: UInt64?
    /// The LMDB error behind it, if any.
    public let underlying: LMDBError?

    public init(_ code: Code, _ message: String, directory: String? = nil, database: String? = nil,
                position: UInt64? = nil, underlying: LMDBError? = nil) {
        self.code = code
        self.message = message
        self.directory = directory
        self.database = database
        self.position = position
        self.underlying = underlying
    }

    /// The stored event at `position` cannot be decoded.
    static func unreadable(_ position: UInt64) -> StoreError {
        StoreError(.corrupt, "the event at position \(position) cannot be read; run `ledgerctl verify`",
                   database: "events", position: position)
    }

    /// A replay met an event its case does not allow: the log was altered.
    static func brokenRule(_ position: UInt64, _ error: LedgerError) -> StoreError {
        StoreError(.corrupt, "the log breaks the case rules at position \(position): \(error.message); run `ledgerctl verify`",
                   database: "events", position: position)
    }

    /// This error as the socket protocol answers it: `unavailable` (retry later) for a full map or
    /// disk and for failures of the storage, with the message.
    public var ledgerError: LedgerError {
        LedgerError(.unavailable, message + (code == .full ? "" : "; nothing was stored; retry later"))
    }

    public var description: String {
        var where_: [String] = []
        if let directory { where_.append("data directory \(directory)") }
        if let database { where_.append("database \(database)") }
        if let position { where_.append("position \(position)") }
        var text = message
        if !where_.isEmpty { text += " [" + where_.joined(separator: ", ") + "]" }
        if let underlying { text += " (\(underlying))" }
        return text
    }
}

extension StoreError {
    /// `error` as a `StoreError`: itself, or an LMDB error wrapped with `what` and the context.
    static func wrap(_ error: any Error, _ what: String, directory: String? = nil, database: String? = nil) -> StoreError {
        if let e = error as? StoreError { return e }
        if let e = error as? LMDBError {
            if e.isNoSpace {
                return StoreError(.full, "the disk is full: \(what) failed; nothing was stored; free space, then retry",
                                  directory: directory, database: database, underlying: e)
            }
            if e.isInvalidFile {
                return StoreError(.corrupt, "\(what) failed: the file is not an LMDB file this program can read or is damaged",
                                  directory: directory, database: database, underlying: e)
            }
            return StoreError(.io, "\(what) failed", directory: directory, database: database, underlying: e)
        }
        return StoreError(.io, "\(what) failed: \(error)", directory: directory, database: database)
    }
}
