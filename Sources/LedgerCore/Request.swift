/// A request of the socket protocol (CONTRACT §2), decoded and validated.
public enum Request: Sendable {
    case append([Event])
    case status
    case read(from: UInt64, limit: Int)
    case caseState(String)
    case report(asOf: Timestamp?)
    case subscribe(from: UInt64?)

    /// The largest `limit` of a `read`, and its default.
    public static let maxReadLimit = 10_000
    public static let defaultReadLimit = 1_000

    /// Decodes one request line (without its newline). Events of an append are validated here,
    /// off the writer's thread.
    /// - Throws: `LedgerError` with the contract's code; for an append the index of the bad event.
    public static func decode(_ line: UnsafeRawBufferPointer) throws(LedgerError) -> Request {
        if let events = AppendFastPath.decode(line) { return .append(events) }
        return try decodeGeneric(line)
    }

    /// `decode` without the fast path of `AppendFastPath`: the reference it is tested against,
    /// and what names every error.
    @_spi(Testing) public static func decodeGeneric(_ line: UnsafeRawBufferPointer) throws(LedgerError) -> Request {
        let value: JSONValue
        do { value = try JSONParser.parse(line) } catch {
            throw LedgerError(.malformed, "the request is not valid JSON: \(error)")
        }
        guard case .object(let object) = value else {
            throw LedgerError(.malformed, "a request must be a JSON object such as {\"op\":\"status\"}, got \(value.typeName)")
        }
        guard let opValue = object["op"] else {
            throw LedgerError(.malformed, "the request has no `op`; use one of append, status, read, case, report, subscribe")
        }
        guard case .string(let op) = opValue else {
            throw LedgerError(.malformed, "`op` must be a string, got \(opValue.typeName)")
        }
        // The operations are ASCII, for which `==` compares bytes; any other `op` is unknown.
        switch op.isASCII ? op : "" {
        case "append":
            try allow(object, ["op", "events"], op: op)
            guard let eventsValue = object["events"] else {
                throw LedgerError(.malformed, "an append needs `events`, a list of 1 to \(Event.maxBatch) events")
            }
            guard case .array(let items) = eventsValue else {
                throw LedgerError(.malformed, "`events` must be an array, got \(eventsValue.typeName)")
            }
            guard !items.isEmpty else {
                throw LedgerError(.invalidEvent, "an append needs 1 to \(Event.maxBatch) events, got none")
            }
            guard items.count <= Event.maxBatch else {
                throw LedgerError(.tooLarge, "an append takes at most \(Event.maxBatch) events, got \(items.count); split it into several requests")
            }
            var events: [Event] = []
            events.reserveCapacity(items.count)
            for (index, item) in items.enumerated() {
                do { events.append(try Event.validate(item)) } catch { throw error.at(index: index) }
            }
            return .append(events)
        case "status":
            try allow(object, ["op"], op: op)
            return .status
        case "read":
            try allow(object, ["op", "from", "limit"], op: op)
            let from = try nonNegative(object, "from") ?? 1
            let limit = try nonNegative(object, "limit") ?? UInt64(defaultReadLimit)
            guard limit <= UInt64(maxReadLimit) else {
                throw LedgerError(.tooLarge, "`limit` is at most \(maxReadLimit), got \(limit); read in several requests")
            }
            return .read(from: max(from, 1), limit: Int(limit))
        case "case":
            try allow(object, ["op", "case"], op: op)
            guard let c = object["case"] else { throw LedgerError(.malformed, "a case request needs `case`, the case id") }
            guard case .string(let caseID) = c else { throw LedgerError(.malformed, "`case` must be a string, got \(c.typeName)") }
            return .caseState(caseID)
        case "report":
            try allow(object, ["op", "as_of"], op: op)
            switch object["as_of"] {
            case nil, .null?: return .report(asOf: nil)
            case .string(let text)?:
                guard let t = Timestamp(rfc3339: text) else {
                    throw LedgerError(.malformed, "`as_of` is not an RFC 3339 time such as 2023-12-15T00:00:00Z")
                }
                return .report(asOf: t)
            case let other?:
                throw LedgerError(.malformed, "`as_of` must be a string, got \(other.typeName)")
            }
        case "subscribe":
            try allow(object, ["op", "from"], op: op)
            return .subscribe(from: try nonNegative(object, "from"))
        default:
            throw LedgerError(.unknownOp, "`\(op.prefix(40))` is not an operation; use one of append, status, read, case, report, subscribe")
        }
    }

    private static func allow(_ object: JSONObject, _ keys: [String], op: String) throws(LedgerError) {
        for key in object.keys where !keys.contains(where: { $0.hasSameBytes(as: key) }) {
            throw LedgerError(.malformed, "unknown field `\(key.prefix(40))` in a \(op) request; allowed: \(keys.joined(separator: ", "))")
        }
    }

    private static func nonNegative(_ object: JSONObject, _ key: String) throws(LedgerError) -> UInt64? {
        guard let v = object[key] else { return nil }
        guard case .int(let n) = v, n >= 0 else {
            let got: String
            switch v {
            case .int(let n): got = "\(n)"
            case .number(let text): got = text
            default: got = v.typeName
            }
            throw LedgerError(.malformed, "`\(key)` must be an integer of 0 or more, got \(got)")
        }
        return UInt64(n)
    }
}
