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

    public var description: String {
        underlying.map { "\(message) (\($0))" } ?? message
    }
}
