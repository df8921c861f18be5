import LedgerCore
import LedgerStore
import LedgerTestSupport
import Testing

/// The stored projections lag the head by at most `checkpointEvents`; the events after the
/// checkpoint live in memory and are replayed from the log by a new writer or a reader.
@Suite("Checkpoints")
struct CheckpointTests {
    static func options(every n: Int, readOnly: Bool = false, chunkKeys: Int = 16_384,
                        cacheEntries: Int = 262_144) -> Ledger.Options {
        var o = Ledger.Options()
        o.caseCacheEntries = cacheEntries
        o.checkpointEvents = n
        o.readOnly = readOnly
        o.checkpointChunkKeys = chunkKeys
        return o
    }

    /// Appends `events` in requests of 1 to 30 events, groups of 1 to 3.
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
        }
    }

    @Test("reopened writers and readers see the head; duplicates and conflicts across the checkpoint",
          arguments: [(1, "s", 16_384, 262_144), (2, "s", 16_384, 0), (3, "s", 16_384, 40),
                      (4, "intake-system-2023-06-pilot/", 16_384, 262_144), (5, "s", 4, 262_144), (6, "s", 7, 40),
                      (7, "", 16_384, 262_144), (8, "", 5, 40)]
            as [(UInt64, String, Int, Int)])
    func acrossCheckpoints(seed: UInt64, idPrefix: String, chunkKeys: Int, cacheEntries: Int) throws {
        // An empty prefix: ids shaped like UUIDv4s, in no order, so that each run of the `ids`
        // index (one per checkpoint) holds ids all over the key space.
        // The last case: ids that share their first 27 bytes, some a prefix of others (`…/4-1`,
        // `…/4-10`), so a checkpoint's key sort decides by the bytes after the first 16. The last
        // two: checkpoints written in chunks of 4 and 7 cases and ids, with the groups after them.
        // A case cache of 0 or 40 entries beyond the last two intervals: cases read back from disk,
        // and from older checkpoints' tables.
        let events = RandomHistory.events(seed: seed, cases: 120, idPrefix: idPrefix, randomIDs: idPrefix.isEmpty)
        let half = events.count / 2
        let dir = TemporaryDirectory()
        let path = dir.file("data")
        var expected: JSONObject
        do {
            let ledger = try Ledger(directory: path, options: Self.options(every: 37, chunkKeys: chunkKeys, cacheEntries: cacheEntries))
            Self.appendAll(Array(events[..<half]), to: ledger, seed: seed)
            expected = try ledger.report()
            let checkpoint = try ledger.checkpointPosition()
            #expect(checkpoint >= 37 && checkpoint <= UInt64(half), "checkpoint at \(checkpoint) of \(half)")
            // Dropped without a final checkpoint, as after a crash.
        }
        do {
            let reader = try Ledger(directory: path, options: Self.options(every: 37, readOnly: true, chunkKeys: chunkKeys))
            #expect(try reader.report() == expected, "a reader replays the events after the checkpoint")
            let verify = try reader.verify()
            #expect(verify.ok, "\(String(describing: verify.problem))")
        }
        do {
            let ledger = try Ledger(directory: path, options: Self.options(every: 37, chunkKeys: chunkKeys, cacheEntries: cacheEntries))
            #expect(try ledger.report() == expected, "a new writer replays the events after the checkpoint")
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
            let head = try ledger.head()
            #expect(head.position == UInt64(events.count))
            #expect(try ledger.report() == replay.report(position: head.position, headHash: head.hashHex))
            #expect(try ledger.compareProjections(with: replay, head: head) == nil)
            #expect(try ledger.verify().ok)

            // A rebuild and a final checkpoint change nothing that can be seen.
            let before = try ledger.currentProjections()
            try ledger.rebuildProjections()
            #expect(try ledger.currentProjections() == before)
            try ledger.checkpoint()
            #expect(try ledger.checkpointPosition() == head.position)
            #expect(try ledger.currentProjections() == before)
            expected = try ledger.report()
        }
        let reader = try Ledger(directory: path, options: Self.options(every: 37, readOnly: true, chunkKeys: chunkKeys))
        #expect(try reader.report() == expected)
        #expect(try reader.verify().ok)
        // A case's events, found from its latest one back, are its events in log order.
        var byCase: [String: [UInt64]] = [:]
        for (k, e) in events.enumerated() { byCase[e.caseID, default: []].append(UInt64(k + 1)) }
        for caseID in [events[0].caseID, events[events.count / 2].caseID, events[events.count - 1].caseID] {
            let (state, stored) = try reader.caseHistory(caseID)
            #expect(state?.version == UInt64(byCase[caseID]!.count))
            #expect(stored.map(\.position) == byCase[caseID]!)
            #expect(stored.allSatisfy { s in events[Int(s.position) - 1].canonical.elementsEqual(s.event) })
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

    /// The daemon sequences a group while the one before is being written: a duplicate of an event
    /// that is neither stored yet nor in the overlay any more (a checkpoint took its id) must still
    /// be found.
    @Test func sequencedAheadOfTheCommit() throws {
        let events = RandomHistory.events(seed: 9, cases: 20)
        try withTemporaryLedger(options: Self.options(every: 5)) { ledger, _ in
            let first = ledger.sequence([Array(events[0..<8])])  // crosses the checkpoint at 8
            let second = ledger.sequence([[events[2], events[8]]])  // events[2] again, then a new one
            let third = ledger.sequence([[events[2]], [events[8]]])
            let r1 = ledger.commit(first)
            let r2 = ledger.commit(second)
            let r3 = ledger.commit(third)
            let positions = try r1[0].get().map { $0.position }
            #expect(positions == Array(1...8))
            #expect(try r2[0].get() == [AppendResult(position: 3, duplicate: true), AppendResult(position: 9, duplicate: false)])
            #expect(try r3[0].get() == [AppendResult(position: 3, duplicate: true)])
            #expect(try r3[1].get() == [AppendResult(position: 9, duplicate: true)])
            #expect(try ledger.checkpointPosition() == 8)
            #expect(try ledger.head().position == 9)
            #expect(try ledger.verify().ok)
        }
    }

    /// A checkpoint written in chunks with the appends after it, and the writer gone (as after a
    /// crash) with only some chunks stored: readers and the next writer skip what the stored chunks
    /// already hold, and count the rest once.
    @Test("a crash in the middle of a checkpoint written in chunks", arguments: [11, 12, 13, 14] as [UInt64])
    func crashInTheMiddleOfAChunkedCheckpoint(seed: UInt64) throws {
        // Seed 13 with random ids: the run of `ids` half written is written again, not twice.
        // Seed 14: gone right after the first chunk, which stores the samples and no case or id
        // (half-way through the history, where intervals have samples).
        let events = RandomHistory.events(seed: seed, cases: 150, randomIDs: seed == 13)
        let dir = TemporaryDirectory()
        let path = dir.file("data")
        let options = Self.options(every: 60, chunkKeys: 3)
        var sent = 0
        var pendingSeen = 0
        do {
            let ledger = try Ledger(directory: path, options: options)
            // One request of 3 events per group: a checkpoint of 60 events takes about 20 groups.
            var stopAfterPending = 4 + Int(seed % 3)
            var lastPending: UInt64?
            while sent < events.count {
                let n = min(3, events.count - sent)
                _ = try ledger.append([Array(events[sent..<(sent + n)])])[0].get()
                sent += n
                if let pending = try ledger.checkpointInProgress() {
                    pendingSeen += 1
                    stopAfterPending -= 1
                    let firstChunkOnly = pending != lastPending
                    lastPending = pending
                    if seed == 14 ? firstChunkOnly && sent > events.count / 2 : stopAfterPending <= 0 && sent > 200 { break }
                }
            }
            #expect(try ledger.checkpointInProgress() != nil, "the writer stops with a checkpoint half written")
            // Dropped here, as after a crash: the chunks not written yet are lost with it.
        }
        #expect(pendingSeen > 0)
        var replay = Replay(window: .pilot)
        for e in events[..<sent] { try replay.apply(e) }
        let expectedReport: JSONObject
        do {
            let reader = try Ledger(directory: path, options: Self.options(every: 60, readOnly: true))
            #expect(try reader.checkpointInProgress() != nil)
            expectedReport = try replay.report(position: UInt64(sent), headHash: try reader.head().hashHex)
            #expect(try reader.report() == expectedReport, "a reader skips what the stored chunks hold")
            #expect(try reader.compareProjections(with: replay, head: try reader.head()) == nil)
            let verify = try reader.verify()
            #expect(verify.ok, "\(String(describing: verify.problem))")
        }
        do {
            let ledger = try Ledger(directory: path, options: options)
            #expect(try ledger.report() == expectedReport, "a new writer skips what the stored chunks hold")
            // Every event again: all duplicates at their positions; then the rest, through more
            // chunked checkpoints.
            let again = ledger.append([Array(events[..<sent])])
            #expect(try again[0].get().allSatisfy(\.duplicate))
            var i = sent
            while i < events.count {
                let n = min(5, events.count - i)
                _ = try ledger.append([Array(events[i..<(i + n)])])[0].get()
                i += n
            }
            var all = Replay(window: .pilot)
            for e in events { try all.apply(e) }
            let head = try ledger.head()
            let differs = try ledger.compareProjections(with: all, head: head)
            #expect(differs == nil, "\(differs ?? "")")
            let verify = try ledger.verify()
            #expect(verify.ok, "\(String(describing: verify.problem))")
            try ledger.checkpoint()
            #expect(try ledger.checkpointInProgress() == nil)
            #expect(try ledger.checkpointPosition() == head.position)
            let after = try ledger.compareProjections(with: all, head: head)
            #expect(after == nil, "\(after ?? "")")
        }
    }

    /// Checkpoints whose chunks (one key each) are far more than the groups of an interval: each
    /// checkpoint is planned in fewer, larger chunks (about half the groups an interval takes at
    /// the pace so far), and one that falls behind because the groups grew (the last case: 2
    /// events a request, then 60) writes half its chunks left with each group, so the events held
    /// in memory stay near `checkpointEvents` instead of growing with every checkpoint.
    @Test("a checkpoint keeps pace with the groups whatever checkpoint_chunk_keys is",
          arguments: [(20, 20), (60, 60), (2, 60)] as [(Int, Int)])
    func checkpointKeepsPace(firstRequests: Int, requestEvents: Int) throws {
        let events = RandomHistory.events(seed: 21, cases: 400)
        let dir = TemporaryDirectory()
        let ledger = try Ledger(directory: dir.file("data"), options: Self.options(every: 200, chunkKeys: 1))
        var sent = 0
        var worst: UInt64 = 0
        var checkpoints = Set<UInt64>()
        while sent < events.count {
            let n = min(sent < 600 ? firstRequests : requestEvents, events.count - sent)
            _ = try ledger.append([Array(events[sent..<(sent + n)])])[0].get()
            sent += n
            worst = max(worst, ledger.eventsSinceCheckpoint)
            checkpoints.insert(try ledger.checkpointPosition())
        }
        #expect(checkpoints.count >= events.count / 200 - 1, "\(checkpoints.count) checkpoints of \(events.count) events")
        // The next checkpoint is planned at 200 events, and a plan takes about half as many again
        // (with one key a chunk, each took more groups than the last: 2,158 events behind at the
        // end). When the groups grow, a few groups more (without the halving: 1,758).
        let groups: UInt64 = firstRequests == requestEvents ? 2 : 8
        #expect(worst <= 200 + 200 + groups * UInt64(requestEvents), "\(worst) events after the checkpoint")
        var replay = Replay(window: .pilot)
        for e in events { try replay.apply(e) }
        let differs = try ledger.compareProjections(with: replay, head: try ledger.head())
        #expect(differs == nil, "\(differs ?? "")")
        #expect(try ledger.verify().ok)
    }

    /// Retries of events already checkpointed, and requests rejected, leave no id in the writer's
    /// memory: only an appended event takes a slot until the next checkpoint. (Each used to take
    /// one: a 4M-event log sent again grew the daemon by 160 MiB.)
    @Test func retriesAndRejectionsTakeNoMemory() throws {
        let events = RandomHistory.events(seed: 22, cases: 60)
        let dir = TemporaryDirectory()
        let ledger = try Ledger(directory: dir.file("data"), options: Self.options(every: 50))
        for start in stride(from: 0, to: events.count, by: 10) {
            _ = try ledger.append([Array(events[start..<min(start + 10, events.count)])])[0].get()
        }
        let before = ledger.writerIDsInMemory
        #expect(before < 60, "\(before) ids after the last checkpoint")
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
        #expect(ledger.writerIDsInMemory == before)
        #expect(try ledger.head().position == UInt64(events.count))
    }
}
