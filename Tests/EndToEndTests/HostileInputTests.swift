import Foundation
import LedgerClient
import LedgerCore
import LedgerTestSupport
import Synchronization
import Testing

/// Inputs that try to bring the daemon down. After each, the daemon must still serve others,
/// nothing may be stored, and its memory must stay bounded.
@Suite("Hostile input", .serialized)
struct HostileInputTests {
    static func rssMiB(_ pid: Int32) -> Int {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return -1 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }

    func code(_ line: [UInt8]?) -> String? {
        guard let line, case .object(let o)? = try? JSONParser.parse(line), case .object(let e)? = o["error"],
              case .string(let c)? = e["code"] else { return nil }
        return c
    }

    @Test func batteryOfBadInputs() throws {
        let dir = TemporaryDirectory()
        let sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: dir.file("data"), socketPath: sock)
        defer { d.stop() }
        var tried = 0
        let c = try LedgerClient(path: sock)
        let cases: [([UInt8], String)] = [
            (Array("not json".utf8), "malformed"),
            ([0xC3, 0x28, 0xA0, 0xA1], "malformed"),  // invalid UTF-8
            (Array(#"{"op":"status","x":"\#u{FF}"}"#.utf8).map { $0 == 0xC3 ? 0xFF : $0 }, "malformed"),
            (Array((String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)).utf8), "malformed"),
            (Array(#"{"op":"append","events":[{"id":"a","type":"AppointmentRequested","case":"c","at":"2023-07-03T14:05:00Z","data":{"office_country":"CO","nationality":"VEN","household_size":1\#(String(repeating: "0", count: 5000))}}]}"#.utf8), "malformed"),
            (Array(#"{"op":"append","events":[{"id":"\#(String(repeating: "i", count: 500_000))","type":"AppointmentRequested","case":"c","at":"2023-07-03T14:05:00Z","data":{}}]}"#.utf8), "invalid_event"),
            (Array(#"{"op":"append","events":[\#((0..<10_001).map { _ in "{}" }.joined(separator: ","))]}"#.utf8), "too_large"),
            (Array(#"{"op":"read","from":1e999}"#.utf8), "malformed"),
            (Array(#"{"op":"\#u{0}"}"#.utf8), "malformed"),
        ]
        for (line, expected) in cases {
            try c.send(line)
            #expect(code(try c.readLine()) == expected, "\(String(decoding: line.prefix(60), as: UTF8.self))")
            tried += 1
        }
        // 2,000 lines of random bytes: each gets exactly one error line.
        var rng = SeededRandom(seed: 99)
        var randomLines: [UInt8] = []
        for _ in 0..<2000 {
            var l = (0..<Int.random(in: 1...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            l.removeAll { $0 == 0x0A }
            if l.isEmpty || l.allSatisfy({ $0 == 0x0D }) { l = [0x78] }
            randomLines += l + [0x0A]
        }
        try c.writeAll(randomLines)
        for _ in 0..<2000 { #expect(code(try c.readLine()) != nil) }
        tried += 2000
        // A 5 MiB line without a newline, then the newline and a good request.
        try c.writeAll([UInt8](repeating: UInt8(ascii: "{"), count: 5 << 20))
        try c.writeAll([0x0A] + Array(#"{"op":"status"}"#.utf8) + [0x0A])
        #expect(code(try c.readLine()) == "too_large")
        #expect(code(try c.readLine()) == nil)
        tried += 1
        // Half a line, then disconnect.
        do {
            let h = try LedgerClient(path: sock)
            try h.writeAll(Array(#"{"op":"append","events":[{"id":"half","type":"AppointmentRequested","case":"c","at":"2023-07-03T14:05:00Z","data":{"office_country":"CO","nationality":"VEN","household_size":1}}]"#.utf8))
        }
        tried += 1
        // Thousands of connections opened and dropped.
        for _ in 0..<3000 { _ = try? LedgerClient(path: sock) }
        tried += 3000
        // A client that sends without ever reading its answers: the daemon stops reading from it.
        let rssBefore = Self.rssMiB(d.process.processIdentifier)
        // The flooding thread blocks once the daemon stops reading; it ends when the daemon stops.
        Thread {
            guard let flooder = try? LedgerClient(path: sock) else { return }
            let request = Array((#"{"op":"read","from":1,"limit":10000}"# + "\n").utf8)
            var chunk: [UInt8] = []
            for _ in 0..<1000 { chunk += request }
            for _ in 0..<200 { if (try? flooder.writeAll(chunk)) == nil { break } }
        }.start()
        usleep(1_500_000)
        tried += 1
        // Others are still served, promptly.
        let other = try LedgerClient(path: sock)
        let status = try other.request(#"{"op":"status"}"#)
        #expect(status["ok"] == .bool(true))
        #expect(status["head"] == .int(0))  // nothing of all that was stored
        let rssAfter = Self.rssMiB(d.process.processIdentifier)
        print("hostile input: \(tried) inputs tried; daemon RSS \(rssBefore) MiB before the flood, \(rssAfter) MiB during it")
        #expect(rssAfter < 256, "RSS grew to \(rssAfter) MiB")
    }

    @Test func racingClientsOnTheSameCases() throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data"), sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: data, socketPath: sock)
        let setup = try LedgerClient(path: sock)
        var events: [String] = []
        for k in 0..<20 {
            events.append(TestEvents.json(id: "s\(k)-1", caseID: "C-race\(k)"))
            events.append(TestEvents.json(id: "s\(k)-2", type: "EligibilityScreened", caseID: "C-race\(k)", at: "2023-07-04T10:00:00Z", data: #"{"result":"eligible"}"#))
            events.append(TestEvents.json(id: "s\(k)-3", type: "AppointmentScheduled", caseID: "C-race\(k)", at: "2023-07-05T10:00:00Z", data: #"{"office":"Quito","scheduled_for":"2023-07-09T10:00:00Z"}"#))
        }
        #expect(try setup.request(#"{"op":"append","events":["# + events.joined(separator: ",") + "]}")["ok"] == .bool(true))
        // 16 clients race to interview, then to close with expected_version, every case.
        let interviewWins = Mutex<[String: Int]>([:]), closeWins = Mutex<[String: Int]>([:])
        let group = DispatchGroup()
        for c in 0..<16 {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let client = try? LedgerClient(path: sock) else { return }
                for k in 0..<20 {
                    let i = TestEvents.json(id: "i\(k)-\(c)", type: "Interviewed", caseID: "C-race\(k)", at: "2023-07-09T10:00:00Z", data: #"{"interviewer":"IOM"}"#)
                    if let r = try? client.request(#"{"op":"append","events":["# + i + "]}"), r["ok"] == .bool(true) {
                        interviewWins.withLock { $0["C-race\(k)", default: 0] += 1 }
                    }
                    let close = TestEvents.json(id: "x\(k)-\(c)", type: "CaseClosed", caseID: "C-race\(k)", at: "2023-07-10T10:00:00Z",
                                                expectedVersion: 4, data: #"{"reason":"completed"}"#)
                    if let r = try? client.request(#"{"op":"append","events":["# + close + "]}"), r["ok"] == .bool(true) {
                        closeWins.withLock { $0["C-race\(k)", default: 0] += 1 }
                    }
                }
            }.start()
        }
        group.wait()
        let interviews = interviewWins.withLock { $0 }, closes = closeWins.withLock { $0 }
        #expect(interviews.count == 20 && interviews.values.allSatisfy { $0 == 1 }, "\(interviews)")
        #expect(closes.count == 20 && closes.values.allSatisfy { $0 == 1 }, "\(closes)")
        #expect(try setup.request(#"{"op":"status"}"#)["head"] == .int(100))
        #expect(d.stop() == 0)
        // The stored states are what a serial replay of the log gives.
        #expect(try run(Executables.path("ledgerctl"), ["verify", "--data-dir", data]).status == 0)
    }
}

/// A data directory on a small tmpfs: appends get `unavailable` when it fills, nothing is
/// corrupted, and appends work again when space comes back. Needs root (mount); skipped otherwise.
@Suite("A full disk", .serialized, .enabled(if: getuid() == 0))
struct FullDiskTests {
    @Test func fullDiskThenSpaceComesBack() throws {
        let dir = TemporaryDirectory()
        let mnt = dir.file("fs")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let mount = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt])
        guard mount.status == 0 else {
            print("full disk: tmpfs cannot be mounted here (\(mount.stderr)); the test did not run")
            return
        }
        defer { _ = try? run("/bin/umount", ["-l", mnt]) }
        let config = dir.file("c.toml")
        try "initial_map_size_mib = 64\n".write(toFile: config, atomically: true, encoding: .utf8)
        let data = mnt + "/data", sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: data, socketPath: sock, extra: ["--config", config])
        let c = try LedgerClient(path: sock)
        var acked = 0, unavailable = 0, k = 0
        while unavailable == 0 && k < 2000 {
            let batch = (0..<50).map { TestEvents.json(id: "f\(k)-\($0)", caseID: "C-f\(k)-\($0)") }
            let r = try c.request(#"{"op":"append","events":["# + batch.joined(separator: ",") + "]}")
            if r["ok"] == .bool(true) { acked += 50 } else if case .object(let e)? = r["error"], e["code"] == .string("unavailable") {
                unavailable += 1
            } else { Issue.record("unexpected \(r)"); break }
            k += 1
        }
        #expect(unavailable > 0, "the 4 MiB filesystem never filled")
        // Still serving, and the head is what was acknowledged.
        #expect(try c.request(#"{"op":"status"}"#)["head"] == .int(Int64(acked)))
        // Space comes back: appends work again without a restart.
        #expect(try run("/bin/mount", ["-o", "remount,size=64m", mnt]).status == 0)
        let after = try c.request(#"{"op":"append","events":["# + TestEvents.json(id: "after-space", caseID: "C-after") + "]}")
        #expect(after["ok"] == .bool(true), "\(after)")
        print("full disk: \(acked) events acknowledged before the disk filled, \(unavailable) append(s) answered unavailable, appends resumed after remount")
        #expect(d.stop() == 0)
        let verify = try run(Executables.path("ledgerctl"), ["verify", "--data-dir", data])
        #expect(verify.status == 0, "\(verify.stdout)")
    }
}
