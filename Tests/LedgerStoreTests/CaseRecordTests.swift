import LedgerCore
import LedgerStore
import LedgerTestSupport
import LMDBKit
import Testing

/// Case records of encoding 2 (what ledgers of format 3 stored) stay readable: a ledger holds both
/// encodings until each case is written again, and the upgrade to format 4 rewrites nothing.
@Suite("Case records")
struct CaseRecordTests {
    /// The encodings of the `cases` entries of the ledger at `path` by their first byte.
    static func encodings(_ path: String) throws -> [UInt8: Int] {
        let env = try Environment(path: path)
        let cases = try env.openDatabase("cases", create: false)
        return try env.read { txn in
            var seen: [UInt8: Int] = [:]
            try txn.scan(cases, from: nil) { _, value in
                seen[value.first ?? 0, default: 0] += 1
                return true
            }
            return seen
        }
    }

    /// Makes the ledger at `path` one of format 3: every `cases` entry in encoding 2 (the state's,
    /// then the position of the case's latest event as 8 bytes big-endian).
    static func downgradeToFormat3(_ path: String) throws {
        let env = try Environment(path: path)
        let cases = try env.openDatabase("cases", create: false)
        let meta = try env.openDatabase("meta", create: false)
        try env.write { txn in
            var entries: [([UInt8], [UInt8])] = []
            try txn.scan(cases, from: nil) { key, value in
                var r = ByteReader(value)
                let state = CaseState.decode(&r)
                let last = r.varint()
                #expect(state != nil && last != nil && r.atEnd, "a record of encoding 3 did not read back")
                if let state, let last {
                    var w = ByteWriter(bytes: encoding2(state))
                    w.u64(last)
                    entries.append((Array(key), w.bytes))
                }
                return true
            }
            for (k, v) in entries { try txn.put(cases, key: k, value: v) }
            try txn.put(meta, key: Array("format".utf8), value: [0, 0, 0, 0, 0, 0, 0, 3])
        }
    }

    /// `ledger`'s report without its head hash (which hashes the times the events were recorded).
    static func figures(_ ledger: Ledger) throws -> JSONObject {
        var report = try ledger.report()
        report.members.removeAll { $0.key == "head_hash" }
        return report
    }

    @Test("a ledger of format 3 (records of encoding 2) is read, appended to, checkpointed and verified")
    func encoding2RecordsStayReadable() throws {
        let events = RandomHistory.events(seed: 41, cases: 90)
        let half = events.count / 2
        let dir = TemporaryDirectory()
        let path = dir.file("data")
        let options = CheckpointTests.options(every: 37, chunkKeys: 9)

        let fresh = try Ledger(directory: dir.file("fresh"), options: options)
        CheckpointTests.appendAll(events, to: fresh, seed: 3)
        let expected = try Self.figures(fresh)

        do {
            let ledger = try Ledger(directory: path, options: options)
            CheckpointTests.appendAll(Array(events[..<half]), to: ledger, seed: 3)
            try ledger.checkpoint()
        }
        let stored = try Self.encodings(path)
        #expect(Set(stored.keys) == [3], "\(stored)")
        try Self.downgradeToFormat3(path)
        #expect(try Self.encodings(path) == [2: stored[3] ?? 0])

        var readOnly = options
        readOnly.readOnly = true
        #expect(try Ledger(directory: path, options: readOnly).verify().ok, "a reader reads records of encoding 2")
        #expect(try IDIndexTests.format(path) == [0, 0, 0, 0, 0, 0, 0, 3], "a reader changes nothing")
        do {
            let ledger = try Ledger(directory: path, options: options)
            CheckpointTests.appendAll(Array(events[half...]), to: ledger, seed: 4)
            try ledger.checkpoint()
            #expect(try Self.figures(ledger) == expected)
            let verify = try ledger.verify()
            #expect(verify.ok, "\(String(describing: verify.problem))")
        }
        #expect(try IDIndexTests.format(path) == [0, 0, 0, 0, 0, 0, 0, 4], "a writer marks it format 4")
        let mixed = try Self.encodings(path)
        #expect(mixed[2, default: 0] > 0 && mixed[3, default: 0] > 0, "the cases written again are in encoding 3: \(mixed)")
        #expect(try Self.figures(Ledger(directory: path, options: readOnly)) == expected)
    }
}
