/// An instant as the case machine compares and subtracts it: seconds since 1970-01-01T00:00:00Z
/// and nanoseconds. `Timestamp` keeps the fraction as written; this is its value.
public struct Instant: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var seconds: Int64
    public var nanos: Int32

    public init(seconds: Int64, nanos: Int32 = 0) {
        self.seconds = seconds
        self.nanos = nanos
    }

    public static func < (a: Instant, b: Instant) -> Bool {
        a.seconds != b.seconds ? a.seconds < b.seconds : a.nanos < b.nanos
    }

    /// Whole seconds from `self` to `later` (the fraction's remainder dropped).
    public func wholeSeconds(to later: Instant) -> Int64 {
        later.seconds - seconds - (later.nanos < nanos ? 1 : 0)
    }

    /// Days since 1970-01-01 of the UTC date.
    public var dayNumber: Int { Int(seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400) }

    /// As a timestamp (the fraction without trailing zeros).
    public var timestamp: Timestamp {
        guard nanos != 0 else { return Timestamp(seconds: seconds) }
        var digits = String(nanos)
        digits = String(repeating: "0", count: 9 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return Timestamp(seconds: seconds, fraction: digits)
    }

    /// RFC 3339 in UTC, for messages.
    public var description: String { timestamp.description }
}

extension Timestamp {
    /// The instant this timestamp names.
    public var instant: Instant { Instant(seconds: seconds, nanos: Int32(fractionNanos)) }
}

/// An ISO 3166-1 alpha-3 code (three capital letters) packed into an integer whose order is the
/// codes' alphabetical order.
public enum Alpha3 {
    /// The packed code, or nil when `s` is not three capital letters.
    public static func pack(_ s: String) -> UInt32? {
        var v: UInt32 = 0
        var n = 0
        for b in s.utf8 {
            guard b >= 0x41 && b <= 0x5A, n < 3 else { return nil }
            v = v << 8 | UInt32(b)
            n += 1
        }
        return n == 3 ? v : nil
    }

    public static func unpack(_ v: UInt32) -> String {
        String(decoding: [UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)], as: UTF8.self)
    }
}

/// The facts of one event that the case machine reads, with codes as small integers: what replay
/// needs, stored beside each event so that a replay never parses JSON.
///
/// Built from a validated `Event` at ingestion (`Event.facts`) and read back from the log by
/// `EventFacts.decode`; `ledgerctl verify` checks that the stored facts are those of the stored JSON.
///
/// Two facts are equal when every field is, strings by their UTF-8 bytes.
public struct EventFacts: Sendable, Equatable {
    public var type: EventType
    /// The event's `id`, for the ids index a replay rebuilds.
    public var id: String = ""
    public var caseID: String
    public var at: Instant
    /// `expected_version`, or -1 when absent.
    public var expectedVersion: Int64
    /// AppointmentRequested: household size, office (index into `Codes.officeCountries`),
    /// nationality (`Alpha3`).
    public var householdSize: UInt8 = 0
    public var office: UInt8 = 0
    public var nationality: UInt32 = 0
    /// EligibilityScreened: 1 when eligible. DecisionRecorded: index into `Codes.decisions`.
    public var code: UInt8 = 0
    /// Referred, DecisionRecorded, VisaIssued, Arrived: the referral's label.
    public var referral: String = ""
    /// Referred: index into `Codes.pathways`, and persons.
    public var pathway: UInt8 = 0
    public var persons: UInt8 = 0
    /// The position of the case's previous event (0 for its first): set when the event is stored,
    /// so a case's events can be found from its last one.
    public var previous: UInt64 = 0

    public init(type: EventType, caseID: String, at: Instant, expectedVersion: Int64 = -1) {
        self.type = type
        self.caseID = caseID
        self.at = at
        self.expectedVersion = expectedVersion
    }

    /// The facts of an envelope whose `data` has been validated for its type
    /// (`EventSchema.validate`), so every code is in its list.
    init(type: EventType, id: String, caseID: String, at: Timestamp, expectedVersion: Int64?, data: JSONObject) {
        self.init(type: type, caseID: caseID, at: at.instant, expectedVersion: expectedVersion ?? -1)
        self.id = id
        func index(_ field: String, _ list: [String]) -> UInt8 {
            let value = data.string(field) ?? ""
            return UInt8(list.firstIndex { $0.hasSameBytes(as: value) } ?? 0)
        }
        switch type {
        case .appointmentRequested:
            householdSize = UInt8(clamping: data.int("household_size") ?? 1)
            office = index("office_country", Codes.officeCountries)
            nationality = Alpha3.pack(data.string("nationality") ?? "") ?? 0
        case .eligibilityScreened:
            code = (data.string("result") ?? "").hasSameBytes(as: "eligible") ? 1 : 0
        case .referred:
            referral = data.string("referral") ?? ""
            pathway = index("pathway", Codes.pathways)
            persons = UInt8(clamping: data.int("persons") ?? 1)
        case .decisionRecorded:
            referral = data.string("referral") ?? ""
            code = index("decision", Codes.decisions)
        case .visaIssued, .arrived:
            referral = data.string("referral") ?? ""
        case .appointmentScheduled, .appointmentMissed, .interviewed, .caseWithdrawn, .caseClosed:
            break
        }
    }

    /// Every field equal, the strings by their bytes (the synthesised `==` would compare them by
    /// canonical equivalence). Keep in step with the stored form: every field of it is compared.
    public static func == (a: EventFacts, b: EventFacts) -> Bool {
        a.type == b.type && a.at == b.at && a.expectedVersion == b.expectedVersion
            && a.householdSize == b.householdSize && a.office == b.office && a.nationality == b.nationality
            && a.code == b.code && a.pathway == b.pathway && a.persons == b.persons && a.previous == b.previous
            && a.id.hasSameBytes(as: b.id) && a.caseID.hasSameBytes(as: b.caseID) && a.referral.hasSameBytes(as: b.referral)
    }

    // MARK: Binary form

    static let encodingVersion: UInt8 = 2

    /// version, type, seconds (8), nanos (4), expected version (8), household, office,
    /// nationality (4), code, pathway, persons, previous (8), then the case id, the referral and
    /// the id, each with a one-byte length.
    /// - Parameter previous: written instead of `self.previous` when given (the position of the
    ///   case's previous event is known only when the event is sequenced).
    public func encode(into out: inout [UInt8], previous: UInt64? = nil) {
        // The fixed part is laid out in one buffer and appended at once.
        var fixed: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &fixed) { b in
            b[0] = EventFacts.encodingVersion
            b[1] = type.index
            b.storeBytes(of: UInt64(bitPattern: at.seconds).bigEndian, toByteOffset: 2, as: UInt64.self)
            b.storeBytes(of: UInt32(bitPattern: at.nanos).bigEndian, toByteOffset: 10, as: UInt32.self)
            b.storeBytes(of: UInt64(bitPattern: expectedVersion).bigEndian, toByteOffset: 14, as: UInt64.self)
            b[22] = householdSize
            b[23] = office
            b.storeBytes(of: nationality.bigEndian, toByteOffset: 24, as: UInt32.self)
            b[28] = code
            b[29] = pathway
            b[30] = persons
            b.storeBytes(of: (previous ?? self.previous).bigEndian, toByteOffset: 31, as: UInt64.self)
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[0..<EventFacts.fixedSize]))
        }
        func string(_ s: String) {
            out.append(UInt8(s.utf8.count))
            out.append(contentsOf: s.utf8)
        }
        string(caseID)
        string(referral)
        string(id)
    }

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(48 + caseID.utf8.count + referral.utf8.count + id.utf8.count)
        encode(into: &out)
        return out
    }

    static let fixedSize = 39

    /// Where the case id, the referral and the id are in `encode`'s form `b`; nil when `b` is not one.
    static func spans(_ b: UnsafeRawBufferPointer) -> (case: Range<Int>, referral: Range<Int>, id: Range<Int>)? {
        guard b.count >= fixedSize + 3, b[0] == encodingVersion, b[1] < EventType.ordered.count else { return nil }
        // The three strings, each after its length.
        func span(_ at: Int) -> Range<Int>? {
            guard at < b.count, at + 1 + Int(b[at]) <= b.count else { return nil }
            return (at + 1)..<(at + 1 + Int(b[at]))
        }
        guard let caseSpan = span(fixedSize), let referralSpan = span(caseSpan.upperBound),
              let idSpan = span(referralSpan.upperBound), idSpan.upperBound == b.count else { return nil }
        return (caseSpan, referralSpan, idSpan)
    }

    /// The id's bytes in `encode`'s form `b`, where they are; nil when `b` is not one.
    public static func idBytes(in b: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        spans(b).map { UnsafeRawBufferPointer(rebasing: b[$0.id]) }
    }

    /// The case id's bytes in `encode`'s form `b`, where they are; nil when `b` is not one.
    public static func caseBytes(in b: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        spans(b).map { UnsafeRawBufferPointer(rebasing: b[$0.case]) }
    }

    /// Reads `encode`'s form from the whole of `b`; nil when it is not one. Without `withID` the
    /// facts' `id` is left empty (what the case machine reads needs no id, and a long one costs an
    /// allocation).
    public static func decode(_ b: UnsafeRawBufferPointer, withID: Bool = true) -> EventFacts? {
        guard let (caseSpan, referralSpan, idSpan) = spans(b) else { return nil }
        func be(_ from: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for k in from..<(from + n) { v = v << 8 | UInt64(b[k]) }
            return v
        }
        func string(_ r: Range<Int>) -> String {
            r.isEmpty ? "" : String(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self)
        }
        var f = EventFacts(type: EventType.ordered[Int(b[1])], caseID: string(caseSpan),
                           at: Instant(seconds: Int64(bitPattern: be(2, 8)), nanos: Int32(bitPattern: UInt32(be(10, 4)))),
                           expectedVersion: Int64(bitPattern: be(14, 8)))
        f.householdSize = b[22]
        f.office = b[23]
        f.nationality = UInt32(be(24, 4))
        f.code = b[28]
        f.pathway = b[29]
        f.persons = b[30]
        f.previous = be(31, 8)
        f.referral = string(referralSpan)
        if withID { f.id = string(idSpan) }
        return f
    }

    public static func decode(_ bytes: [UInt8]) -> EventFacts? {
        bytes.withUnsafeBytes { decode($0) }
    }
}

@inline(__always)
func appendBigEndian(_ v: UInt64, _ n: Int, _ out: inout [UInt8]) {
    var s = (n - 1) * 8
    while s >= 0 {
        out.append(UInt8(truncatingIfNeeded: v >> UInt64(s)))
        s -= 8
    }
}

extension EventType {
    /// The types in declaration order, indexable by `index`.
    public static let ordered: [EventType] = allCases.map { $0 }

    /// The type's position in `allCases` (stable: it is stored).
    public var index: UInt8 {
        switch self {
        case .appointmentRequested: 0
        case .eligibilityScreened: 1
        case .appointmentScheduled: 2
        case .appointmentMissed: 3
        case .interviewed: 4
        case .referred: 5
        case .decisionRecorded: 6
        case .visaIssued: 7
        case .arrived: 8
        case .caseWithdrawn: 9
        case .caseClosed: 10
        }
    }
}
