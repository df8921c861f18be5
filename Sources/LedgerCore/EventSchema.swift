/// The `data` fields of each event type (CONTRACT §3): names, JSON types, ranges and code lists.
///
/// A field of the wrong JSON type is `malformed`; a missing, unknown or out-of-range one is
/// `invalid_event`. No field may hold free text: strings are codes, labels of at most 32 Unicode
/// scalars without control characters, or pseudonyms of printable ASCII.
public enum EventSchema {
    public enum Kind: Sendable {
        /// One of a code list.
        case code([String])
        /// An ISO 3166-1 alpha-3 code: three capital letters.
        case alpha3
        /// An integer in a range.
        case integer(ClosedRange<Int64>)
        /// 1 to `max` Unicode scalars (code points), none of them a control character.
        case label(max: Int)
        /// 1 to 128 printable ASCII characters, made outside the ledger (for example a keyed hash).
        case pseudonym
        /// An RFC 3339 time.
        case time
        /// A list of distinct codes.
        case codeList([String])
    }

    public struct Field: Sendable {
        public let name: String
        public let kind: Kind
        public let required: Bool
    }

    static func req(_ name: String, _ kind: Kind) -> Field { Field(name: name, kind: kind, required: true) }
    static func opt(_ name: String, _ kind: Kind) -> Field { Field(name: name, kind: kind, required: false) }

    /// The fields of `type`'s `data`.
    public static func fields(of type: EventType) -> [Field] {
        switch type {
        case .appointmentRequested:
            [req("office_country", .code(Codes.officeCountries)), req("nationality", .alpha3),
             req("household_size", .integer(1...20)), opt("applicant", .pseudonym), opt("channel", .code(Codes.channels))]
        case .eligibilityScreened:
            [req("result", .code(Codes.screeningResults)), opt("reasons", .codeList(Codes.screeningReasons))]
        case .appointmentScheduled:
            [req("office", .label(max: 32)), req("scheduled_for", .time)]
        case .appointmentMissed:
            []
        case .interviewed:
            [req("interviewer", .code(Codes.interviewers))]
        case .referred:
            [req("referral", .label(max: 32)), req("pathway", .code(Codes.pathways)), req("persons", .integer(1...20))]
        case .decisionRecorded:
            [req("referral", .label(max: 32)), req("decision", .code(Codes.decisions))]
        case .visaIssued:
            [req("referral", .label(max: 32)), req("document", .code(Codes.documents))]
        case .arrived:
            [req("referral", .label(max: 32)), req("country", .alpha3)]
        case .caseWithdrawn:
            [req("reason", .code(Codes.withdrawalReasons))]
        case .caseClosed:
            [req("reason", .code(Codes.closureReasons))]
        }
    }

    /// Checks `data` against the fields of `type`.
    /// - Throws: `LedgerError` (`malformed` or `invalid_event`) naming the field and what is allowed.
    public static func validate(_ data: JSONObject, for type: EventType) throws(LedgerError) {
        let spec = fields(of: type)
        for (key, _) in data.members where !spec.contains(where: { $0.name.hasSameBytes(as: key) }) {
            let allowed = spec.isEmpty ? "it takes no fields" : "allowed: " + spec.map(\.name).joined(separator: ", ")
            throw LedgerError(.invalidEvent, "unknown field `data.\(key)` for \(type.rawValue); \(allowed)")
        }
        for field in spec {
            guard let value = data[field.name] else {
                if field.required {
                    throw LedgerError(.invalidEvent, "\(type.rawValue) needs `data.\(field.name)`")
                }
                continue
            }
            try check(value, field: field, type: type)
        }
    }

    static func check(_ value: JSONValue, field: Field, type: EventType) throws(LedgerError) {
        let name = "data.\(field.name)"
        switch field.kind {
        case .integer(let range):
            guard case .int(let n) = value else { throw Event.wrongType(name, "an integer", value) }
            guard range.contains(n) else {
                throw LedgerError(.invalidEvent, "`\(name)` must be from \(range.lowerBound) to \(range.upperBound), got \(n)")
            }
        case .codeList(let codes):
            guard case .array(let items) = value else { throw Event.wrongType(name, "an array of codes", value) }
            var seen: [String] = []
            for item in items {
                guard case .string(let s) = item else { throw Event.wrongType(name + "[]", "a string", item) }
                guard isCode(s, codes) else {
                    throw LedgerError(.invalidEvent, "`\(name)` holds \"\(s.prefix(40))\"; allowed: \(codes.joined(separator: ", "))")
                }
                guard !isCode(s, seen) else { throw LedgerError(.invalidEvent, "`\(name)` lists \(s) twice") }
                seen.append(s)
            }
        case .code, .alpha3, .label, .pseudonym, .time:
            guard case .string(let s) = value else { throw Event.wrongType(name, "a string", value) }
            try checkString(s, name: name, kind: field.kind)
        }
    }

    /// A `.label(max:)`: 1 to `max` Unicode scalars (code points), none of them a control character.
    ///
    /// Scalars, not `String.count`'s grapheme clusters: how scalars group into clusters depends on
    /// the runtime's Unicode tables, and one cluster may hold any number of combining marks, so a
    /// length in clusters is neither stable nor a bound on the bytes (at most 4 per scalar here).
    static func isLabel(_ s: String, max: Int) -> Bool {
        var n = 0
        for scalar in s.unicodeScalars {
            n += 1
            guard n <= max, scalar.properties.generalCategory != .control else { return false }
        }
        return n >= 1
    }

    /// Whether `s` has the bytes of one of `codes` (`contains` would match look-alikes such as
    /// U+212A KELVIN SIGN for "K").
    static func isCode(_ s: String, _ codes: [String]) -> Bool {
        codes.contains { $0.hasSameBytes(as: s) }
    }

    static func checkString(_ s: String, name: String, kind: Kind) throws(LedgerError) {
        switch kind {
        case .code(let codes):
            guard isCode(s, codes) else {
                throw LedgerError(.invalidEvent, "`\(name)` is \"\(s.prefix(40))\"; allowed: \(codes.joined(separator: ", "))")
            }
        case .alpha3:
            let u = Array(s.utf8)
            guard u.count == 3, u.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }) else {
                throw LedgerError(.invalidEvent, "`\(name)` must be an ISO 3166-1 alpha-3 code such as VEN, got \"\(s.prefix(40))\"")
            }
        case .label(let max):
            guard isLabel(s, max: max) else {
                throw LedgerError(.invalidEvent, "`\(name)` must be 1 to \(max) Unicode scalars (code points), none of them a control character")
            }
        case .pseudonym:
            guard Event.isPrintableASCII(s, max: 128) else {
                throw LedgerError(.invalidEvent, "`\(name)` must be a pseudonym of 1 to 128 printable ASCII characters (a keyed hash, never a raw identifier)")
            }
        case .time:
            guard Timestamp(rfc3339: s) != nil else {
                throw LedgerError(.invalidEvent, "`\(name)` is not an RFC 3339 time such as 2023-07-10T09:00:00Z")
            }
        case .integer, .codeList:
            break
        }
    }
}
