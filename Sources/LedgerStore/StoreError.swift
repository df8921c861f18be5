import LedgerCore
public import LMDBKit

/// A problem with the data directory itself (as opposed to a rejected request, `LedgerError`).
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public let message: String
    /// The LMDB error behind it, if any.
    public let underlying: LMDBError?

    public init(_ message: String, underlying: LMDBError? = nil) {
        self.message = message
        self.underlying = underlying
    }

    /// The stored event at `position` cannot be decoded.
    static func unreadable(_ position: UInt64) -> StoreError {
        StoreError("the event at position \(position) cannot be read; run `ledgerctl verify`")
    }

    /// A replay met an event its case does not allow: the log was altered.
    static func brokenRule(_ position: UInt64, _ error: LedgerError) -> StoreError {
        StoreError("the log breaks the case rules at position \(position): \(error.message); run `ledgerctl verify`")
    }

    public var description: String {
        underlying.map { "\(message) (\($0))" } ?? message
    }
}
