import Foundation
import LedgerCore
@testable import LedgerStore
import LedgerTestSupport
import LMDBKit
import Testing

/// The `ids` index in runs keyed by the id's hash, the hash it records, and the upgrade of a
/// ledger of format 4 (ids keyed by their text) written by the previous release.
@Suite("The id index")
struct IDIndexTests {
    /// A ledger of `events`, checkpointed every 37 events, in a new directory; returns its path.
    static func ledger(_ events: [Event], in dir: TemporaryDirectory) throws -> String {
        let path = dir.file("data")
        let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: 37))
        CheckpointTests.appendAll(events, to: ledger, seed: 5)
        try ledger.checkpoint()
        return path
    }

    static func expectIDsFound(_ ledger: Ledger, _ events: [Event]) throws {
        let again = ledger.append([events])
        #expect(try again[0].get().allSatisfy(\.duplicate), "every id is found again")
        #expect(try again[0].get().map(\.position) == Array(1...UInt64(events.count)))
        let other = try TestEvents.event(id: events[5].id, caseID: "C-other", at: "2023-08-01T00:00:00Z")
        guard case .failure(let e) = ledger.append([[other]])[0] else {
            Issue.record("a conflicting id was accepted")
            return
        }
        #expect(e.code == .idConflict)
    }

    /// Ids in many runs, reopened (the filters are built again from the keys): every id is found.
    @Test(arguments: [false, true])
    func idsAreFoundAcrossRunsAndReopens(randomIDs: Bool) throws {
        let events = RandomHistory.events(seed: 30, cases: 100, randomIDs: randomIDs)
        let dir = TemporaryDirectory()
        let path = try Self.ledger(events, in: dir)
        let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: 37))
        try Self.expectIDsFound(ledger, events)
        #expect(try ledger.verify().ok)
    }

    @Test func verifyFindsAnIndexThatMissesAnID() throws {
        let events = RandomHistory.events(seed: 32, cases: 40, randomIDs: true)
        let dir = TemporaryDirectory()
        let path = try Self.ledger(events, in: dir)
        do {
            let env = try Environment(path: path)
            let ids = try env.openDatabase("ids", create: false)
            try env.write { txn in
                var first: [UInt8] = []
                try txn.scan(ids, from: nil) { key, _ in
                    first = Array(key)
                    return false
                }
                let position: [UInt8] = try txn.get(ids, key: first) ?? []
                let other: [UInt8] = position == [0, 0, 0, 0, 0, 0, 0, 1] ? [0, 0, 0, 0, 0, 0, 0, 2] : [0, 0, 0, 0, 0, 0, 0, 1]
                try txn.put(ids, key: first, value: other)
            }
        }
        let reader = try Ledger(directory: path, options: CheckpointTests.options(every: 37, readOnly: true))
        let verify = try reader.verify()
        #expect(!verify.ok)
        #expect(verify.problem?.message.contains("does not list position") == true, "\(String(describing: verify.problem))")
    }

    /// `meta.id_hash` names the hash of the `ids` keys and holds a check value: a ledger whose index
    /// was built with another function (or a program whose `keyHash` changed) is refused at open,
    /// before an id could be looked up under the wrong keys and appended twice.
    @Test(arguments: ["name", "check"])
    func anotherIDHashIsDetected(what: String) throws {
        let events = RandomHistory.events(seed: 33, cases: 10)
        let dir = TemporaryDirectory()
        let path = try Self.ledger(events, in: dir)
        do {
            let env = try Environment(path: path)
            let meta = try env.openDatabase("meta", create: false)
            try env.write { txn in
                var value = try #require(try txn.get(meta, key: Array("id_hash".utf8)))
                if what == "name" { value[value.count - 18] ^= 1 } else { value[value.count - 1] ^= 1 }
                try txn.put(meta, key: Array("id_hash".utf8), value: value)
            }
        }
        for readOnly in [false, true] {
            #expect {
                _ = try Ledger(directory: path, options: CheckpointTests.options(every: 37, readOnly: readOnly))
            } throws: { error in
                guard let e = error as? StoreError else { return false }
                return e.code == .wrongFormat && e.message.contains("another id hash") && e.message.contains(keyHashName)
            }
        }
    }

    /// Two ids of one run with the same hash: both positions are kept under the key, and each id is
    /// confirmed by its event. (Real collisions of 64 bits cannot be made on purpose; the index's
    /// parts are tested with a chosen hash.)
    @Test func positionsThatShareAHash() throws {
        var memtable = HashPositions(capacity: 4)
        for p in 1...40 as ClosedRange<UInt64> { memtable.insert(hash: p % 3 == 0 ? 7 : p &* 0x9E37_79B9, position: p) }
        var sevens: [UInt64] = []
        _ = memtable.first(hash: 7) { p -> Bool? in sevens.append(p); return nil }
        #expect(sevens.sorted() == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39])
        memtable.remove(hash: 7, position: 21)
        memtable.remove(hash: 7, position: 3)
        memtable.remove(hash: 1234, position: 1)  // absent: nothing happens
        sevens = []
        _ = memtable.first(hash: 7) { p -> Bool? in sevens.append(p); return nil }
        #expect(sevens.sorted() == [6, 9, 12, 15, 18, 24, 27, 30, 33, 36, 39])
        #expect(memtable.count == 38)
        for p in 1...40 as ClosedRange<UInt64> where p % 3 != 0 {
            #expect(memtable.first(hash: p &* 0x9E37_79B9) { $0 == p ? true : nil } == true, "position \(p) still found after removals")
        }
        let sorted = memtable.sorted
        #expect(sorted.count == 38 && zip(sorted, sorted.dropFirst()).allSatisfy { $0.hash < $1.hash || ($0.hash == $1.hash && $0.position < $1.position) })

        try withTemporaryLedger(options: CheckpointTests.options(every: 1000)) { ledger, _ in
            try ledger.environment.write { txn in
                try ledger.writeRun(start: 1, [(hash: 5, position: 1), (hash: 7, position: 2), (hash: 7, position: 9)], txn: txn)
            }
            let found = try ledger.environment.read { txn in
                try [7, 5, 6].map { try ledger.storedPositions(run: 1, hash: $0, txn: txn) }
            }
            #expect(found == [[2, 9], [1], []])
        }
    }

    /// A ledger of format 4 written by the previous release (`Tests/Fixtures/format4`: 775 events
    /// with UUIDv4 ids, imported by that release's ledgerd): refused by this program with the
    /// command to run, then upgraded with the old directory kept, to the same events, head hash and
    /// report, with every id found.
    @Test func upgradeFromFormat4() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/format4").path
        let dir = TemporaryDirectory()
        let path = dir.file("data")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let gunzip = Process()
        gunzip.executableURL = URL(fileURLWithPath: "/bin/sh")
        gunzip.arguments = ["-c", "gunzip -c '\(fixtures)/data.mdb.gz' > '\(path)/data.mdb'"]
        try gunzip.run()
        gunzip.waitUntilExit()
        #expect(gunzip.terminationStatus == 0)
        let expected = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: fixtures + "/report.json"))))
        let events = try String(contentsOfFile: fixtures + "/events.ndjson", encoding: .utf8)
            .split(separator: "\n").map { try Event.validate(json: Array($0.utf8)) }

        for readOnly in [false, true] {
            #expect {
                _ = try Ledger(directory: path, options: CheckpointTests.options(every: 37, readOnly: readOnly))
            } throws: { error in
                guard let e = error as? StoreError else { return false }
                return e.code == .wrongFormat && e.message.contains("ledgerctl upgrade --data-dir \(path)")
            }
        }
        #expect(try Ledger.storedFormat(directory: path) == 4)
        var stages: [String] = []
        let result = try Ledger.upgrade(directory: path) { what, _, _ in if stages.last != what { stages.append(what) } }
        #expect(result.events == 775)
        #expect(result.kept == path + ".format4")
        #expect(stages == ["copying events", "rebuilding the id index and the projections", "verifying"])
        #expect(try Ledger.storedFormat(directory: result.kept) == 4, "the old ledger is kept as it was")
        #expect(try Ledger.storedFormat(directory: path) == Ledger.currentFormat)

        let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: 37))
        #expect(ledger.head.hashHex == "2559fc47f3cc1f70d3f9e49c8840a74d733026c3eedc02828347154785754958")
        #expect(CanonicalJSON.encode(.object(try ledger.report().json)) == CanonicalJSON.encode(expected),
                "the report the previous release gave")
        try Self.expectIDsFound(ledger, events)
        #expect(try ledger.verify().ok)
        #expect(throws: StoreError.self) { _ = try Ledger.upgrade(directory: path) }
    }
}
