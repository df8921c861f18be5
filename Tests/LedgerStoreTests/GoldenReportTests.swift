import LedgerCore
import LedgerStore
import LedgerTestSupport
import Testing

/// A small history whose report was computed by hand (docs/DOMAIN.md walks through it).
enum Golden {
    static let lines: [(String, String, String, String)] = [
        // (case, type, at, data)
        ("C1", "AppointmentRequested", "2023-06-12T10:00:00Z", #"{"office_country":"GT","nationality":"SLV","household_size":4,"channel":"web"}"#),
        ("C3", "AppointmentRequested", "2023-06-05T00:00:00Z", #"{"office_country":"CO","nationality":"VEN","household_size":1}"#),
        ("C2", "AppointmentRequested", "2023-06-13T00:00:00Z", #"{"office_country":"CO","nationality":"VEN","household_size":2}"#),
        ("C1", "EligibilityScreened", "2023-06-13T10:00:00Z", #"{"result":"eligible"}"#),
        ("C3", "EligibilityScreened", "2023-06-14T00:00:00Z", #"{"result":"ineligible","reasons":["NATIONALITY"]}"#),
        ("C2", "EligibilityScreened", "2023-06-14T00:00:00Z", #"{"result":"eligible"}"#),
        ("C1", "AppointmentScheduled", "2023-06-14T10:00:00Z", #"{"office":"Guatemala City","scheduled_for":"2023-06-20T10:00:00Z"}"#),
        ("C3", "CaseClosed", "2023-06-15T00:00:00Z", #"{"reason":"ineligible"}"#),
        ("C2", "AppointmentScheduled", "2023-06-15T00:00:00Z", #"{"office":"Bogotá","scheduled_for":"2023-06-16T14:00:00Z"}"#),
        ("C2", "AppointmentMissed", "2023-06-16T00:00:00Z", "{}"),
        ("C2", "AppointmentScheduled", "2023-06-19T00:00:00Z", #"{"office":"Bogotá","scheduled_for":"2023-06-23T09:00:00Z"}"#),
        ("C1", "Interviewed", "2023-06-20T10:00:00Z", #"{"interviewer":"UNHCR"}"#),
        ("C1", "Referred", "2023-06-22T10:00:00Z", #"{"referral":"R1","pathway":"USRAP","persons":4}"#),
        ("C2", "Interviewed", "2023-06-23T00:00:00Z", #"{"interviewer":"IOM"}"#),
        ("C2", "Referred", "2023-06-24T00:00:00Z", #"{"referral":"R1","pathway":"SPAIN","persons":1}"#),
        ("C2", "Referred", "2023-06-25T00:00:00Z", #"{"referral":"R2","pathway":"USRAP","persons":2}"#),
        ("C2", "DecisionRecorded", "2023-07-01T00:00:00Z", #"{"referral":"R2","decision":"hold"}"#),
        ("C2", "DecisionRecorded", "2023-07-11T00:00:00Z", #"{"referral":"R2","decision":"denied"}"#),
        ("C1", "DecisionRecorded", "2023-07-22T10:00:00Z", #"{"referral":"R1","decision":"approved"}"#),
        ("C2", "DecisionRecorded", "2023-07-24T00:00:00Z", #"{"referral":"R1","decision":"approved"}"#),
        ("C1", "VisaIssued", "2023-08-01T10:00:00Z", #"{"referral":"R1","document":"refugee_travel"}"#),
        ("C1", "Arrived", "2023-09-01T10:00:00Z", #"{"referral":"R1","country":"USA"}"#),
        ("C4", "AppointmentRequested", "2023-12-12T00:00:00Z", #"{"office_country":"CR","nationality":"NIC","household_size":3}"#),
        ("C4", "CaseWithdrawn", "2023-12-13T00:00:00Z", #"{"reason":"left_country"}"#),
    ]

    static func events() throws -> [Event] {
        try lines.enumerated().map { (k, l) in
            try TestEvents.event(id: "g-\(k)", type: l.1, caseID: l.0, at: l.2, data: l.3)
        }
    }

    static func stage(_ report: JSONObject, _ path: [String]) -> (Int64, Int64)? {
        var v: JSONValue = .object(report)
        for p in path {
            guard case .object(let o) = v, let next = o[p] else { return nil }
            v = next
        }
        guard case .object(let o) = v, case .int(let c)? = o["cases"], case .int(let p)? = o["persons"] else { return nil }
        return (c, p)
    }

    static func value(_ report: JSONObject, _ path: [String]) -> JSONValue? {
        var v: JSONValue = .object(report)
        for p in path {
            guard case .object(let o) = v, let next = o[p] else { return nil }
            v = next
        }
        return v
    }
}

@Suite("The pilot report of a hand-computed history")
struct GoldenReportTests {
    func check(_ r: JSONObject) {
        let funnel: [String: (Int64, Int64)] = [
            "requested": (4, 10), "eligible": (2, 6), "ineligible": (1, 1), "scheduled": (2, 6), "missed": (1, 2),
            "interviewed": (2, 6), "referred": (2, 7), "approved": (2, 5), "denied": (1, 2), "visa_issued": (1, 4),
            "arrived": (1, 4), "withdrawn": (1, 3), "closed": (1, 1),
        ]
        for (stage, expected) in funnel {
            let got = Golden.stage(r, ["funnel", stage])
            #expect(got?.0 == expected.0 && got?.1 == expected.1, "funnel.\(stage): \(String(describing: got))")
        }
        let gt: [String: (Int64, Int64)] = ["requested": (1, 4), "eligible": (1, 4), "ineligible": (0, 0), "scheduled": (1, 4),
                                            "missed": (0, 0), "interviewed": (1, 4), "referred": (1, 4), "approved": (1, 4),
                                            "denied": (0, 0), "visa_issued": (1, 4), "arrived": (1, 4), "withdrawn": (0, 0), "closed": (0, 0)]
        let co: [String: (Int64, Int64)] = ["requested": (2, 3), "eligible": (1, 2), "ineligible": (1, 1), "scheduled": (1, 2),
                                            "missed": (1, 2), "interviewed": (1, 2), "referred": (1, 3), "approved": (1, 1),
                                            "denied": (1, 2), "visa_issued": (0, 0), "arrived": (0, 0), "withdrawn": (0, 0), "closed": (1, 1)]
        for (stage, e) in gt {
            #expect(Golden.stage(r, ["by_office_country", "GT", stage]).map { [$0.0, $0.1] } == [e.0, e.1], "GT \(stage)")
            #expect(Golden.stage(r, ["by_nationality", "SLV", stage]).map { [$0.0, $0.1] } == [e.0, e.1], "SLV \(stage)")
        }
        for (stage, e) in co {
            #expect(Golden.stage(r, ["by_office_country", "CO", stage]).map { [$0.0, $0.1] } == [e.0, e.1], "CO \(stage)")
            #expect(Golden.stage(r, ["by_nationality", "VEN", stage]).map { [$0.0, $0.1] } == [e.0, e.1], "VEN \(stage)")
        }
        #expect(Golden.stage(r, ["by_office_country", "CR", "requested"]).map { [$0.0, $0.1] } == [1, 3])
        #expect(Golden.stage(r, ["by_office_country", "CR", "withdrawn"]).map { [$0.0, $0.1] } == [1, 3])
        #expect(Golden.value(r, ["by_office_country", "EC"]) == nil)
        let usrap: [String: (Int64, Int64)] = ["referred": (2, 6), "approved": (1, 4), "denied": (1, 2), "visa_issued": (1, 4), "arrived": (1, 4)]
        let spain: [String: (Int64, Int64)] = ["referred": (1, 1), "approved": (1, 1), "denied": (0, 0), "visa_issued": (0, 0), "arrived": (0, 0)]
        for (stage, e) in usrap { #expect(Golden.stage(r, ["by_pathway", "USRAP", stage]).map { [$0.0, $0.1] } == [e.0, e.1], "USRAP \(stage)") }
        for (stage, e) in spain { #expect(Golden.stage(r, ["by_pathway", "SPAIN", stage]).map { [$0.0, $0.1] } == [e.0, e.1], "SPAIN \(stage)") }
        guard case .object(let pathways)? = Golden.value(r, ["by_pathway"]) else { Issue.record("no by_pathway"); return }
        #expect(pathways.keys.sorted() == ["SPAIN", "USRAP"])

        guard case .array(let weekly)? = Golden.value(r, ["weekly"]) else { Issue.record("no weekly"); return }
        #expect(weekly.count == 27)
        var byWeek: [String: [String: Int64]] = [:]
        for row in weekly {
            guard case .object(let o) = row, case .string(let w)? = o["week"], case .object(let counts)? = o["counts"] else { continue }
            #expect(counts.keys.count == 11)
            for (t, v) in counts.members { if case .int(let n) = v, n > 0 { byWeek[w, default: [:]][t] = n } }
        }
        #expect(byWeek["2023-W24"] == ["AppointmentRequested": 2, "EligibilityScreened": 3, "AppointmentScheduled": 2,
                                       "CaseClosed": 1, "AppointmentMissed": 1])
        #expect(byWeek["2023-W25"] == ["AppointmentScheduled": 1, "Interviewed": 2, "Referred": 3])
        #expect(byWeek["2023-W26"] == ["DecisionRecorded": 1])
        #expect(byWeek["2023-W28"] == ["DecisionRecorded": 1])
        #expect(byWeek["2023-W29"] == ["DecisionRecorded": 1])
        #expect(byWeek["2023-W30"] == ["DecisionRecorded": 1])
        #expect(byWeek["2023-W31"] == ["VisaIssued": 1])
        #expect(byWeek["2023-W35"] == ["Arrived": 1])
        #expect(byWeek.count == 8)
        #expect(Golden.value(r, ["outside_window", "AppointmentRequested"]) == .int(2))
        #expect(Golden.value(r, ["outside_window", "CaseWithdrawn"]) == .int(1))
        #expect(Golden.value(r, ["outside_window", "Arrived"]) == .int(0))

        let durations: [String: (Int64, JSONValue, JSONValue)] = [
            "request_to_interview": (2, .int(691_200), .int(864_000)),
            "interview_to_referral": (2, .int(86_400), .int(172_800)),
            "referral_to_decision": (3, .int(2_592_000), .int(2_592_000)),
            "request_to_arrival": (1, .int(6_998_400), .int(6_998_400)),
        ]
        for (m, e) in durations {
            #expect(Golden.value(r, ["durations", m, "count"]) == .int(e.0), "\(m)")
            #expect(Golden.value(r, ["durations", m, "p50_seconds"]) == e.1, "\(m) p50")
            #expect(Golden.value(r, ["durations", m, "p90_seconds"]) == e.2, "\(m) p90")
        }
        let states: [String: Int64] = ["requested": 0, "eligible": 0, "ineligible": 0, "scheduled": 0, "missed": 0,
                                       "interviewed": 0, "referred": 2, "withdrawn": 1, "closed": 1]
        for (s, n) in states { #expect(Golden.value(r, ["states", s]) == .int(n), "states.\(s)") }
        #expect(Golden.value(r, ["window", "start"]) == .string("2023-06-12"))
        #expect(Golden.value(r, ["as_of"]) == .null)
    }

    @Test func replayInMemory() throws {
        var replay = Replay(window: .pilot)
        for e in try Golden.events() { try replay.apply(e) }
        check(try replay.report(position: 24, headHash: "x").json)
    }

    @Test func keptInlineWhileIngesting() throws {
        try withTemporaryLedger { ledger, _ in
            // One event per request, then check the stored projections.
            for e in try Golden.events() { _ = try ledger.append([[e]])[0].get() }
            let r = try ledger.report().json
            check(r)
            #expect(Golden.value(r, ["position"]) == .int(24))
            #expect(Golden.value(r, ["head_hash"]) == .string(ledger.head.hashHex))
            #expect(try ledger.verify().ok)
        }
    }

    @Test func oneRequestCarriesWholeHistories() throws {
        try withTemporaryLedger { ledger, _ in
            _ = try ledger.append([try Golden.events()])[0].get()
            check(try ledger.report().json)
        }
    }

    @Test func asOfCut() throws {
        try withTemporaryLedger { ledger, _ in
            _ = try ledger.append([try Golden.events()])[0].get()
            let cut = try #require(Timestamp(rfc3339: "2023-06-30T23:59:59Z"))
            let r = try ledger.report(asOf: cut).json
            #expect(Golden.value(r, ["as_of"]) == .string("2023-06-30T23:59:59Z"))
            #expect(Golden.value(r, ["position"]) == .int(24))
            #expect(Golden.stage(r, ["funnel", "requested"]).map { [$0.0, $0.1] } == [3, 7])
            #expect(Golden.stage(r, ["funnel", "referred"]).map { [$0.0, $0.1] } == [2, 7])
            #expect(Golden.stage(r, ["funnel", "approved"]).map { [$0.0, $0.1] } == [0, 0])
            #expect(Golden.value(r, ["states", "referred"]) == .int(2))
            #expect(Golden.value(r, ["states", "closed"]) == .int(1))
            #expect(Golden.value(r, ["states", "withdrawn"]) == .int(0))
            #expect(Golden.value(r, ["outside_window", "AppointmentRequested"]) == .int(1))
            #expect(Golden.value(r, ["durations", "referral_to_decision", "count"]) == .int(0))
            #expect(Golden.value(r, ["durations", "referral_to_decision", "p50_seconds"]) == .null)
            // A cut after everything equals the inline report but for as_of.
            var full = try ledger.report(asOf: try #require(Timestamp(rfc3339: "2030-01-01T00:00:00Z")))
            full.asOf = nil
            #expect(full == (try ledger.report()))
        }
    }

    @Test func pathwaysByOffice() throws {
        try withTemporaryLedger { ledger, _ in
            _ = try ledger.append([try Golden.events()])[0].get()
            let report = try ledger.report()
            let split = report.pathwaysByOfficeJSON
            #expect(split.keys == ["CO", "GT"])
            func cell(_ o: String, _ p: String, _ s: String) -> [Int64]? {
                guard case .object(let ps)? = split[o], case .object(let st)? = ps[p], case .object(let c)? = st[s],
                      case .int(let cases)? = c["cases"], case .int(let persons)? = c["persons"] else { return nil }
                return [cases, persons]
            }
            #expect(cell("GT", "USRAP", "referred") == [1, 4])
            #expect(cell("GT", "USRAP", "arrived") == [1, 4])
            #expect(cell("CO", "USRAP", "referred") == [1, 2])
            #expect(cell("CO", "USRAP", "denied") == [1, 2])
            #expect(cell("CO", "SPAIN", "approved") == [1, 1])
            #expect(cell("CO", "SPAIN", "arrived") == [0, 0])
            let csv = String(decoding: ReportFiles.render(report).last!.bytes, as: UTF8.self)
            #expect(csv.hasPrefix("office_country,pathway,stage,cases,persons\nCO,SPAIN,referred,1,1\n"))
        }
    }

    @Test func minCellSuppression() throws {
        var replay = Replay(window: .pilot)
        for e in try Golden.events() { try replay.apply(e) }
        let r = try replay.report(position: 24, headHash: "x").suppressed(minCell: 3).json
        // Splits: 1 and 2 become null, 0 and ≥3 stay.
        #expect(Golden.value(r, ["by_office_country", "GT", "requested", "cases"]) == .null)
        #expect(Golden.value(r, ["by_office_country", "GT", "requested", "persons"]) == .int(4))
        #expect(Golden.value(r, ["by_office_country", "GT", "denied", "cases"]) == .int(0))
        #expect(Golden.value(r, ["by_pathway", "USRAP", "referred", "cases"]) == .null)
        #expect(Golden.value(r, ["by_pathway", "USRAP", "referred", "persons"]) == .int(6))
        // The funnel is not a split.
        #expect(Golden.value(r, ["funnel", "denied", "cases"]) == .int(1))
    }
}
