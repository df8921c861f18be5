import LedgerCore
import LedgerStore
import LedgerTestSupport
import Testing

@Suite("Properties of random valid histories")
struct PropertyTests {
    func stage(_ r: JSONObject, _ path: String...) -> Int64 {
        var v: JSONValue = .object(r)
        for p in path {
            guard case .object(let o) = v, let n = o[p] else { return -1 }
            v = n
        }
        if case .int(let n) = v { return n }
        return -1
    }

    @Test("inline projections equal a replay, and totals are consistent", arguments: [1, 2, 3, 4, 5] as [UInt64])
    func inlineEqualsReplay(seed: UInt64) throws {
        let events = RandomHistory.events(seed: seed, cases: 150)
        try withTemporaryLedger { ledger, _ in
            var rng = SeededRandom(seed: seed * 31)
            var i = 0
            var accepted: [Event] = []
            while i < events.count {
                // Groups of 1 to 4 requests of 1 to 40 events; now and then a request that must fail.
                var group: [[Event]] = []
                for _ in 0..<Int.random(in: 1...4, using: &rng) where i < events.count {
                    let n = min(Int.random(in: 1...40, using: &rng), events.count - i)
                    group.append(Array(events[i..<(i + n)]))
                    i += n
                }
                if Int.random(in: 0..<4, using: &rng) == 0, let last = accepted.last {
                    // A second AppointmentRequested for an existing case: invalid_transition.
                    let bad = try TestEvents.event(id: "bad-\(i)", caseID: last.caseID, at: "2024-01-01T00:00:00Z")
                    group.insert([bad], at: Int.random(in: 0...group.count, using: &rng))
                }
                for (request, result) in zip(group, ledger.append(group)) {
                    switch result {
                    case .success: accepted += request
                    case .failure(let e):
                        #expect(e.code == .invalidTransition, "\(e)")
                        #expect(request.first?.id.hasPrefix("bad-") == true, "a valid request failed: \(e)")
                    }
                }
            }
            #expect(accepted.count == events.count)

            // Inline (stored) report == replay of the accepted events == replay of the stored log.
            let head = ledger.head
            var replay = Replay(window: ledger.window)
            for e in accepted { try replay.apply(e) }
            let fromEvents = try replay.report(position: head.position, headHash: head.hashHex)
            let inline = try ledger.report()
            #expect(inline == fromEvents)
            let fromLog = try ledger.replay().report
            #expect(fromLog == fromEvents)
            #expect(try ledger.compareProjections(with: replay, head: head) == nil)
            #expect(try ledger.verify().ok)

            // Rebuilding gives the same stored projections.
            try ledger.rebuildProjections()
            #expect(try ledger.report() == inline)

            // Consistency of the funnel (over a history that reaches every stage).
            let r = inline.json
            for s in Stage.allCases { #expect(stage(r, "funnel", s.name, "cases") > 0, "no case reached \(s.name)") }
            #expect(stage(r, "funnel", "eligible", "cases") + stage(r, "funnel", "ineligible", "cases") <= stage(r, "funnel", "requested", "cases"))
            #expect(stage(r, "funnel", "scheduled", "cases") <= stage(r, "funnel", "eligible", "cases"))
            #expect(stage(r, "funnel", "interviewed", "cases") <= stage(r, "funnel", "scheduled", "cases"))
            #expect(stage(r, "funnel", "missed", "cases") <= stage(r, "funnel", "scheduled", "cases"))
            #expect(stage(r, "funnel", "referred", "cases") <= stage(r, "funnel", "interviewed", "cases"))
            #expect(stage(r, "funnel", "approved", "cases") <= stage(r, "funnel", "referred", "cases"))
            #expect(stage(r, "funnel", "approved", "persons") + stage(r, "funnel", "denied", "persons") <= stage(r, "funnel", "referred", "persons"))
            #expect(stage(r, "funnel", "visa_issued", "persons") <= stage(r, "funnel", "approved", "persons"))
            #expect(stage(r, "funnel", "arrived", "persons") <= stage(r, "funnel", "visa_issued", "persons"))
            // Splits add up to the funnel.
            for s in Stage.allCases {
                for split in ["by_office_country", "by_nationality"] {
                    guard case .object(let keys)? = r[split] else { Issue.record("no \(split)"); continue }
                    let sum = keys.keys.reduce(Int64(0)) { $0 + stage(r, split, $1, s.name, "persons") }
                    #expect(sum == stage(r, "funnel", s.name, "persons"), "\(split) \(s.name)")
                }
            }
            for s in Stage.referralStages {
                guard case .object(let keys)? = r["by_pathway"] else { continue }
                let sum = keys.keys.reduce(Int64(0)) { $0 + stage(r, "by_pathway", $1, s.name, "persons") }
                #expect(sum == stage(r, "funnel", s.name, "persons"), "pathway \(s.name)")
            }
            // States add up to the cases; weekly plus outside add up to the events.
            guard case .object(let states)? = r["states"], case .array(let weekly)? = r["weekly"], case .object(let outside)? = r["outside_window"] else {
                Issue.record("missing sections"); return
            }
            let stateSum = states.members.reduce(Int64(0)) { if case .int(let n) = $1.value { $0 + n } else { $0 } }
            #expect(stateSum == stage(r, "funnel", "requested", "cases"))
            var eventSum = outside.members.reduce(Int64(0)) { if case .int(let n) = $1.value { $0 + n } else { $0 } }
            for row in weekly {
                guard case .object(let o) = row, case .object(let c)? = o["counts"] else { continue }
                eventSum += c.members.reduce(Int64(0)) { if case .int(let n) = $1.value { $0 + n } else { $0 } }
            }
            #expect(eventSum == Int64(accepted.count))

            // as_of cuts: replaying up to a cut equals applying just the events up to it.
            let cut = try #require(Timestamp(rfc3339: "2023-09-15T00:00:00Z"))
            var partial = Replay(window: ledger.window, asOf: cut)
            for e in accepted where e.at <= cut { try partial.apply(e) }
            #expect(try ledger.report(asOf: cut) == (try partial.report(position: head.position, headHash: head.hashHex)))
        }
    }
}
