import Foundation
import LedgerCore
import LedgerStore
import LedgerTestSupport
import Testing

/// The stored projections follow the head by at most `checkpointEvents` (or `checkpointSeconds`);
/// the events after the checkpoint are applied in memory and again, from the log, by a new writer
/// or a reader.
@Suite("Checkpoints")
struct CheckpointTests {
    static func options(every n: Int, readOnly: Bool = false, seconds: Double = 3600) -> Ledger.Options {
        var o = Ledger.Options()
        o.checkpointEvents = n
        o.checkpointSeconds = seconds
        o.readOnly = readOnly
        o.create = !readOnly
        return o
    }

    /// Appends `events` in requests of 1 to 30 events, groups of 1 to 3, checkpointing when one is
    /// due (as the daemon's writer does between groups).
    static func appendAll(_ events: [Event], to ledger: Ledger, seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        var i = 0
        while i < events.count {
            var group: [[Event]] = []
            for _ in 0..<Int.random(in: 1...3, using: &rng) where i < events.count {
                let n = min(Int.random(in: 1...30, using: &rng), events.count - i)
                group.append(Array(events[i..<(i + n)]))
                i += n
            }
            for r in ledger.append(group) {
                if case .failure(let e) = r { Issue.record("a valid request failed: \(e)") }
            }
            if ledger.checkpointDue {
                do { try ledger.checkpoint() } catch { Issue.record("checkpoint: \(error)") }
            }
        }
    }

    @Test("reopened writers and readers see the head; duplicates and conflicts across checkpoints",
          arguments: [(1, "s"), (2, "s"), (4, "intake-system-2023-06-pilot/"), (7, ""), (8, "")] as [(UInt64, String)])
    func acrossCheckpoints(seed: UInt64, idPrefix: String) throws {
        // An empty prefix: ids shaped like UUIDv4s, in no order, so that each run of the `ids`
        // index (one per checkpoint) holds hashes all over the key space. Cases are read back from
        // `cases` after each checkpoint.
        let events = RandomHistory.events(seed: seed, cases: 120, idPrefix: idPrefix, randomIDs: idPrefix.isEmpty)
        let half = events.count / 2
        let dir = TemporaryDirectory()
        let path = dir.file("data")
        var expected: Report
        do {
            let ledger = try Ledger(directory: path, options: Self.options(every: 37))
            Self.appendAll(Array(events[..<half]), to: ledger, seed: seed)
            expected = try ledger.report()
            let stored = ledger.status().projectionsPosition
            #expect(stored >= 37 && stored <= UInt64(half), "stored projections at \(stored) of \(half)")
            #expect(UInt64(half) - stored < 37 + 90, "at most an interval and a group behind")
            // Dropped without a final checkpoint, as after a crash.
        }
        do {
            let reader = try Ledger(directory: path, options: Self.options(every: 37, readOnly: true))
            #expect(try reader.report() == expected, "a reader applies the events after the checkpoint")
            let verify = try reader.verify()
            #expect(verify.ok, "\(String(describing: verify.problem))")
        }
        do {
            let ledger = try Ledger(directory: path, options: Self.options(every: 37))
            #expect(try ledger.report() == expected, "a new writer applies the events after the checkpoint")
            Self.appendAll(Array(events[half...]), to: ledger, seed: seed + 100)

            // Every event again, in one request: all duplicates, at their first positions.
            let again = ledger.append([events])
            guard case .success(let results) = again[0] else { Issue.record("re-append failed: \(again)"); return }
            #expect(results.allSatisfy { $0.duplicate })
            #expect(results.map(\.position) == Array(1...UInt64(events.count)))

            // The same ids with other content: id_conflict, for an old event and for a recent one.
            for original in [events[0], events[events.count - 1]] {
                let other = try TestEvents.event(id: original.id, caseID: "C-other", at: "2023-08-01T00:00:00Z")
                let r = ledger.append([[other]])
                guard case .failure(let e) = r[0] else { Issue.record("a conflicting id was accepted"); continue }
                #expect(e.code == .idConflict)
            }

            var replay = Replay(window: ledger.window)
            for e in events { try replay.apply(e) }
            let head = ledger.head
            #expect(head.position == UInt64(events.count))
            #expect(try ledger.report() == replay.report(position: head.position, headHash: head.hashHex))
            #expect(try ledger.compareProjections(with: replay, head: head) == nil)
            #expect(try ledger.verify().ok)

            // A rebuild and a final checkpoint change nothing that can be seen.
            let before = try ledger.projections()
            try ledger.rebuildProjections()
            #expect(try ledger.projections() == before)
            try ledger.checkpoint()
            #expect(ledger.status().projectionsPosition == head.position)
            #expect(try ledger.projections() == before)
            expected = try ledger.report()
        }
        let reader = try Ledger(directory: path, options: Self.options(every: 37, readOnly: true))
        #expect(try reader.report() == expected)
        #expect(try reader.verify().ok)
        // A case's events, found from its latest one back, are its events in log order.
        var byCase: [String: [UInt64]] = [:]
        for (k, e) in events.enumerated() { byCase[e.caseID, default: []].append(UInt64(k + 1)) }
        for caseID in [events[0].caseID, events[events.count / 2].caseID, events[events.count - 1].caseID] {
            let history = try reader.caseHistory(caseID)
            #expect(history.version == UInt64(byCase[caseID]!.count))
            #expect(history.events.map(\.position) == byCase[caseID]!)
            #expect(history.events.allSatisfy { s in events[Int(s.position) - 1].canonical.elementsEqual(s.event) })
        }
    }

    @Test func aFailedRequestLeavesNoTraceInMemory() throws {
        try withTemporaryLedger(options: Self.options(every: 5)) { ledger, _ in
            let first = try TestEvents.event(id: "a1", caseID: "C-1", at: "2023-07-01T00:00:00Z")
            #expect(throws: Never.self) { try ledger.append([[first]])[0].get() }
            // A request whose second event fails: its first event (a new case) must not remain.
            let newCase = try TestEvents.event(id: "b1", caseID: "C-2", at: "2023-07-01T00:00:00Z")
            let bad = try TestEvents.event(id: "a2", caseID: "C-1", at: "2023-07-02T00:00:00Z")
            let r = ledger.append([[newCase, bad]])
            guard case .failure(let e) = r[0] else { Issue.record("accepted a second AppointmentRequested"); return }
            #expect(e.code == .invalidTransition && e.index == 1)
            #expect(try ledger.caseHistory("C-2").state == nil)
            // Its ids are free again.
            let retry = ledger.append([[newCase]])
            #expect(try retry[0].get() == [AppendResult(position: 2, duplicate: false)])
            #expect(try ledger.verify().ok)
        }
    }

    /// Duplicates of events earlier in the same group, in the same request, and of events that a
    /// checkpoint just took out of memory.
    @Test func duplicatesWithinAGroupAndAcrossACheckpoint() throws {
        let events = RandomHistory.events(seed: 9, cases: 20)
        try withTemporaryLedger(options: Self.options(every: 5)) { ledger, _ in
            let r1 = ledger.append([Array(events[0..<8])])
            #expect(try r1[0].get().map(\.position) == Array(1...8))
            try ledger.checkpoint()
            let r2 = ledger.append([[events[2], events[8]], [events[8]], [events[9], events[9]]])
            #expect(try r2[0].get() == [AppendResult(position: 3, duplicate: true), AppendResult(position: 9, duplicate: false)])
            #expect(try r2[1].get() == [AppendResult(position: 9, duplicate: true)])
            #expect(try r2[2].get() == [AppendResult(position: 10, duplicate: false), AppendResult(position: 10, duplicate: true)])
            #expect(ledger.status().projectionsPosition == 8)
            #expect(ledger.head.position == 10)
            #expect(try ledger.verify().ok)
        }
    }

    /// A rebuild from position 0 applies the events as ingestion did, checkpointing every
    /// `checkpointEvents` on the way (so its memory is bounded), and gives the same projections.
    @Test func aRebuildCheckpointsOnTheWay() throws {
        let events = RandomHistory.events(seed: 12, cases: 150, randomIDs: true)
        try withTemporaryLedger(options: Self.options(every: 1_000_000)) { ledger, dir in
            Self.appendAll(events, to: ledger, seed: 12)
            try ledger.checkpoint()
            let before = try ledger.projections()
            // Another ledger with small intervals, the same events: rebuilt, then compared.
            let other = try Ledger(directory: dir.file("other"), options: Self.options(every: 23))
            Self.appendAll(events, to: other, seed: 13)
            var applied: [UInt64] = []
            try other.rebuildProjections { done, _ in applied.append(done) }
            #expect(applied.last == UInt64(events.count))
            let after = try other.projections()
            #expect(after.counters == before.counters)
            #expect(after.cases == before.cases)
            #expect(after.durations == before.durations)
            #expect(other.status().projectionsPosition == UInt64(events.count))
            #expect(try other.verify().ok)
        }
    }

    /// When appends stop, the stored projections reach the head within `checkpointSeconds`: the
    /// daemon's writer checkpoints when `checkpointDue` says so.
    @Test func projectionsReachTheHeadWhenIdle() throws {
        let events = RandomHistory.events(seed: 14, cases: 30)
        try withTemporaryLedger(options: Self.options(every: 1_000_000, seconds: 0.3)) { ledger, _ in
            _ = try ledger.append([Array(events[0..<10])])[0].get()
            #expect(!ledger.checkpointDue, "neither interval has passed")
            #expect(ledger.status().projectionsPosition == 0)
            Thread.sleep(forTimeInterval: 0.35)
            #expect(ledger.checkpointDue)
            try ledger.checkpoint()
            #expect(ledger.status().projectionsPosition == 10)
            #expect(!ledger.checkpointDue, "nothing after the stored projections")
        }
    }

    /// Retries of events already checkpointed, and requests rejected, leave no id in the writer's
    /// memory: only an appended event takes a slot until the next checkpoint.
    @Test func retriesAndRejectionsTakeNoMemory() throws {
        let events = RandomHistory.events(seed: 22, cases: 60)
        let dir = TemporaryDirectory()
        let ledger = try Ledger(directory: dir.file("data"), options: Self.options(every: 50))
        Self.appendAll(events, to: ledger, seed: 22)
        let before = ledger.status().idsInMemory
        #expect(before < 80, "\(before) ids after the last checkpoint")
        for start in stride(from: 0, to: events.count, by: 10) {
            let again = try ledger.append([Array(events[start..<min(start + 10, events.count)])])[0].get()
            #expect(again.allSatisfy { $0.duplicate })
        }
        for k in 0..<200 {  // new ids, each in a request the case machine rejects (no such case)
            let e = try TestEvents.event(id: "rejected-\(k)", type: "CaseWithdrawn", caseID: "C-none-\(k)", at: "2023-09-01T00:00:00Z",
                                          data: #"{"reason":"left_country"}"#)
            guard case .failure = ledger.append([[e]])[0] else {
                Issue.record("an event of a case never requested was accepted")
                return
            }
        }
        #expect(ledger.status().idsInMemory == before)
        #expect(ledger.head.position == UInt64(events.count))
    }

    /// Reads see every committed append at once, from the snapshot the commit published, while the
    /// stored projections lag: a case changed after the checkpoint is found through the snapshot,
    /// one not changed through `cases`.
    @Test func readsSeeCommittedAppendsBeforeTheCheckpoint() throws {
        let events = RandomHistory.events(seed: 23, cases: 40)
        try withTemporaryLedger(options: Self.options(every: 1_000_000)) { ledger, _ in
            let cut = events.count / 2
            _ = try ledger.append([Array(events[..<cut])])[0].get()
            try ledger.checkpoint()
            for (k, e) in events[cut...].enumerated() {
                _ = try ledger.append([[e]])[0].get()
                let history = try ledger.caseHistory(e.caseID)
                #expect(history.events.last?.position == UInt64(cut + k + 1))
                #expect(ledger.status().head.position == UInt64(cut + k + 1))
            }
            #expect(ledger.status().projectionsPosition == UInt64(cut))
            var replay = Replay(window: .pilot)
            for e in events { try replay.apply(e) }
            #expect(try ledger.report() == replay.report(position: ledger.head.position, headHash: ledger.head.hashHex))
            let untouched = events[..<cut].map(\.caseID).first { id in !events[cut...].contains { $0.caseID == id } }
            if let untouched {
                #expect(try ledger.caseHistory(untouched).events.count == events[..<cut].count { $0.caseID == untouched })
            }
        }
    }
}
