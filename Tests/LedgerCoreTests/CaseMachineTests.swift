import LedgerCore
import LedgerTestSupport
import Testing

/// Builds envelopes for a case at increasing times.
struct History {
    var caseID: String
    var minute = 0
    var n = 0

    init(_ caseID: String) { self.caseID = caseID }

    mutating func event(_ type: String, _ data: String = "{}", at: String? = nil, expectedVersion: Int? = nil) throws -> Event {
        n += 1
        minute += 1
        let time = at ?? "2023-07-01T\(String(format2: 10 + minute / 60)):\(String(format2: minute % 60)):00Z"
        let ev = expectedVersion.map { #","expected_version":\#($0)"# } ?? ""
        let text = #"{"id":"\#(caseID)-\#(n)","type":"\#(type)","case":"\#(caseID)","at":"\#(time)"\#(ev),"data":\#(data)}"#
        return try Event.validate(json: Array(text.utf8))
    }
}

extension String {
    init(format2 v: Int) { self = v < 10 ? "0\(v)" : "\(v)" }
}

/// Steps of a case history by name, so tables stay short.
enum Step: String, CaseIterable {
    case request, eligible, ineligible, schedule, miss, interview, refer, refer2, hold, approve, deny, visa, arrive, withdraw, close

    var type: String {
        switch self {
        case .request: "AppointmentRequested"
        case .eligible, .ineligible: "EligibilityScreened"
        case .schedule: "AppointmentScheduled"
        case .miss: "AppointmentMissed"
        case .interview: "Interviewed"
        case .refer, .refer2: "Referred"
        case .hold, .approve, .deny: "DecisionRecorded"
        case .visa: "VisaIssued"
        case .arrive: "Arrived"
        case .withdraw: "CaseWithdrawn"
        case .close: "CaseClosed"
        }
    }

    var data: String {
        switch self {
        case .request: #"{"office_country":"CR","nationality":"NIC","household_size":4}"#
        case .eligible: #"{"result":"eligible"}"#
        case .ineligible: #"{"result":"ineligible","reasons":["NATIONALITY"]}"#
        case .schedule: #"{"office":"San José","scheduled_for":"2023-07-20T09:00:00-06:00"}"#
        case .miss: "{}"
        case .interview: #"{"interviewer":"UNHCR"}"#
        case .refer: #"{"referral":"R1","pathway":"USRAP","persons":3}"#
        case .refer2: #"{"referral":"R2","pathway":"SPAIN","persons":1}"#
        case .hold: #"{"referral":"R1","decision":"hold"}"#
        case .approve: #"{"referral":"R1","decision":"approved"}"#
        case .deny: #"{"referral":"R1","decision":"denied"}"#
        case .visa: #"{"referral":"R1","document":"refugee_travel"}"#
        case .arrive: #"{"referral":"R1","country":"USA"}"#
        case .withdraw: #"{"reason":"other_pathway"}"#
        case .close: #"{"reason":"completed"}"#
        }
    }
}

@Suite("The case lifecycle")
struct CaseMachineTests {
    /// Applies `steps` to a new case; returns the state, or the first error with its step.
    static func run(_ steps: [Step]) throws -> (CaseState?, (Int, LedgerError)?) {
        var h = History("C-t")
        var state: CaseState?
        var delta = ProjectionDelta()
        for (i, step) in steps.enumerated() {
            let e = try h.event(step.type, step.data)
            do {
                state = try CaseMachine.apply(e, to: state, window: .pilot, delta: &delta)
            } catch {
                return (state, (i, error))
            }
        }
        return (state, nil)
    }

    @Test("legal histories", arguments: [
        ([Step.request], "requested"),
        ([.request, .eligible], "eligible"),
        ([.request, .ineligible], "ineligible"),
        ([.request, .ineligible, .close], "closed"),
        ([.request, .eligible, .schedule], "scheduled"),
        ([.request, .eligible, .schedule, .schedule], "scheduled"),
        ([.request, .eligible, .schedule, .miss], "missed"),
        ([.request, .eligible, .schedule, .miss, .schedule, .interview], "interviewed"),
        ([.request, .eligible, .schedule, .interview, .refer], "referred"),
        ([.request, .eligible, .schedule, .interview, .refer, .refer2], "referred"),
        ([.request, .eligible, .schedule, .interview, .refer, .hold, .approve, .visa, .arrive], "referred"),
        ([.request, .eligible, .schedule, .interview, .refer, .hold, .deny], "referred"),
        ([.request, .eligible, .schedule, .interview, .refer, .deny], "referred"),
        ([.request, .eligible, .schedule, .interview, .refer, .approve, .visa, .arrive, .close], "closed"),
        ([.request, .withdraw], "withdrawn"),
        ([.request, .eligible, .schedule, .interview, .refer, .withdraw], "withdrawn"),
        ([.request, .close], "closed"),
    ])
    func legal(steps: [Step], final: String) throws {
        let (state, error) = try Self.run(steps)
        #expect(error == nil, "\(error.map { "step \($0.0): \($0.1)" } ?? "")")
        #expect(state?.status.name == final)
        #expect(state?.version == UInt64(steps.count))
    }

    @Test("illegal transitions", arguments: [
        // Every event but AppointmentRequested needs an existing case.
        ([Step.eligible], Step.eligible), ([.schedule], .schedule), ([.miss], .miss), ([.interview], .interview),
        ([.refer], .refer), ([.approve], .approve), ([.visa], .visa), ([.arrive], .arrive),
        ([.withdraw], .withdraw), ([.close], .close),
        // A second AppointmentRequested.
        ([.request, .request], .request),
        // Out of order.
        ([.request, .schedule], .schedule), ([.request, .interview], .interview), ([.request, .eligible, .eligible], .eligible),
        ([.request, .eligible, .miss], .miss), ([.request, .eligible, .interview], .interview),
        ([.request, .ineligible, .schedule], .schedule), ([.request, .eligible, .refer], .refer),
        ([.request, .eligible, .schedule, .miss, .interview], .interview), ([.request, .eligible, .schedule, .miss, .miss], .miss),
        ([.request, .eligible, .schedule, .interview, .interview], .interview), ([.request, .eligible, .schedule, .interview, .schedule], .schedule),
        ([.request, .eligible, .schedule, .interview, .approve], .approve),
        // Referral states.
        ([.request, .eligible, .schedule, .interview, .refer, .visa], .visa),
        ([.request, .eligible, .schedule, .interview, .refer, .arrive], .arrive),
        ([.request, .eligible, .schedule, .interview, .refer, .hold, .hold], .hold),
        ([.request, .eligible, .schedule, .interview, .refer, .approve, .approve], .approve),
        ([.request, .eligible, .schedule, .interview, .refer, .approve, .deny], .deny),
        ([.request, .eligible, .schedule, .interview, .refer, .deny, .visa], .visa),
        ([.request, .eligible, .schedule, .interview, .refer, .approve, .arrive], .arrive),
        ([.request, .eligible, .schedule, .interview, .refer, .approve, .visa, .visa], .visa),
        ([.request, .eligible, .schedule, .interview, .refer, .approve, .visa, .arrive, .arrive], .arrive),
        ([.request, .eligible, .schedule, .interview, .refer2, .approve], .approve),  // no referral R1
        // Terminal states.
        ([.request, .withdraw, .withdraw], .withdraw), ([.request, .withdraw, .close], .close),
        ([.request, .close, .close], .close), ([.request, .close, .withdraw], .withdraw),
        ([.request, .eligible, .schedule, .interview, .refer, .close, .approve], .approve),
    ])
    func illegal(steps: [Step], failing: Step) throws {
        let (_, error) = try Self.run(steps)
        let (index, e) = try #require(error)
        #expect(index == steps.count - 1, "failed early at \(index): \(e)")
        #expect(e.code == .invalidTransition, "\(failing): \(e)")
        #expect(e.message.contains("C-t"))
    }

    @Test func messagesNameTheStateAndTheNeed() throws {
        let (_, error) = try Self.run([.request, .eligible, .schedule, .interview, .refer, .visa])
        let e = try #require(error).1
        #expect(e.message == "case C-t is `referred`; VisaIssued needs referral R1 to be `approved`, it is `referred`")
    }

    @Test func eventsMayNotGoBackInTime() throws {
        var h = History("C-time")
        var delta = ProjectionDelta()
        let s = try CaseMachine.apply(try h.event("AppointmentRequested", Step.request.data, at: "2023-07-02T10:00:00Z"),
                                      to: nil, window: .pilot, delta: &delta)
        let earlier = try h.event("CaseClosed", Step.close.data, at: "2023-07-02T09:59:59Z")
        #expect { try CaseMachine.apply(earlier, to: s, window: .pilot, delta: &delta) } throws: {
            ($0 as? LedgerError)?.code == .invalidTransition
        }
        // The same instant is allowed, also written in another offset.
        let same = try h.event("CaseClosed", Step.close.data, at: "2023-07-02T05:00:00-05:00")
        #expect(try CaseMachine.apply(same, to: s, window: .pilot, delta: &delta).status == .closed)
    }

    @Test func expectedVersionIsChecked() throws {
        var h = History("C-v")
        var delta = ProjectionDelta()
        let s = try CaseMachine.apply(try h.event("AppointmentRequested", Step.request.data, expectedVersion: 0),
                                      to: nil, window: .pilot, delta: &delta)
        #expect { try CaseMachine.apply(try h.event("CaseClosed", Step.close.data, expectedVersion: 0), to: s, window: .pilot, delta: &delta) }
            throws: { ($0 as? LedgerError)?.code == .versionConflict }
        #expect(try CaseMachine.apply(try h.event("CaseClosed", Step.close.data, expectedVersion: 1), to: s, window: .pilot, delta: &delta).version == 2)
    }

    @Test func referralRulesOnData() throws {
        // persons over the household, and a referral id used twice, are invalid_event.
        var h = History("C-r")
        var delta = ProjectionDelta()
        var s: CaseState? = nil
        for step in [Step.request, .eligible, .schedule, .interview, .refer] {
            s = try CaseMachine.apply(try h.event(step.type, step.data), to: s, window: .pilot, delta: &delta)
        }
        let tooMany = try h.event("Referred", #"{"referral":"R9","pathway":"H2B","persons":5}"#)
        #expect { try CaseMachine.apply(tooMany, to: s, window: .pilot, delta: &delta) } throws: {
            ($0 as? LedgerError)?.code == .invalidEvent
        }
        let again = try h.event("Referred", #"{"referral":"R1","pathway":"H2B","persons":1}"#)
        #expect { try CaseMachine.apply(again, to: s, window: .pilot, delta: &delta) } throws: {
            ($0 as? LedgerError)?.code == .invalidEvent
        }
    }

    @Test("referral labels are told apart by their UTF-8 bytes, not by canonical equivalence")
    func referralLabelsCompareByBytes() throws {
        // "\u00e9" (precomposed) and "e\u0301" (e + combining acute) look alike and Swift's `==`
        // calls them equal, but their bytes (what is stored and hashed) differ: two referrals.
        var h = History("C-u")
        var delta = ProjectionDelta()
        var s: CaseState? = nil
        for step in [Step.request, .eligible, .schedule, .interview] {
            s = try CaseMachine.apply(try h.event(step.type, step.data), to: s, window: .pilot, delta: &delta)
        }
        s = try CaseMachine.apply(try h.event("Referred", #"{"referral":"\u00e9","pathway":"USRAP","persons":1}"#),
                                  to: s, window: .pilot, delta: &delta)
        // A decision for the look-alike that does not exist yet is refused, not applied to "\u00e9".
        let early = try h.event("DecisionRecorded", #"{"referral":"e\u0301","decision":"approved"}"#)
        #expect { try CaseMachine.apply(early, to: s, window: .pilot, delta: &delta) } throws: {
            ($0 as? LedgerError)?.code == .invalidTransition
        }
        s = try CaseMachine.apply(try h.event("Referred", #"{"referral":"e\u0301","pathway":"SPAIN","persons":1}"#),
                                  to: s, window: .pilot, delta: &delta)
        s = try CaseMachine.apply(try h.event("Referred", #"{"referral":"K1","pathway":"H2B","persons":1}"#),
                                  to: s, window: .pilot, delta: &delta)
        s = try CaseMachine.apply(try h.event("Referred", #"{"referral":"\u212a1","pathway":"H2A","persons":1}"#),
                                  to: s, window: .pilot, delta: &delta)
        // Each decision reaches its own referral.
        s = try CaseMachine.apply(try h.event("DecisionRecorded", #"{"referral":"e\u0301","decision":"denied"}"#),
                                  to: s, window: .pilot, delta: &delta)
        s = try CaseMachine.apply(try h.event("DecisionRecorded", #"{"referral":"\u212a1","decision":"hold"}"#),
                                  to: s, window: .pilot, delta: &delta)
        let state = try #require(s)
        #expect(state.referrals.map { Array($0.id.utf8) } == [[0xC3, 0xA9], [0x65, 0xCC, 0x81], [0x4B, 0x31], [0xE2, 0x84, 0xAA, 0x31]])
        #expect(state.referrals.map(\.status) == [.referred, .denied, .referred, .hold])
        #expect(state.referralIndex("e\u{301}") == 1)
        #expect(state.referralIndex("\u{212A}1") == 3)
        // The same label again is still not new in the case.
        let again = try h.event("Referred", #"{"referral":"e\u0301","pathway":"OTHER","persons":1}"#)
        #expect { try CaseMachine.apply(again, to: s, window: .pilot, delta: &delta) } throws: {
            ($0 as? LedgerError)?.code == .invalidEvent
        }
        // States (and the facts replays read) compare by bytes too, and survive their encodings.
        #expect(CaseState.decode(state.encoded()) == state)
        var swapped = state
        swapped.referrals[0].id = "e\u{301}"
        #expect(swapped != state)
        var facts = try h.event("Arrived", #"{"referral":"\u00e9","country":"USA"}"#).facts
        #expect(EventFacts.decode(facts.encoded) == facts)
        let before = facts
        facts.referral = "e\u{301}"
        #expect(facts != before)
    }

    @Test func stateEncodingRoundTrips() throws {
        let (state, _) = try Self.run([.request, .eligible, .schedule, .interview, .refer, .refer2, .hold, .approve, .visa])
        let s = try #require(state)
        #expect(CaseState.decode(s.encoded()) == s)
        let bytes = s.encoded()
        for n in 0..<bytes.count { #expect(CaseState.decode(Array(bytes.prefix(n))) == nil, "cut to \(n) bytes") }
        #expect(CaseState.decode(bytes + [0]) == nil)
    }

    @Test("encoding 3 is compact")
    func stateEncodingSize() throws {
        let (state, _) = try Self.run([.request, .eligible, .schedule, .interview, .refer, .refer2, .hold, .approve, .visa])
        let referred = try #require(state)
        let requested = try #require(try Self.run([.request]).0)
        #expect(referred.encoded().first == 3 && requested.encoded().first == 3)
        #expect(requested.encoded().count <= 30)
        #expect(referred.encoded().count <= 70)
    }

    @Test("encoding 3 keeps every value, at the edges of each field")
    func stateEncodingEdges() throws {
        var s = try #require(try Self.run([.request, .eligible, .schedule, .interview, .refer, .refer2, .approve]).0)
        let extremes: [(Int64, Int64, Int32)] = [
            (0, 0, 0), (-62_135_596_800, 253_402_300_799, 999_999_999),  // years 1 and 9999
            (253_402_300_799, -62_135_596_800, 1), (Int64.min, Int64.max, Int32.max), (Int64.max, Int64.min, Int32.min),
        ]
        for (requested, last, nanos) in extremes {
            s.requestedAt = Instant(seconds: requested, nanos: nanos)
            s.lastAt = Instant(seconds: last, nanos: 0)
            s.firstInterviewAt = Instant(seconds: last, nanos: nanos)
            s.referrals[0].referredAt = Instant(seconds: requested &+ 1, nanos: 0)
            s.referrals[1].decided.toggle()
            s.version = UInt64(bitPattern: requested)
            s.pathwayStages = UInt64(bitPattern: last)
            s.nationality = UInt32(truncatingIfNeeded: requested)
            s.stages = UInt16(truncatingIfNeeded: last)
            s.referrals[1].id = String(repeating: "x", count: 255)
            #expect(CaseState.decode(s.encoded()) == s)
        }
        // Varints: a value past 64 bits, or one cut short, is not a state.
        var w = ByteWriter()
        for v: UInt64 in [0, 1, 127, 128, 16_383, 16_384, UInt64(UInt32.max), UInt64.max] { w.varint(v) }
        for v: Int64 in [0, -1, 1, Int64.min, Int64.max] { w.zigzag(v) }
        w.bytes.withUnsafeBytes { b in
            var r = ByteReader(b)
            for v: UInt64 in [0, 1, 127, 128, 16_383, 16_384, UInt64(UInt32.max), UInt64.max] { #expect(r.varint() == v) }
            for v: Int64 in [0, -1, 1, Int64.min, Int64.max] { #expect(r.zigzag() == v) }
            #expect(r.atEnd)
        }
        for bad: [UInt8] in [[0x80], [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02], Array(repeating: 0x80, count: 11) + [0]] {
            bad.withUnsafeBytes { b in
                var r = ByteReader(b)
                #expect(r.varint() == nil)
            }
        }
    }
}

@Suite("ISO weeks and windows")
struct WindowTests {
    @Test("ISO 8601 weeks", arguments: [
        ("2023-06-12", "2023-W24"), ("2023-06-18", "2023-W24"), ("2023-06-19", "2023-W25"),
        ("2023-12-11", "2023-W50"), ("2023-01-01", "2022-W52"), ("2021-01-03", "2020-W53"),
        ("2024-12-30", "2025-W01"), ("2026-01-01", "2026-W01"),
    ])
    func weeks(date: String, week: String) throws {
        let t = try #require(Timestamp(rfc3339: date + "T12:00:00Z"))
        #expect(ISOWeek.of(t) == week)
    }

    @Test func pilotWindowHas27Weeks() {
        let weeks = ReportWindow.pilot.weeks
        #expect(weeks.count == 27)
        #expect(weeks.first == "2023-W24")
        #expect(weeks.last == "2023-W50")
        #expect(ReportWindow(start: "2023-06-12", end: "2023-06-12") == nil)
    }
}
