public import LedgerCore

/// A deterministic generator for property tests.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random valid case histories: each case walks the lifecycle of CONTRACT §3 at increasing times;
/// the cases' events are interleaved in one global order, as several intake systems would send them.
public enum RandomHistory {
    /// - Parameters:
    ///   - idPrefix: starts every event id (ids are `<idPrefix><seed>-<n>`).
    ///   - randomIDs: ids shaped like UUIDv4s, in no order (the prefix is then not used).
    public static func events(seed: UInt64, cases: Int, start: String = "2023-05-20T00:00:00Z",
                              idPrefix: String = "s", randomIDs: Bool = false) -> [Event] {
        var rng = SeededRandom(seed: seed)
        let t0 = Timestamp(rfc3339: start)!.seconds
        var perCase: [[(Int64, String, String)]] = []  // (time, type, data)
        for _ in 0..<cases {
            var t = t0 + Int64.random(in: 0..<(240 * 86400), using: &rng)
            var list: [(Int64, String, String)] = []
            func add(_ type: String, _ data: String) {
                list.append((t, type, data))
                t += Int64.random(in: 0..<(20 * 86400), using: &rng)
            }
            let office = Codes.officeCountries.randomElement(using: &rng)!
            let nat = ["VEN", "CUB", "HTI", "NIC", "COL", "SLV", "HND", "GTM"].randomElement(using: &rng)!
            let household = Int.random(in: 1...6, using: &rng)
            add("AppointmentRequested", #"{"office_country":"\#(office)","nationality":"\#(nat)","household_size":\#(household)}"#)
            func end() -> Bool {
                switch Int.random(in: 0..<20, using: &rng) {
                case 0: add("CaseWithdrawn", #"{"reason":"unknown"}"#); return true
                case 1: add("CaseClosed", #"{"reason":"unreachable"}"#); return true
                case 2: return true
                default: return false
                }
            }
            if end() { perCase.append(list); continue }
            if Int.random(in: 0..<5, using: &rng) == 0 {
                add("EligibilityScreened", #"{"result":"ineligible","reasons":["PRESENCE_DATE"]}"#)
                if Bool.random(using: &rng) { add("CaseClosed", #"{"reason":"ineligible"}"#) }
                perCase.append(list)
                continue
            }
            add("EligibilityScreened", #"{"result":"eligible"}"#)
            if end() { perCase.append(list); continue }
            var interviewed = false
            for _ in 0..<3 {
                add("AppointmentScheduled", #"{"office":"Office \#(office)","scheduled_for":"2023-09-01T10:00:00Z"}"#)
                if Int.random(in: 0..<4, using: &rng) == 0 { add("AppointmentMissed", "{}"); continue }
                add("Interviewed", #"{"interviewer":"\#(Bool.random(using: &rng) ? "UNHCR" : "IOM")"}"#)
                interviewed = true
                break
            }
            if !interviewed || end() { perCase.append(list); continue }
            let referrals = Int.random(in: 0...3, using: &rng)
            for r in 0..<referrals {
                let id = "R\(r + 1)"
                let pathway = Codes.pathways.randomElement(using: &rng)!
                let persons = Int.random(in: 1...household, using: &rng)
                add("Referred", #"{"referral":"\#(id)","pathway":"\#(pathway)","persons":\#(persons)}"#)
                if Int.random(in: 0..<4, using: &rng) == 0 { continue }
                if Int.random(in: 0..<4, using: &rng) == 0 { add("DecisionRecorded", #"{"referral":"\#(id)","decision":"hold"}"#) }
                if Int.random(in: 0..<5, using: &rng) == 0 {
                    add("DecisionRecorded", #"{"referral":"\#(id)","decision":"denied"}"#)
                    continue
                }
                add("DecisionRecorded", #"{"referral":"\#(id)","decision":"approved"}"#)
                if Int.random(in: 0..<3, using: &rng) == 0 { continue }
                add("VisaIssued", #"{"referral":"\#(id)","document":"visa"}"#)
                if Int.random(in: 0..<3, using: &rng) == 0 { continue }
                add("Arrived", #"{"referral":"\#(id)","country":"USA"}"#)
            }
            _ = end()
            perCase.append(list)
        }
        // Interleave: repeatedly take the next event of a random case that still has events.
        var cursors = Array(repeating: 0, count: perCase.count)
        var open = Array(perCase.indices).filter { !perCase[$0].isEmpty }
        var out: [Event] = []
        var n = 0
        while !open.isEmpty {
            let pick = Int.random(in: 0..<open.count, using: &rng)
            let c = open[pick]
            let (t, type, data) = perCase[c][cursors[c]]
            cursors[c] += 1
            if cursors[c] == perCase[c].count { open.remove(at: pick) }
            n += 1
            let at = Timestamp(seconds: t).description
            let id = randomIDs ? uuidLike(&rng) : "\(idPrefix)\(seed)-\(n)"
            let text = #"{"id":"\#(id)","type":"\#(type)","case":"P\#(seed)-\#(c)","at":"\#(at)","data":\#(data)}"#
            out.append(try! Event.validate(json: Array(text.utf8)))
        }
        return out
    }

    /// 8-4-4-4-12 lowercase hex digits, from `rng`.
    static func uuidLike(_ rng: inout SeededRandom) -> String {
        let hex = Array("0123456789abcdef")
        var out = ""
        for k in 0..<32 {
            if k == 8 || k == 12 || k == 16 || k == 20 { out.append("-") }
            out.append(hex[Int(rng.next() & 15)])
        }
        return out
    }
}
