import LedgerCore
import LedgerStore
import LedgerTestSupport
import LMDBKit
import Testing

/// The `ids` index in runs (format 3): the upgrade from format 2, and what `verify` checks.
@Suite("The id index")
struct IDIndexTests {
    /// The key of the filter of all ids in `filters` (the runs' are their starts).
    static let allKey = [UInt8](repeating: 0, count: 8)

    /// A ledger of `events`, checkpointed, in a new directory; returns its path and report.
    static func ledger(_ events: [Event], in dir: TemporaryDirectory) throws -> (String, JSONObject) {
        let path = dir.file("data")
        let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: 37, chunkKeys: 9))
        CheckpointTests.appendAll(events, to: ledger, seed: 5)
        try ledger.checkpoint()
        return (path, try ledger.report())
    }

    /// Rewrites the ledger at `path` as format 2 wrote it: the ids index keyed by the id alone.
    static func downgradeToFormat2(_ path: String) throws {
        let env = try Environment(path: path)
        let meta = try env.openDatabase("meta", create: false)
        let ids = try env.openDatabase("ids", create: false)
        try env.write { txn in
            var entries: [([UInt8], [UInt8])] = []
            try txn.scan(ids, from: nil) { key, value in
                entries.append((Array(key[8...]), Array(value)))
                return true
            }
            try txn.clear(ids)
            for (k, v) in entries { try txn.put(ids, key: k, value: v) }
            try txn.put(meta, key: Array("format".utf8), value: [0, 0, 0, 0, 0, 0, 0, 2])
        }
    }

    static func format(_ path: String) throws -> [UInt8]? {
        let env = try Environment(path: path)
        let meta = try env.openDatabase("meta", create: false)
        return try env.read { try $0.get(meta, key: Array("format".utf8)) }
    }

    @Test("a ledger of format 2 is refused by readers and upgraded in place by a writer",
          arguments: [false, true])
    func upgradeFromFormat2(randomIDs: Bool) throws {
        let events = RandomHistory.events(seed: 31, cases: 80, randomIDs: randomIDs)
        let dir = TemporaryDirectory()
        let (path, expected) = try Self.ledger(events, in: dir)
        try Self.downgradeToFormat2(path)

        var readOnly = CheckpointTests.options(every: 37, readOnly: true)
        readOnly.readOnly = true
        do {
            _ = try Ledger(directory: path, options: readOnly)
            Issue.record("a reader opened a ledger of format 2")
        } catch {
            #expect("\(error)".contains("format is version 2") && "\(error)".contains("start ledgerd"), "\(error)")
        }

        do {
            let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: 37, chunkKeys: 9))
            #expect(try ledger.report() == expected)
            let again = ledger.append([events])
            #expect(try again[0].get().allSatisfy(\.duplicate), "every id is found again after the upgrade")
            #expect(try again[0].get().map(\.position) == Array(1...UInt64(events.count)))
            let other = try TestEvents.event(id: events[3].id, caseID: "C-other", at: "2023-08-01T00:00:00Z")
            guard case .failure(let e) = ledger.append([[other]])[0] else {
                Issue.record("a conflicting id was accepted after the upgrade")
                return
            }
            #expect(e.code == .idConflict)
            let verify = try ledger.verify()
            #expect(verify.ok, "\(String(describing: verify.problem))")
        }
        #expect(try Self.format(path) == [0, 0, 0, 0, 0, 0, 0, 4])
        let reader = try Ledger(directory: path, options: readOnly)
        #expect(try reader.verify().ok)
    }

    @Test func verifyFindsAnIdMappedToAnotherPosition() throws {
        let events = RandomHistory.events(seed: 32, cases: 40, randomIDs: true)
        let dir = TemporaryDirectory()
        let (path, _) = try Self.ledger(events, in: dir)
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
        #expect(verify.problem?.message.contains("the id index maps") == true, "\(String(describing: verify.problem))")
    }

    /// The entries of the `filters` database: the filter of all ids (key 0) and one per run.
    static func storedFilters(_ path: String) throws -> [[UInt8]: [UInt8]] {
        let env = try Environment(path: path)
        let filters = try env.openDatabase("filters", create: false)
        return try env.read { txn in
            var out: [[UInt8]: [UInt8]] = [:]
            try txn.scan(filters, from: nil) { key, value in
                out[Array(key)] = Array(value)
                return true
            }
            return out
        }
    }

    static func putFilters(_ path: String, _ entries: [[UInt8]: [UInt8]]?) throws {
        let env = try Environment(path: path)
        let filters = try env.openDatabase("filters", create: false)
        try env.write { txn in
            try txn.clear(filters)
            for (k, v) in entries ?? [:] { try txn.put(filters, key: k, value: v) }
        }
    }

    /// Every id is still found after the reopen (duplicates, and a conflict for an old id).
    static func expectIDsFound(_ ledger: Ledger, _ events: [Event]) throws {
        let again = ledger.append([events])
        #expect(try again[0].get().allSatisfy(\.duplicate), "every id is found again")
        let other = try TestEvents.event(id: events[5].id, caseID: "C-other", at: "2023-08-01T00:00:00Z")
        guard case .failure(let e) = ledger.append([[other]])[0] else {
            Issue.record("a conflicting id was accepted")
            return
        }
        #expect(e.code == .idConflict)
    }

    /// A clean shutdown just after a checkpoint that ends at the head (the last append made it due)
    /// has no events to write, but still stores the filter of all ids, so the next open reads it.
    @Test func aCheckpointAtTheHeadStillStoresTheFilterOfAllIDs() throws {
        let events = RandomHistory.events(seed: 34, cases: 30)
        let dir = TemporaryDirectory()
        let path = dir.file("data")
        do {
            let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: events.count))
            _ = try ledger.append([events])[0].get()
            #expect(try ledger.checkpointPosition() == UInt64(events.count), "the append made the checkpoint due")
            try ledger.checkpoint()
            try ledger.checkpoint()  // again: nothing more to store
        }
        let stored = try Self.storedFilters(path)
        let all = try #require(stored[Self.allKey], "the filter of all ids is stored")
        #expect(Array(all.prefix(8)) == withUnsafeBytes(of: UInt64(events.count).bigEndian) { Array($0) })
        let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: events.count))
        try Self.expectIDsFound(ledger, events)
        #expect(try Self.storedFilters(path) == stored, "the open read them and wrote nothing")
    }

    @Test("the id filters are stored with each checkpoint and read at open; missing ones are rebuilt and stored")
    func filtersStoredWithCheckpoints() throws {
        let events = RandomHistory.events(seed: 33, cases: 80, randomIDs: true)
        let dir = TemporaryDirectory()
        let (path, _) = try Self.ledger(events, in: dir)
        let stored = try Self.storedFilters(path)
        let verify = try Ledger(directory: path, options: CheckpointTests.options(every: 37, readOnly: true)).verify()
        #expect(verify.ok, "\(String(describing: verify.problem))")
        #expect(stored.count > 3, "the filter of all ids and one per run: \(stored.count) entries")
        #expect(stored[Self.allKey].map { Array($0.prefix(8)) }
                    == withUnsafeBytes(of: UInt64(events.count).bigEndian) { Array($0) },
                "the filter of all ids names the checkpoint (the last event)")

        do {
            let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: 37, chunkKeys: 9))
            try Self.expectIDsFound(ledger, events)
        }
        #expect(try Self.storedFilters(path) == stored, "an open that reads them writes nothing")

        // The open uses what is stored: a filter of all ids with every bit set (which says
        // "maybe" to every id) is kept, and every id is still found through the runs.
        var saturated = stored
        var ones = IDFilter(expected: 16).serialized()
        for k in 29..<ones.count { ones[k] = 0xFF }  // after the version, the count and one header
        saturated[Self.allKey] = Array(try #require(stored[Self.allKey]).prefix(8)) + ones
        try Self.putFilters(path, saturated)
        do {
            let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: 37, chunkKeys: 9))
            try Self.expectIDsFound(ledger, events)
            let fresh = try TestEvents.event(id: "a-new-id", caseID: "C-new", at: "2023-08-01T00:00:00Z")
            #expect(try ledger.append([[fresh]])[0].get().first?.duplicate == false)
        }
        #expect(try Self.storedFilters(path)[Self.allKey] == saturated[Self.allKey], "the stored filter was used, not rebuilt")
        try Self.putFilters(path, stored)

        // Gone (a ledger of format 3, or lost): the open scans the index and stores them again.
        try Self.putFilters(path, nil)
        do {
            let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: 37, chunkKeys: 9))
            try Self.expectIDsFound(ledger, events)
        }
        #expect(try Self.storedFilters(path).count == stored.count)

        // One run's filter missing: not used, all are built again.
        var partial = stored
        partial.removeValue(forKey: partial.keys.filter { $0 != Self.allKey }.min { $0.lexicographicallyPrecedes($1) }!)
        try Self.putFilters(path, partial)
        do {
            let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: 37, chunkKeys: 9))
            try Self.expectIDsFound(ledger, events)
        }
        #expect(try Self.storedFilters(path).count == stored.count)
    }

    @Test("verify finds a stored id filter that misses an id, and replay rebuilds it")
    func verifyFindsAFilterThatMissesAnID() throws {
        let events = RandomHistory.events(seed: 34, cases: 40, randomIDs: true)
        let dir = TemporaryDirectory()
        let (path, _) = try Self.ledger(events, in: dir)
        var stored = try Self.storedFilters(path)
        let position = try #require(stored[Self.allKey]).prefix(8)
        stored[Self.allKey] = Array(position) + IDFilter(expected: 16).serialized()  // an empty filter
        try Self.putFilters(path, stored)

        let verify = try Ledger(directory: path, options: CheckpointTests.options(every: 37, readOnly: true)).verify()
        #expect(!verify.ok)
        #expect(verify.problem?.message.contains("filter of event ids misses") == true, "\(String(describing: verify.problem))")

        do {
            let ledger = try Ledger(directory: path, options: CheckpointTests.options(every: 37, chunkKeys: 9))
            try ledger.rebuildProjections()
            #expect(try ledger.verify().ok)
            try Self.expectIDsFound(ledger, events)
        }
        #expect(try Ledger(directory: path, options: CheckpointTests.options(every: 37, readOnly: true)).verify().ok)
    }
}
