import LedgerCore
import LedgerStore
import LedgerTestSupport
import Testing

/// What the log compares is bytes: an instant's spellings are one event after normalising, and
/// labels that only look alike (Unicode canonical equivalence) are different labels.
@Suite("Text equality in the log")
struct TextEqualityTests {
    @Test("an event re-sent with another spelling of its `at` fraction is a duplicate, not id_conflict")
    func fractionSpellingsAreDuplicates() throws {
        try withTemporaryLedger { ledger, _ in
            let first = try TestEvents.event(id: "f1", caseID: "C-f", at: "2023-07-03T14:05:00.5Z")
            #expect(try ledger.append([[first]])[0].get() == [AppendResult(position: 1, duplicate: false)])
            for at in ["2023-07-03T14:05:00.50Z", "2023-07-03T14:05:00.500000000Z", "2023-07-03T09:05:00.5-05:00"] {
                let again = try TestEvents.event(id: "f1", caseID: "C-f", at: at)
                #expect(try ledger.append([[again]])[0].get() == [AppendResult(position: 1, duplicate: true)], "\(at)")
            }
            // A zero fraction is no fraction.
            let whole = try TestEvents.event(id: "f2", caseID: "C-g", at: "2023-07-03T14:05:00.000Z")
            #expect(try ledger.append([[whole]])[0].get() == [AppendResult(position: 2, duplicate: false)])
            let plain = try TestEvents.event(id: "f2", caseID: "C-g", at: "2023-07-03T14:05:00Z")
            #expect(try ledger.append([[plain]])[0].get() == [AppendResult(position: 2, duplicate: true)])
            // Another instant is still another event.
            let other = try TestEvents.event(id: "f1", caseID: "C-f", at: "2023-07-03T14:05:00.05Z")
            guard case .failure(let error) = ledger.append([[other]])[0] else { Issue.record("expected id_conflict"); return }
            #expect(error.code == .idConflict)
            let stored = try ledger.read(from: 1, limit: 10).map { String(decoding: $0.canonical, as: UTF8.self) }
            #expect(stored.count == 2)
            #expect(stored[0].contains(#""at":"2023-07-03T14:05:00.5Z""#))
            #expect(stored[1].contains(#""at":"2023-07-03T14:05:00Z""#))
            #expect(try ledger.verify().ok)
        }
    }

    @Test("referrals whose labels only look alike are two referrals, through append, verify and replay")
    func lookAlikeReferrals() throws {
        try withTemporaryLedger { ledger, _ in
            let c = "C-r"
            var n = 0
            func event(_ type: String, _ data: String) throws -> Event {
                n += 1
                return try TestEvents.event(id: "r\(n)", type: type, caseID: c, at: "2023-07-03T14:\(10 + n):00Z", data: data)
            }
            let history = [
                try event("AppointmentRequested", #"{"office_country":"CO","nationality":"VEN","household_size":3}"#),
                try event("EligibilityScreened", #"{"result":"eligible"}"#),
                try event("AppointmentScheduled", #"{"office":"Bogot\u00e1","scheduled_for":"2023-07-10T09:00:00Z"}"#),
                try event("Interviewed", #"{"interviewer":"UNHCR"}"#),
                try event("Referred", #"{"referral":"\u00e9","pathway":"USRAP","persons":1}"#),
                try event("Referred", #"{"referral":"e\u0301","pathway":"SPAIN","persons":2}"#),
                try event("DecisionRecorded", #"{"referral":"e\u0301","decision":"approved"}"#),
            ]
            let results = try ledger.append([history])[0].get()
            #expect(results.map(\.position) == Array(1...7))
            let stored = try ledger.caseHistory(c)
            #expect(stored.events.count == 7)
            let s = try #require(stored.state)
            #expect(s.referrals.map { Array($0.id.utf8) } == [[0xC3, 0xA9], [0x65, 0xCC, 0x81]])
            #expect(s.referrals.map(\.status) == [.referred, .approved])
            // The precomposed referral was not decided: a decision for it is still allowed.
            let decide = try event("DecisionRecorded", #"{"referral":"\u00e9","decision":"denied"}"#)
            #expect(try ledger.append([[decide]])[0].get().map(\.position) == [8])
            #expect(try ledger.verify().ok)
            let head = ledger.head
            #expect(try ledger.replay().report == (try ledger.report(asOf: nil)))
            #expect(head.position == 8)
        }
    }
}
