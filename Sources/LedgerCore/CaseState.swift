/// The state of a case (CONTRACT §3).
public enum CaseStatus: UInt8, Sendable, CaseIterable {
    case requested, eligible, ineligible, scheduled, missed, interviewed, referred, withdrawn, closed

    public var name: String {
        switch self {
        case .requested: "requested"
        case .eligible: "eligible"
        case .ineligible: "ineligible"
        case .scheduled: "scheduled"
        case .missed: "missed"
        case .interviewed: "interviewed"
        case .referred: "referred"
        case .withdrawn: "withdrawn"
        case .closed: "closed"
        }
    }
}

/// The state of one referral of a case.
public enum ReferralStatus: UInt8, Sendable, CaseIterable {
    case referred, approved, denied, hold, visaIssued, arrived

    public var name: String {
        switch self {
        case .referred: "referred"
        case .approved: "approved"
        case .denied: "denied"
        case .hold: "hold"
        case .visaIssued: "visa_issued"
        case .arrived: "arrived"
        }
    }
}

/// A funnel stage of the pilot report (CONTRACT §4), in report order.
public enum Stage: Int, Sendable, CaseIterable {
    case requested, eligible, ineligible, scheduled, missed, interviewed, referred, approved, denied, visaIssued, arrived,
         withdrawn, closed

    public var name: String {
        switch self {
        case .requested: "requested"
        case .eligible: "eligible"
        case .ineligible: "ineligible"
        case .scheduled: "scheduled"
        case .missed: "missed"
        case .interviewed: "interviewed"
        case .referred: "referred"
        case .approved: "approved"
        case .denied: "denied"
        case .visaIssued: "visa_issued"
        case .arrived: "arrived"
        case .withdrawn: "withdrawn"
        case .closed: "closed"
        }
    }

    /// Stages reached by a referral: their persons are the referral's `persons`, not the household.
    public var isReferralStage: Bool {
        switch self {
        case .referred, .approved, .denied, .visaIssued, .arrived: true
        default: false
        }
    }

    /// The referral stages, in order: the PSTAGEs of `by_pathway`.
    public static let referralStages: [Stage] = [.referred, .approved, .denied, .visaIssued, .arrived]

    var bit: UInt16 { 1 << UInt16(rawValue) }
}

/// One referral of a case: a household (or part of it) referred to a lawful pathway.
public struct Referral: Sendable, Equatable {
    /// The label as written (`data.referral`): it names the referral by its UTF-8 bytes, so labels
    /// that only look alike (`"\u{E9}"` and `"e\u{301}"`) are different referrals.
    public var id: String
    /// Index into `Codes.pathways`.
    public var pathway: UInt8
    public var persons: UInt8
    public var status: ReferralStatus
    /// The referral stages this referral has reached (bit `Stage.rawValue`).
    public var stages: UInt16
    public var referredAt: Instant
    /// Whether its first `approved` or `denied` has been recorded (for `referral_to_decision`).
    public var decided: Bool

    public var pathwayName: String { CounterKey.pathwayName(UInt32(pathway)) }

    /// Every field equal, the label by its bytes.
    public static func == (a: Referral, b: Referral) -> Bool {
        a.id.hasSameBytes(as: b.id) && a.pathway == b.pathway && a.persons == b.persons && a.status == b.status
            && a.stages == b.stages && a.referredAt == b.referredAt && a.decided == b.decided
    }
}

/// Everything the ledger keeps about one case: its state for validation, and the facts the
/// projections need so that each figure counts a case or referral once. Codes are small integers
/// (as in `EventFacts`), so a state copies, compares and encodes without text.
public struct CaseState: Sendable, Equatable {
    public var status: CaseStatus
    /// The number of events the case has.
    public var version: UInt64
    /// `at` of the case's latest event; a new event may not be earlier.
    public var lastAt: Instant
    public var householdSize: UInt8
    /// Index into `Codes.officeCountries`.
    public var office: UInt8
    /// `Alpha3` code.
    public var nationality: UInt32
    public var requestedAt: Instant
    public var firstInterviewAt: Instant?
    /// Whether the case's first `Referred` has been seen (for `interview_to_referral`).
    public var referredOnce: Bool
    /// The funnel stages the case has reached (bit `Stage.rawValue`).
    public var stages: UInt16
    /// The (pathway, referral stage) pairs reached by any referral of the case: bit pathway×5+k.
    public var pathwayStages: UInt64
    public var referrals: [Referral]

    public var officeCountry: String { CounterKey.officeName(UInt32(office)) }

    /// The referral whose label has the bytes of `id`.
    public func referralIndex(_ id: String) -> Int? { referrals.firstIndex { $0.id.hasSameBytes(as: id) } }

    public func hasReached(_ stage: Stage) -> Bool { stages & stage.bit != 0 }
}

// MARK: Binary encoding (stored in the `cases` database)

extension CaseState {
    /// 3: integers as varints and instants as differences from `requestedAt` (about half the
    /// bytes of 2, so a page of `cases` holds about twice the records). 2 (fixed widths) is still
    /// read: a ledger holds both until each case is written again.
    static let encodingVersion: UInt8 = 3

    /// A compact binary form; `decode` reads it back exactly.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        encode(into: &w)
        return w.bytes
    }

    public func encode(into w: inout ByteWriter) {
        w.bytes.reserveCapacity(w.bytes.count + 40 + referrals.count * 24)
        w.u8(CaseState.encodingVersion)
        w.u8(status.rawValue)
        w.u8((firstInterviewAt == nil ? 0 : 1) | (referredOnce ? 2 : 0))
        w.varint(version)
        w.zigzag(requestedAt.seconds)
        w.varint(UInt64(UInt32(bitPattern: requestedAt.nanos)))
        w.instant(lastAt, after: requestedAt)
        if let t = firstInterviewAt { w.instant(t, after: requestedAt) }
        w.u8(householdSize)
        w.u8(office)
        w.varint(UInt64(nationality))
        w.varint(UInt64(stages))
        w.varint(pathwayStages)
        w.varint(UInt64(referrals.count))
        for r in referrals {
            w.string(r.id)
            w.u8(r.pathway)
            w.u8(r.persons)
            w.u8(r.status.rawValue | (r.decided ? 0x80 : 0))
            w.varint(UInt64(r.stages))
            w.instant(r.referredAt, after: requestedAt)
        }
    }

    /// Reads `encoded()`'s form; nil when the bytes are not one.
    public static func decode(_ bytes: [UInt8]) -> CaseState? {
        bytes.withUnsafeBytes { b in
            var r = ByteReader(b)
            guard let s = decode(&r), r.atEnd else { return nil }
            return s
        }
    }

    /// Reads one state from `r`, leaving it after the state.
    public static func decode(_ r: inout ByteReader) -> CaseState? {
        r.peek() == encodingVersion ? decode3(&r) : nil
    }

    private static func decode3(_ r: inout ByteReader) -> CaseState? {
        guard r.u8() == 3, let status = r.u8().flatMap(CaseStatus.init(rawValue:)), let flags = r.u8(), flags < 4,
              let version = r.varint(), let seconds = r.zigzag(), let nanos = r.varint32()
        else { return nil }
        let requestedAt = Instant(seconds: seconds, nanos: nanos)
        guard let lastAt = r.instant(after: requestedAt) else { return nil }
        var firstInterviewAt: Instant?
        if flags & 1 != 0 {
            guard let t = r.instant(after: requestedAt) else { return nil }
            firstInterviewAt = t
        }
        guard let household = r.u8(), let office = r.u8(), let nationality = r.varint().flatMap(UInt32.init(exactly:)),
              let stages = r.varint().flatMap(UInt16.init(exactly:)), let pathwayStages = r.varint(),
              let count = r.varint(), count <= UInt64(UInt16.max)
        else { return nil }
        var referrals: [Referral] = []
        referrals.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let id = r.string(), let pathway = r.u8(), let persons = r.u8(), let s = r.u8(),
                  let rs = ReferralStatus(rawValue: s & 0x7F), let rstages = r.varint().flatMap(UInt16.init(exactly:)),
                  let referredAt = r.instant(after: requestedAt)
            else { return nil }
            referrals.append(Referral(id: id, pathway: pathway, persons: persons, status: rs, stages: rstages,
                                      referredAt: referredAt, decided: s & 0x80 != 0))
        }
        return CaseState(status: status, version: version, lastAt: lastAt, householdSize: household,
                         office: office, nationality: nationality, requestedAt: requestedAt,
                         firstInterviewAt: firstInterviewAt, referredOnce: flags & 2 != 0, stages: stages,
                         pathwayStages: pathwayStages, referrals: referrals)
    }
}

/// Appends integers (big-endian, or LEB128 varints) and length-prefixed strings.
public struct ByteWriter {
    public var bytes: [UInt8]
    public init(bytes: [UInt8] = []) { self.bytes = bytes }
    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { appendBigEndian(UInt64(v), 2, &bytes) }
    public mutating func u32(_ v: UInt32) { appendBigEndian(UInt64(v), 4, &bytes) }
    public mutating func u64(_ v: UInt64) { appendBigEndian(v, 8, &bytes) }
    public mutating func string(_ s: String) {
        u8(UInt8(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }
    public mutating func instant(_ t: Instant) {
        u64(UInt64(bitPattern: t.seconds))
        u32(UInt32(bitPattern: t.nanos))
    }
    /// Seven bits a byte, low first; the high bit says another byte follows (1 to 10 bytes).
    public mutating func varint(_ v: UInt64) {
        if v < 0x80 {
            bytes.append(UInt8(v))
            return
        }
        // Laid out in a buffer on the stack and appended at once.
        var buffer: (UInt64, UInt64) = (0, 0)
        var v = v
        withUnsafeMutableBytes(of: &buffer) { b in
            var n = 0
            while v >= 0x80 {
                b[n] = UInt8(truncatingIfNeeded: v) | 0x80
                v >>= 7
                n += 1
            }
            b[n] = UInt8(v)
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[0...n]))
        }
    }
    /// A signed integer as a varint of its zigzag form (0, -1, 1, -2, … → 0, 1, 2, 3, …).
    public mutating func zigzag(_ v: Int64) { varint(UInt64(bitPattern: (v << 1) ^ (v >> 63))) }
    /// `t` as its seconds after `base` (zigzag; wrapping, so any pair round-trips) and its nanos.
    public mutating func instant(_ t: Instant, after base: Instant) {
        zigzag(t.seconds &- base.seconds)
        varint(UInt64(UInt32(bitPattern: t.nanos)))
    }
}

/// Reads what `ByteWriter` writes, from borrowed bytes.
public struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var i = 0
    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }
    public var atEnd: Bool { i == bytes.count }
    public var offset: Int { i }
    public mutating func u8() -> UInt8? {
        guard i < bytes.count else { return nil }
        defer { i += 1 }
        return bytes[i]
    }
    mutating func be(_ n: Int) -> UInt64? {
        guard i + n <= bytes.count else { return nil }
        var v: UInt64 = 0
        for k in i..<(i + n) { v = v << 8 | UInt64(bytes[k]) }
        i += n
        return v
    }
    public mutating func u16() -> UInt16? { be(2).map { UInt16($0) } }
    public mutating func u32() -> UInt32? { be(4).map { UInt32($0) } }
    public mutating func u64() -> UInt64? { be(8) }
    public mutating func string() -> String? {
        guard let n = u8(), i + Int(n) <= bytes.count else { return nil }
        defer { i += Int(n) }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[i..<(i + Int(n))]), as: UTF8.self)
    }
    public mutating func instant() -> Instant? {
        guard let s = u64(), let n = u32() else { return nil }
        return Instant(seconds: Int64(bitPattern: s), nanos: Int32(bitPattern: n))
    }
    /// The next `n` bytes, in place; nil when fewer are left.
    public mutating func bytes(_ n: Int) -> UnsafeRawBufferPointer? {
        guard n >= 0, i + n <= bytes.count else { return nil }
        defer { i += n }
        return UnsafeRawBufferPointer(rebasing: bytes[i..<(i + n)])
    }
    /// The next byte, not consumed.
    public func peek() -> UInt8? { i < bytes.count ? bytes[i] : nil }
    /// Reads `ByteWriter.varint`'s form; nil when it is cut short or does not fit 64 bits.
    public mutating func varint() -> UInt64? {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while i < bytes.count {
            let b = bytes[i]
            i += 1
            guard shift < 63 || (shift == 63 && b <= 1) else { return nil }
            v |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return v }
            shift += 7
        }
        return nil
    }
    mutating func varint32() -> Int32? { varint().flatMap(UInt32.init(exactly:)).map { Int32(bitPattern: $0) } }
    public mutating func zigzag() -> Int64? {
        varint().map { Int64(bitPattern: ($0 >> 1) ^ (0 &- ($0 & 1))) }
    }
    /// Reads `ByteWriter.instant(_:after:)`'s form.
    public mutating func instant(after base: Instant) -> Instant? {
        guard let d = zigzag(), let n = varint32() else { return nil }
        return Instant(seconds: base.seconds &+ d, nanos: n)
    }
}
