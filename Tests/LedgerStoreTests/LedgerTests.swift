import Crypto
import Foundation
import LedgerCore
@testable import LedgerStore
import LedgerTestSupport
import LMDBKit
import Testing

@Suite("The event log")
struct LedgerTests {
    @Test func positionsStartAtOneWithoutGaps() throws {
        try withTemporaryLedger { ledger, _ in
            let r1 = ledger.append([try TestEvents.requested(3, prefix: "a")])
            let r2 = ledger.append([try TestEvents.requested(2, prefix: "b")])
            #expect(try r1[0].get().map(\.position) == [1, 2, 3])
            #expect(try r2[0].get().map(\.position) == [4, 5])
            #expect(ledger.head.position == 5)
            #expect(try ledger.read(from: 1, limit: 100).map(\.position) == [1, 2, 3, 4, 5])
            #expect(try ledger.read(from: 4, limit: 1).map(\.position) == [4])
        }
    }

    @Test func batchIsAtomic() throws {
        try withTemporaryLedger { ledger, _ in
            _ = ledger.append([[try TestEvents.event(id: "x", caseID: "C-x")]])
            let before = ledger.head
            // The third event conflicts with "x": none of the request may be stored.
            let request = [try TestEvents.event(id: "n1", caseID: "C-n1"),
                           try TestEvents.event(id: "n2", caseID: "C-n2"),
                           try TestEvents.event(id: "x", caseID: "C-other")]
            let result = ledger.append([request])
            guard case .failure(let error) = result[0] else { Issue.record("expected a failure"); return }
            #expect(error.code == .idConflict)
            #expect(error.index == 2)
            #expect(ledger.head == before)
            #expect(try ledger.read(from: 1, limit: 10).count == 1)
            #expect(try ledger.caseHistory("C-n1").version == 0)
            // n1 was not indexed: appending it now gives a new position, not a duplicate.
            let again = ledger.append([[try TestEvents.event(id: "n1", caseID: "C-n1")]])
            #expect(try again[0].get() == [AppendResult(position: 2, duplicate: false)])
            #expect(try ledger.verify().ok)
        }
    }

    @Test func duplicatesAndConflicts() throws {
        try withTemporaryLedger { ledger, _ in
            let e = try TestEvents.event(id: "d1", caseID: "C-d")
            #expect(try ledger.append([[e]])[0].get() == [AppendResult(position: 1, duplicate: false)])
            // The same event again, also written with another time zone: identical after normalising.
            let same = try TestEvents.event(id: "d1", caseID: "C-d", at: "2023-07-03T10:05:00-04:00")
            #expect(try ledger.append([[same]])[0].get() == [AppendResult(position: 1, duplicate: true)])
            // A duplicate inside one request, after a new event.
            let pair = [try TestEvents.event(id: "d2", caseID: "C-d2"), e]
            #expect(try ledger.append([pair])[0].get() == [AppendResult(position: 2, duplicate: false),
                                                            AppendResult(position: 1, duplicate: true)])
            // The same id twice inside one request.
            let twice = [try TestEvents.event(id: "d3", caseID: "C-d3"), try TestEvents.event(id: "d3", caseID: "C-d3")]
            #expect(try ledger.append([twice])[0].get() == [AppendResult(position: 3, duplicate: false),
                                                             AppendResult(position: 3, duplicate: true)])
            let other = try TestEvents.event(id: "d1", caseID: "C-d", at: "2023-07-04T14:05:00Z")
            guard case .failure(let error) = ledger.append([[other]])[0] else { Issue.record("expected id_conflict"); return }
            #expect(error.code == .idConflict)
            #expect(error.message.contains("position 1"))
            #expect(ledger.head.position == 3)
        }
    }

    @Test func expectedVersion() throws {
        try withTemporaryLedger { ledger, _ in
            let first = try TestEvents.event(id: "v1", caseID: "C-v", expectedVersion: 0)
            #expect(try ledger.append([[first]])[0].get().count == 1)
            let wrong = try TestEvents.event(id: "v2", type: "CaseClosed", caseID: "C-v", expectedVersion: 0,
                                             data: #"{"reason":"duplicate"}"#)
            guard case .failure(let error) = ledger.append([[wrong]])[0] else { Issue.record("expected version_conflict"); return }
            #expect(error.code == .versionConflict)
            #expect(error.index == 0)
            let right = try TestEvents.event(id: "v2", type: "CaseClosed", caseID: "C-v", expectedVersion: 1,
                                             data: #"{"reason":"duplicate"}"#)
            #expect(try ledger.append([[right]])[0].get() == [AppendResult(position: 2, duplicate: false)])
            #expect(try ledger.caseHistory("C-v").version == 2)
        }
    }

    @Test func groupCommitIsolatesFailures() throws {
        try withTemporaryLedger { ledger, _ in
            _ = ledger.append([[try TestEvents.event(id: "g0", caseID: "C-g0")]])
            let ok1 = [try TestEvents.event(id: "g1", caseID: "C-g1")]
            let bad = [try TestEvents.event(id: "g2", caseID: "C-g2"), try TestEvents.event(id: "g0", caseID: "C-zz")]
            let ok2 = [try TestEvents.event(id: "g3", caseID: "C-g3"), try TestEvents.event(id: "g4", caseID: "C-g4")]
            let results = ledger.append([ok1, bad, ok2])
            #expect(try results[0].get().map(\.position) == [2])
            guard case .failure(let e) = results[1] else { Issue.record("expected a failure"); return }
            #expect(e.code == .idConflict && e.index == 1)
            #expect(try results[2].get().map(\.position) == [3, 4])
            #expect(ledger.head.position == 4)
            #expect(try ledger.caseHistory("C-g2").version == 0)
            #expect(try ledger.verify().ok)
        }
    }

    @Test func headSurvivesReopen() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("data")
        var head: Head
        do {
            let ledger = try Ledger(directory: path, options: .creating)
            _ = ledger.append([try TestEvents.requested(10)])
            head = ledger.head
        }
        do {
            let ledger = try Ledger(directory: path, options: .creating)
            #expect(ledger.head == head)
            let r = ledger.append([try TestEvents.requested(1, prefix: "after")])
            #expect(try r[0].get().map(\.position) == [11])
            head = ledger.head
        }
        let reopened = try Ledger(directory: path, options: .creating)
        #expect(try reopened.head == head)
        #expect(try reopened.verify().ok)
    }

    @Test("the hash chain, recomputed independently")
    func hashChainIndependently() throws {
        try withTemporaryLedger { ledger, _ in
            _ = ledger.append([try TestEvents.requested(20)])
            var prev = [UInt8](repeating: 0, count: 32)
            for stored in try ledger.read(from: 1, limit: 100) {
                // Parse R with Foundation and rebuild C_N with Foundation's sorted keys, not our writer.
                let r = try JSONSerialization.jsonObject(with: Data(stored.record)) as! [String: Any]
                #expect(r["position"] as? Int == Int(stored.position))
                let c: [String: Any] = ["position": r["position"]!, "recorded_at": r["recorded_at"]!, "event": r["event"]!]
                let cBytes = try JSONSerialization.data(withJSONObject: c, options: [.sortedKeys, .withoutEscapingSlashes])
                var sha = SHA256()
                sha.update(data: prev)
                sha.update(data: cBytes)
                let hash = Array(sha.finalize())
                #expect(r["hash"] as? String == hashHex(hash))
                prev = hash
            }
            #expect(ledger.head.hash == prev)
        }
    }

    func hashHex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    @Test func mapGrowsWhenFull() throws {
        var options = Ledger.Options()
        options.initialMapSize = 256 * 1024
        try withTemporaryLedger(options: options) { ledger, _ in
            for k in 0..<10 {
                let r = ledger.append([try TestEvents.requested(500, prefix: "m\(k)")])
                #expect(try r[0].get().count == 500)
            }
            #expect(ledger.head.position == 5000)
            #expect(ledger.status().mapSize > 256 * 1024)
            #expect(try ledger.verify().ok)
        }
    }

    @Test func fullMapAtItsMaximumIsUnavailable() throws {
        var options = Ledger.Options()
        options.initialMapSize = 256 * 1024
        options.maxMapSize = 256 * 1024
        try withTemporaryLedger(options: options) { ledger, _ in
            var last = Head.empty
            var sawUnavailable = false
            for k in 0..<50 {
                let r = ledger.append([try TestEvents.requested(200, prefix: "f\(k)")])
                switch r[0] {
                case .success: last = ledger.head
                case .failure(let e):
                    #expect(e.code == .unavailable)
                    #expect(e.message.contains("map"))
                    sawUnavailable = true
                }
                if sawUnavailable { break }
            }
            #expect(sawUnavailable)
            #expect(ledger.head == last)
            #expect(last.position % 200 == 0)  // never half a batch
            let v = try ledger.verify()
            #expect(v.ok, "\(String(describing: v.problem))")
        }
    }

    /// When a write fails (the map full at its maximum), every request of the group that validated
    /// gets `unavailable`, the in-memory state is loaded again from what is stored, and what follows
    /// works on the stored state.
    @Test func aFailedWriteLeavesTheStateAsStored() throws {
        var options = Ledger.Options()
        options.create = true
        options.initialMapSize = 256 * 1024
        options.maxMapSize = 256 * 1024
        try withTemporaryLedger(options: options) { ledger, _ in
            var failedAt: Int?
            for k in 0..<50 {
                let r = ledger.append([try TestEvents.requested(200, prefix: "a\(k)"), try TestEvents.requested(50, prefix: "b\(k)")])
                if case .failure(let e) = r[0] {
                    #expect(e.code == .unavailable)
                    guard case .failure(let e2) = r[1] else { Issue.record("half a group was stored"); return }
                    #expect(e2.code == .unavailable)
                    failedAt = k
                    break
                }
            }
            #expect(failedAt != nil)
            let head = ledger.head
            #expect(head.position % 250 == 0)  // whole groups only
            // The state was loaded again: the report in memory is the log's.
            #expect(try ledger.report() == ledger.replay().report)
            #expect(try ledger.verify().ok)
            // A duplicate of a stored event is still recognised, and a new case of the failed
            // group is new again.
            let again = ledger.append([try TestEvents.requested(1, prefix: "a0")])
            #expect(try again[0].get().first?.duplicate == true)
            #expect(try ledger.caseHistory("C-a\(failedAt!)-0").state == nil)
        }
    }
    /// When reading the stored state fails half-way through a group (here a damaged case record),
    /// the group fails whole, the groups sequenced before it and not committed yet fail with
    /// `unavailable`, and the next group is sequenced on the state as stored.
    @Test func aFailedReadLeavesTheStateAsStored() throws {
        var options = Ledger.Options()
        options.create = true
        try withTemporaryLedger(options: options) { ledger, _ in
            _ = try ledger.append([[TestEvents.event(id: "x-0", caseID: "C-x")]])[0].get()
            try ledger.checkpoint()
            try ledger.environment.write { txn in
                try txn.put(ledger.layout.cases, key: Array("C-x".utf8), value: [0xFF, 0xFF, 0xFF])
            }
            let before = ledger.sequence([try TestEvents.requested(1, prefix: "a")])
            let failing = ledger.sequence([try TestEvents.requested(1, prefix: "b"),
                                           [try TestEvents.event(id: "x-1", caseID: "C-x")]])
            for r in failing.validated {
                guard case .failure(let e) = r else { Issue.record("a group that could not be read was accepted"); return }
                #expect(e.message.contains("C-x"), "\(e.message)")
            }
            let after = ledger.sequence([try TestEvents.requested(1, prefix: "b")])
            guard case .failure(let e) = ledger.commit(before)[0] else { Issue.record("a group of a stale state was stored"); return }
            #expect(e.code == .unavailable)
            _ = ledger.commit(failing)
            let stored = try ledger.commit(after)[0].get()
            #expect(stored.map(\.position) == [2] && stored.allSatisfy { !$0.duplicate })
            #expect(ledger.head.position == 2)
            #expect(try ledger.append([TestEvents.requested(1, prefix: "a")])[0].get().first?.position == 3)
        }
    }
}
