/// An event envelope as accepted (CONTRACT §2), validated field by field.
///
/// `canonical` is the RFC 8785 form of the envelope with `at` normalised to UTC: the bytes that are
/// stored, hashed and compared for idempotency.
public struct Event: Sendable, Equatable {
    public let at: Timestamp
    public let canonical: [UInt8]
    /// What the case machine reads of it, without JSON; also holds the id, the type, the case and
    /// the expected version, so that an event carries each once (events are copied and queued by
    /// the thousand).
    public let facts: EventFacts

    public var id: String { facts.id }
    public var type: EventType { facts.type }
    public var caseID: String { facts.caseID }
    public var expectedVersion: Int64? { facts.expectedVersion < 0 ? nil : facts.expectedVersion }

    /// - Precondition: `facts` are those of the envelope whose canonical form is `canonical`.
    init(at: Timestamp, canonical: [UInt8], facts: EventFacts) {
        self.at = at
        self.canonical = canonical
        self.facts = facts
    }

    /// The envelope's `data`, parsed from `canonical` (not kept: the hot paths read `facts`).
    public var data: JSONObject {
        guard case .object(let envelope)? = try? JSONParser.parse(canonical), case .object(let d)? = envelope["data"] else {
            return JSONObject()
        }
        return d
    }

    /// The largest number of events in one append request.
    public static let maxBatch = 10_000

    public static func == (a: Event, b: Event) -> Bool { a.canonical == b.canonical }

    /// Validates an envelope and its `data` for the event's type (without the case's state).
    /// - Throws: `LedgerError` with `malformed` (wrong JSON type), `unknown_type` or `invalid_event`.
    public static func validate(_ value: JSONValue) throws(LedgerError) -> Event {
        guard case .object(let object) = value else {
            throw LedgerError(.malformed, "an event must be a JSON object, got \(value.typeName)")
        }
        var id: String?, typeName: String?, caseID: String?, atText: String?
        var expectedVersion: Int64?
        var data: JSONObject?
        for (key, v) in object.members {
            // The names are ASCII, for which `==` compares bytes; any other key is unknown.
            switch key.isASCII ? key : "" {
            case "id": id = try string(v, field: "id")
            case "type": typeName = try string(v, field: "type")
            case "case": caseID = try string(v, field: "case")
            case "at": atText = try string(v, field: "at")
            case "expected_version":
                guard case .int(let n) = v else { throw wrongType("expected_version", "an integer", v) }
                guard n >= 0 else {
                    throw LedgerError(.invalidEvent, "`expected_version` must be 0 or more (the number of events the case already has), got \(n)")
                }
                expectedVersion = n
            case "data":
                guard case .object(let d) = v else { throw wrongType("data", "an object", v) }
                data = d
            default:
                throw LedgerError(.invalidEvent, "unknown field `\(key)` in the event envelope; allowed: id, type, case, at, expected_version, data")
            }
        }
        guard let id else { throw missing("id") }
        guard isPrintableASCII(id, max: 128) else {
            throw LedgerError(.invalidEvent, "`id` must be 1 to 128 printable ASCII characters")
        }
        guard let typeName else { throw missing("type") }
        guard let type = EventType(name: typeName) else {
            throw LedgerError(.unknownType, "`\(typeName)` is not an event type; expected one of \(EventType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let caseID else { throw missing("case") }
        guard isPrintableASCII(caseID, max: 64) else {
            throw LedgerError(.invalidEvent, "`case` must be 1 to 64 printable ASCII characters")
        }
        guard let atText else { throw missing("at") }
        guard let at = Timestamp(rfc3339: atText) else {
            throw LedgerError(.invalidEvent, "`at` is not an RFC 3339 time such as 2023-07-03T14:05:00Z: \"\(atText.prefix(40))\"")
        }
        guard let data else { throw missing("data") }
        try EventSchema.validate(data, for: type)
        let facts = EventFacts(type: type, id: id, caseID: caseID, at: at, expectedVersion: expectedVersion, data: data)

        var w = CanonicalJSON(capacity: 128 + id.utf8.count + caseID.utf8.count)
        w.raw("{")
        w.writeKey("at"); w.writeTime(at); w.raw(",")
        w.writeKey("case"); w.writeString(caseID); w.raw(",")
        w.writeKey("data"); w.write(.object(data)); w.raw(",")
        if let expectedVersion { w.writeKey("expected_version"); w.writeInt(expectedVersion); w.raw(",") }
        w.writeKey("id"); w.writeString(id); w.raw(",")
        w.writeKey("type"); w.writeString(type.rawValue)
        w.raw("}")
        return Event(at: at, canonical: w.bytes, facts: facts)
    }

    /// Validates a JSON text holding one envelope.
    public static func validate(json: [UInt8]) throws(LedgerError) -> Event {
        let value: JSONValue
        do { value = try JSONParser.parse(json) } catch {
            throw LedgerError(.malformed, "the event is not valid JSON: \(error)")
        }
        return try validate(value)
    }

    private static func string(_ v: JSONValue, field: String) throws(LedgerError) -> String {
        guard case .string(let s) = v else { throw wrongType(field, "a string", v) }
        return s
    }

    static func wrongType(_ field: String, _ expected: String, _ got: JSONValue) -> LedgerError {
        LedgerError(.malformed, "`\(field)` must be \(expected), got \(got.typeName)")
    }

    static func missing(_ field: String) -> LedgerError {
        LedgerError(.invalidEvent, "the required field `\(field)` is missing")
    }

    static func isPrintableASCII(_ s: String, max: Int) -> Bool {
        var n = 0
        for b in s.utf8 {
            guard b >= 0x20 && b <= 0x7E else { return false }
            n += 1
        }
        return n >= 1 && n <= max
    }
}

extension JSONObject {
    /// The string member `key`, if present and a string.
    public func string(_ key: String) -> String? {
        if case .string(let s)? = self[key] { return s }
        return nil
    }

    /// The integer member `key`, if present and an integer.
    public func int(_ key: String) -> Int64? {
        if case .int(let n)? = self[key] { return n }
        return nil
    }
}
