import Foundation
import LedgerCore
import LedgerStore
import LedgerTestSupport
import LMDBKit
import Testing

/// Tampering with the data file through LMDB directly, as an attacker with file access would.
@Suite("verify detects tampering")
struct VerifyTests {
    /// Builds a ledger of `n` events in a new directory and returns the directory.
    func ledger(_ n: Int) throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        let ledger = try Ledger(directory: dir.file("data"), options: .creating)
        _ = ledger.append([try TestEvents.requested(n)])
        #expect(try ledger.verify().ok)
        return dir
    }

    /// Opens the raw environment (no Ledger open at the same time in this process).
    func tamper(_ dir: TemporaryDirectory, _ body: (Environment, Database, Database) throws -> Void) throws {
        let env = try Environment(path: dir.file("data"))
        let events = try env.openDatabase("events", create: false)
        let meta = try env.openDatabase("meta", create: false)
        try body(env, events, meta)
    }

    func verify(_ dir: TemporaryDirectory) throws -> VerifyReport {
        var options = Ledger.Options()
        options.readOnly = true
        return try Ledger(directory: dir.file("data"), options: options).verify()
    }

    @Test func editedEvent() throws {
        let dir = try ledger(10)
        try tamper(dir) { env, events, _ in
            try env.write { txn throws in
                var v = try txn.get(events, key: 4)!
                let c = 33 + Int(v[32])  // hash ‖ facts length ‖ facts ‖ C
                let s = String(decoding: v[c...], as: UTF8.self).replacingOccurrences(of: "\"household_size\":3", with: "\"household_size\":4")
                v = Array(v[0..<c]) + Array(s.utf8)
                try txn.put(events, key: 4, value: v)
            }
        }
        let report = try verify(dir)
        #expect(report.problem?.position == 4)
        #expect(report.problem?.message.contains("hash") == true)
    }

    @Test func deletedEvent() throws {
        let dir = try ledger(10)
        try tamper(dir) { env, events, _ in
            try env.write { txn in _ = try txn.delete(events, key: withUnsafeBytes(of: UInt64(6).bigEndian) { Array($0) }) }
        }
        let report = try verify(dir)
        #expect(report.problem?.position == 6)
    }

    @Test func swappedEvents() throws {
        let dir = try ledger(10)
        try tamper(dir) { env, events, _ in
            try env.write { txn throws in
                let a = try txn.get(events, key: 3)!, b = try txn.get(events, key: 7)!
                try txn.put(events, key: 3, value: b)
                try txn.put(events, key: 7, value: a)
            }
        }
        #expect(try verify(dir).problem?.position == 3)
    }

    @Test func rehashedEditIsStillCaught() throws {
        // Changing an event and its own hash still breaks every later hash or the head.
        let dir = try ledger(10)
        try tamper(dir) { env, events, _ in
            try env.write { txn throws in
                let v = try txn.get(events, key: 10)!
                let c = 33 + Int(v[32])  // hash ‖ facts length ‖ facts ‖ C
                var s = Array(v[c...])
                let text = String(decoding: s, as: UTF8.self).replacingOccurrences(of: "\"VEN\"", with: "\"COL\"")
                s = Array(text.utf8)
                try txn.put(events, key: 10, value: Array(v[0..<c]) + s)
            }
        }
        #expect(try verify(dir).problem?.position == 10)
    }

    @Test func truncatedLog() throws {
        let dir = try ledger(10)
        try tamper(dir) { env, events, _ in
            try env.write { txn throws in
                for k in 9...10 as ClosedRange<UInt64> {
                    _ = try txn.delete(events, key: withUnsafeBytes(of: k.bigEndian) { Array($0) })
                }
            }
        }
        let report = try verify(dir)
        #expect(report.problem?.position == 9)
        #expect(report.problem?.message.contains("truncated") == true)
    }

    /// The facts beside each event (what replays read) are not covered by the hash: verify compares
    /// them with the event's JSON, and the link to the case's previous event with the log.
    @Test(arguments: [(22, "differ from its JSON"), (38, "as its case's previous event")] as [(Int, String)])
    func editedFacts(offset: Int, message: String) throws {
        let dir = try ledger(10)
        try tamper(dir) { env, events, _ in
            try env.write { txn throws in
                var v = try txn.get(events, key: 4)!
                v[33 + offset] ^= 0x02  // household size; the low byte of `previous`
                try txn.put(events, key: 4, value: v)
            }
        }
        let report = try verify(dir)
        #expect(report.problem?.position == 4)
        #expect(report.problem?.message.contains(message) == true, "\(String(describing: report.problem))")
    }
}
