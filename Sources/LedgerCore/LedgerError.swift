/// The error codes of the socket protocol (CONTRACT §2).
public enum ErrorCode: String, Sendable, CaseIterable {
    case malformed
    case unknownOp = "unknown_op"
    case unknownType = "unknown_type"
    case invalidEvent = "invalid_event"
    case invalidTransition = "invalid_transition"
    case versionConflict = "version_conflict"
    case idConflict = "id_conflict"
    case tooLarge = "too_large"
    case forbidden
    case unavailable
}

/// A rejected request: the contract's code, a message a person can act on, and for an append the
/// index of the offending event in the request.
public struct LedgerError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    public var index: Int?

    public init(_ code: ErrorCode, _ message: String, index: Int? = nil) {
        self.code = code
        self.message = message
        self.index = index
    }

    /// The same error attributed to event `index` of an append request.
    public func at(index: Int) -> LedgerError {
        var e = self
        e.index = index
        return e
    }

    public var description: String {
        index.map { "\(code.rawValue) (event \($0)): \(message)" } ?? "\(code.rawValue): \(message)"
    }
}
