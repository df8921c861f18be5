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
    public var id: String
    /// Index into `Codes.pathways`.
    public var pathway: UInt8
    public var persons: UInt8
    public var status: ReferralStatus
    /// The referral stages this referral has reached (bit `Stage.rawValue`).
    public var stages: UInt16
    public var referredAt: Timestamp
    /// Whether its first `approved` or `denied` has been recorded (for `referral_to_decision`).
    public var decided: Bool

    public var pathwayName: String { Codes.pathways[Int(pathway)] }
}

/// Everything the ledger keeps about one case: its state for validation, and the facts the
/// projections need so that each figure counts a case or referral once.
public struct CaseState: Sendable, Equatable {
    public var status: CaseStatus
    /// The number of events the case has.
    public var version: UInt64
    /// `at` of the case's latest event; a new event may not be earlier.
    public var lastAt: Timestamp
    public var householdSize: UInt8
    public var officeCountry: String
    public var nationality: String
    public var requestedAt: Timestamp
    public var firstInterviewAt: Timestamp?
    /// Whether the case's first `Referred` has been seen (for `interview_to_referral`).
    public var referredOnce: Bool
    /// The funnel stages the case has reached (bit `Stage.rawValue`).
    public var stages: UInt16
    /// The (pathway, referral stage) pairs reached by any referral of the case: bit pathway×5+k.
    public var pathwayStages: UInt64
    public var referrals: [Referral]

    public func referral(_ id: String) -> Referral? { referrals.first { $0.id == id } }

    public func hasReached(_ stage: Stage) -> Bool { stages & stage.bit != 0 }
}

// MARK: Binary encoding (stored in the `cases` database)

extension CaseState {
    static let encodingVersion: UInt8 = 1

    /// A compact binary form; `decode` reads it back exactly.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.u8(CaseState.encodingVersion)
        w.u8(status.rawValue)
        w.u64(version)
        w.time(lastAt)
        w.u8(householdSize)
        w.string(officeCountry)
        w.string(nationality)
        w.time(requestedAt)
        w.u8(firstInterviewAt == nil ? 0 : 1)
        if let t = firstInterviewAt { w.time(t) }
        w.u8(referredOnce ? 1 : 0)
        w.u16(stages)
        w.u64(pathwayStages)
        w.u16(UInt16(referrals.count))
        for r in referrals {
            w.string(r.id)
            w.u8(r.pathway)
            w.u8(r.persons)
            w.u8(r.status.rawValue)
            w.u16(r.stages)
            w.time(r.referredAt)
            w.u8(r.decided ? 1 : 0)
        }
        return w.bytes
    }

    /// Reads `encoded()`'s form; nil when the bytes are not one.
    public static func decode(_ bytes: [UInt8]) -> CaseState? {
        var r = ByteReader(bytes)
        guard r.u8() == encodingVersion,
              let status = r.u8().flatMap(CaseStatus.init(rawValue:)),
              let version = r.u64(), let lastAt = r.time(), let household = r.u8(),
              let office = r.string(), let nationality = r.string(), let requestedAt = r.time(),
              let hasInterview = r.u8()
        else { return nil }
        var firstInterviewAt: Timestamp?
        if hasInterview == 1 {
            guard let t = r.time() else { return nil }
            firstInterviewAt = t
        }
        guard let referredOnce = r.u8(), let stages = r.u16(), let pathwayStages = r.u64(), let count = r.u16() else { return nil }
        var referrals: [Referral] = []
        for _ in 0..<count {
            guard let id = r.string(), let pathway = r.u8(), let persons = r.u8(),
                  let rs = r.u8().flatMap(ReferralStatus.init(rawValue:)), let rstages = r.u16(),
                  let referredAt = r.time(), let decided = r.u8()
            else { return nil }
            referrals.append(Referral(id: id, pathway: pathway, persons: persons, status: rs, stages: rstages,
                                      referredAt: referredAt, decided: decided == 1))
        }
        guard r.atEnd else { return nil }
        return CaseState(status: status, version: version, lastAt: lastAt, householdSize: household,
                         officeCountry: office, nationality: nationality, requestedAt: requestedAt,
                         firstInterviewAt: firstInterviewAt, referredOnce: referredOnce == 1, stages: stages,
                         pathwayStages: pathwayStages, referrals: referrals)
    }
}

struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xFF)) }
    mutating func u64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((v >> UInt64(s)) & 0xFF)) } }
    mutating func string(_ s: String) {
        let b = Array(s.utf8)
        u8(UInt8(b.count))
        bytes.append(contentsOf: b)
    }
    mutating func time(_ t: Timestamp) {
        u64(UInt64(bitPattern: t.seconds))
        string(t.fraction)
    }
}

struct ByteReader {
    let bytes: [UInt8]
    var i = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var atEnd: Bool { i == bytes.count }
    mutating func u8() -> UInt8? {
        guard i < bytes.count else { return nil }
        defer { i += 1 }
        return bytes[i]
    }
    mutating func u16() -> UInt16? {
        guard let a = u8(), let b = u8() else { return nil }
        return UInt16(a) << 8 | UInt16(b)
    }
    mutating func u64() -> UInt64? {
        guard i + 8 <= bytes.count else { return nil }
        var v: UInt64 = 0
        for k in 0..<8 { v = v << 8 | UInt64(bytes[i + k]) }
        i += 8
        return v
    }
    mutating func string() -> String? {
        guard let n = u8(), i + Int(n) <= bytes.count else { return nil }
        defer { i += Int(n) }
        return String(decoding: bytes[i..<(i + Int(n))], as: UTF8.self)
    }
    mutating func time() -> Timestamp? {
        guard let s = u64(), let f = string() else { return nil }
        return Timestamp(seconds: Int64(bitPattern: s), fraction: f)
    }
}
