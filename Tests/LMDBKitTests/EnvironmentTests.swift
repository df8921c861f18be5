import Foundation
import LMDBKit
import Testing

@Suite("LMDBKit")
struct EnvironmentTests {
    let dir: String

    init() throws {
        dir = NSTemporaryDirectory() + "lmdbkit-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func putGetScanCount() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = try Environment(path: dir)
        let db = try env.openDatabase("t")
        try env.write { txn throws in
            for k in 1...5 as ClosedRange<UInt64> { try txn.put(db, key: k, value: bytes("v\(k)"), flags: .append) }
        }
        try env.read { txn throws in
            #expect(try txn.get(db, key: 3) == bytes("v3"))
            #expect(try txn.get(db, key: 9) == nil)
            #expect(try txn.count(db) == 5)
            var seen: [String] = []
            try txn.scan(db, from: 2) { _, v in seen.append(String(decoding: v, as: UTF8.self)); return seen.count < 3 }
            #expect(seen == ["v2", "v3", "v4"])
            let last = try txn.withLast(db) { _, v in String(decoding: v, as: UTF8.self) }
            #expect(last == "v5")
        }
    }

    @Test func appendOutOfOrderFails() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = try Environment(path: dir)
        let db = try env.openDatabase("t")
        try env.write { txn in try txn.put(db, key: 5, value: [1], flags: .append) }
        #expect {
            try env.write { txn in try txn.put(db, key: 4, value: [1], flags: .append) }
        } throws: { ($0 as? LMDBError)?.isKeyExist == true }
        #expect {
            try env.write { txn in try txn.put(db, key: 5, value: [2], flags: .noOverwrite) }
        } throws: { ($0 as? LMDBError)?.isKeyExist == true }
    }

    @Test func abortOnThrowStoresNothing() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        struct Boom: Error {}
        let env = try Environment(path: dir)
        let db = try env.openDatabase("t")
        #expect(throws: Boom.self) {
            try env.write { txn throws in
                try txn.put(db, key: 1, value: [1])
                throw Boom()
            }
        }
        #expect(try env.read { try $0.count(db) } == 0)
    }

    @Test func nestedTransactionUndoesOnlyItself() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        struct Boom: Error {}
        let env = try Environment(path: dir)
        let db = try env.openDatabase("t")
        try env.write { txn throws in
            try txn.put(db, key: 1, value: [1])
            do {
                try txn.nested { child in
                    try child.put(db, key: 2, value: [2])
                    throw Boom()
                }
            } catch is Boom {}
            try txn.nested { child in try child.put(db, key: 3, value: [3]) }
        }
        try env.read { txn throws in
            #expect(try txn.get(db, key: 1) == [1])
            #expect(try txn.get(db, key: 2) == nil)
            #expect(try txn.get(db, key: 3) == [3])
        }
    }

    @Test func mapFullThenGrow() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = Environment.Options()
        options.mapSize = 256 * 1024
        let env = try Environment(path: dir, options: options)
        let db = try env.openDatabase("t")
        let value = [UInt8](repeating: 7, count: 1000)
        func fill() throws {
            try env.write { txn throws in
                for k in 0..<1000 as Range<UInt64> { try txn.put(db, key: k, value: value) }
            }
        }
        #expect { try fill() } throws: { ($0 as? LMDBError)?.isMapFull == true }
        #expect(try env.read { try $0.count(db) } == 0)
        try env.growMap(minimum: 8 << 20)
        try fill()
        #expect(try env.read { try $0.count(db) } == 1000)
        #expect(env.info().mapSize >= 8 << 20)
    }

    @Test func readOnlySeesWrites() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            // LMDB forbids opening one environment twice in a process: close the writer first.
            let env = try Environment(path: dir)
            let db = try env.openDatabase("t")
            try env.write { txn in try txn.put(db, key: 1, value: [1]) }
        }
        var ro = Environment.Options()
        ro.readOnly = true
        let reader = try Environment(path: dir, options: ro)
        let rdb = try reader.openDatabase("t", create: false)
        #expect(try reader.read { try $0.get(rdb, key: 1) } == [1])
        #expect { try reader.openDatabase("missing", create: false) } throws: { ($0 as? LMDBError)?.isNotFound == true }
    }

    @Test func missingDirectoryIsAnError() {
        #expect(throws: LMDBError.self) { try Environment(path: dir + "/no/such/dir") }
    }

    @Test func hotCopyOpens() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = try Environment(path: dir)
        let db = try env.openDatabase("t")
        try env.write { txn in try txn.put(db, key: 1, value: [9]) }
        let copy = dir + "/copy"
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: false)
        try env.copy(to: copy)
        let env2 = try Environment(path: copy)
        let db2 = try env2.openDatabase("t", create: false)
        #expect(try env2.read { try $0.get(db2, key: 1) } == [9])
    }

    /// The process's resident pages of mapped files, in KiB (`RssFile` of /proc/self/status).
    static func rssFileKiB() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("RssFile:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    @Test func releasedPagesLeaveTheResidentSet() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = try Environment(path: dir)
        let db = try env.openDatabase("t")
        let value = [UInt8](repeating: 7, count: 4000)
        try env.write { txn in for k in 1...12_000 as ClosedRange<UInt64> { try txn.put(db, key: k, value: value) } }
        // Read every value through the map: ~48 MB of it becomes resident.
        let sum = try env.read { txn in
            var n = 0
            try txn.scan(db, from: nil) { _, v in n += Int(v[0]) + Int(v[v.count - 1]); return true }
            return n
        }
        #expect(sum == 12_000 * 14)
        let touched = try Self.rssFileKiB()
        env.releaseMappedPages()
        let released = try Self.rssFileKiB()
        #expect(touched - released > 30_000, "RssFile \(touched) KiB before, \(released) KiB after")
        // The data is still there.
        #expect(try env.read { try $0.get(db, key: 12_000) } == value)
    }

    /// `residentFileBytes` sees pages of the map become resident when read and go when released:
    /// what the ledger's cap on mapped pages is counted with.
    @Test func residentFileBytesFollowTheMap() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = try Environment(path: dir)
        let db = try env.openDatabase("t")
        let value = [UInt8](repeating: 7, count: 4000)  // one page each
        try env.write { txn in for k in 1...10_000 as ClosedRange<UInt64> { try txn.put(db, key: k, value: value) } }
        env.releaseMappedPages()
        let before = Environment.residentFileBytes()
        _ = try env.read { txn in
            var n = 0
            try txn.scan(db, from: nil) { _, v in n += Int(v[0]); return true }
            return n
        }
        let touched = Environment.residentFileBytes()
        env.releaseMappedPages()
        let after = Environment.residentFileBytes()
        #expect(touched - before > 30 << 20, "\(before) bytes before the scan, \(touched) after")
        #expect(touched - after > 30 << 20, "\(after) bytes after the release")
    }

    /// Puts through one cursor: sorted keys, appends, and an out-of-order append that fails.
    @Test func cursorPutsInOrderAndAppends() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = try Environment(path: dir)
        let db = try env.openDatabase("t")
        try env.write { txn in for k in stride(from: 2, through: 2_000, by: 2) as StrideThrough<UInt64> { try txn.put(db, key: k, value: [1]) } }
        try env.write { txn in
            try txn.withCursor(db) { cursor in
                for k in stride(from: 1, through: 1_999, by: 2) as StrideThrough<UInt64> {  // between the stored keys
                    try withUnsafeBytes(of: k.bigEndian) { key in
                        try [UInt8(2)].withUnsafeBytes { try cursor.put(key: key, value: $0) }
                    }
                }
                for k in 2_001...3_000 as ClosedRange<UInt64> {
                    try withUnsafeBytes(of: k.bigEndian) { key in
                        try [UInt8(3)].withUnsafeBytes { try cursor.put(key: key, value: $0, flags: .append) }
                    }
                }
                #expect(throws: LMDBError.self) {
                    try withUnsafeBytes(of: UInt64(10).bigEndian) { key in
                        try [UInt8(4)].withUnsafeBytes { try cursor.put(key: key, value: $0, flags: .append) }
                    }
                }
            }
        }
        let (count, odd, even, appended, ten) = try env.read { txn in
            (try txn.count(db), try txn.get(db, key: 999), try txn.get(db, key: 1_000), try txn.get(db, key: 3_000),
             try txn.get(db, key: 10))
        }
        #expect(count == 3_000)
        #expect(odd == [2] && even == [1] && appended == [3])
        #expect(ten == [1], "the failed append changed nothing")
    }
}
