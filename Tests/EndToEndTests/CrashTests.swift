import Foundation
import LedgerClient
import LedgerCore
import LedgerTestSupport
import Testing

/// Kills `ledgerd` (and `ledgerctl replay`/`backup`) with SIGKILL at random moments under load and
/// checks that nothing acknowledged is ever lost. Rounds: `LEDGER_CRASH_ROUNDS` (default 20;
/// scripts/soak raises it).
@Suite("Crash safety under SIGKILL", .serialized)
struct CrashTests {
    /// What the clients saw: acknowledged event ids with their positions, and every batch sent.
    final class Ledgerbook: @unchecked Sendable {
        // @unchecked: every field is touched under `lock`.
        let lock = NSLock()
        var acked: [String: Int64] = [:]
        var batches: [[String]] = []
        func sent(_ ids: [String]) { lock.lock(); batches.append(ids); lock.unlock() }
        func ack(_ ids: [String], _ positions: [Int64]) {
            lock.lock()
            for (i, p) in zip(ids, positions) { acked[i] = p }
            lock.unlock()
        }
    }

    /// One connection appending pipelined batches until the daemon goes away.
    static func client(_ sock: String, tag: String, book: Ledgerbook) {
        guard let c = try? LedgerClient(path: sock) else { return }
        var inFlight: [[String]] = []
        var k = 0
        while k < 100_000 {
            while inFlight.count < 8 {
                let ids = ["\(tag)-\(k)-a", "\(tag)-\(k)-b", "\(tag)-\(k)-c"]
                let events = [
                    TestEvents.json(id: ids[0], caseID: "C-\(tag)-\(k)"),
                    TestEvents.json(id: ids[1], type: "EligibilityScreened", caseID: "C-\(tag)-\(k)", at: "2023-07-04T10:00:00Z",
                                    data: #"{"result":"eligible"}"#),
                    TestEvents.json(id: ids[2], caseID: "C-\(tag)-\(k)-2"),
                ]
                book.sent(ids)
                guard (try? c.send(#"{"op":"append","events":["# + events.joined(separator: ",") + "]}")) != nil else { return }
                inFlight.append(ids)
                k += 1
            }
            guard let line = try? c.readLine(), case .object(let o)? = try? JSONParser.parse(line) else { return }
            let ids = inFlight.removeFirst()
            if case .array(let results)? = o["results"] {
                book.ack(ids, results.compactMap { r in
                    if case .object(let ro) = r, case .int(let p)? = ro["position"] { return p }
                    return nil
                })
            }
        }
    }

    /// Starts `ledgerctl ARGS` and kills it with SIGKILL after the given time.
    static func killMidway(_ arguments: [String], afterMicroseconds delay: UInt32) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Executables.path("ledgerctl"))
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        usleep(delay)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    static var rounds: Int { Int(ProcessInfo.processInfo.environment["LEDGER_CRASH_ROUNDS"] ?? "") ?? 20 }

    @Test func killedDaemonLosesNothingAcknowledged() throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data"), sock = dir.file("s.sock")
        let book = Ledgerbook()
        var rng = SeededRandom(seed: UInt64(Date().timeIntervalSince1970))
        // Checkpoints every 500 events and every second: kills land before, during and after them too.
        let config = dir.file("ledgerd.toml")
        try "checkpoint_events = 500\ncheckpoint_seconds = 1\n".write(toFile: config, atomically: true, encoding: .utf8)
        for round in 0..<Self.rounds {
            let d = try DaemonProcess(dataDir: data, socketPath: sock, extra: ["--config", config])
            let group = DispatchGroup()
            for conn in 0..<3 {
                group.enter()
                Thread { Self.client(sock, tag: "r\(round)c\(conn)", book: book); group.leave() }.start()
            }
            usleep(UInt32.random(in: 20_000...250_000, using: &rng))
            d.stop(signal: SIGKILL)
            group.wait()
        }
        // Restart and compare what is stored with what was acknowledged.
        let d = try DaemonProcess(dataDir: data, socketPath: sock, extra: ["--config", config])
        #expect(d.stop() == 0)
        let export = try run(Executables.path("ledgerctl"), ["export", "--data-dir", data])
        #expect(export.status == 0)
        var stored: [String: Int64] = [:]
        var expected: Int64 = 1
        var gaps = 0
        for line in export.stdout.split(separator: "\n") {
            guard case .object(let r) = try JSONParser.parse(String(line)), case .int(let p)? = r["position"],
                  case .object(let e)? = r["event"], case .string(let id)? = e["id"] else { continue }
            if p != expected { gaps += 1 }
            expected = p + 1
            stored[id] = p
        }
        var lost = 0, moved = 0, halfBatches = 0
        for (id, p) in book.acked {
            if let s = stored[id] { if s != p { moved += 1 } } else { lost += 1 }
        }
        for ids in book.batches {
            let present = ids.filter { stored[$0] != nil }.count
            if present != 0 && present != ids.count { halfBatches += 1 }
        }
        print("crash safety: \(Self.rounds) SIGKILL rounds, \(book.batches.count) batches sent, \(book.acked.count) events acknowledged, \(stored.count) stored, \(lost) lost, \(moved) moved, \(halfBatches) half-present batches, \(gaps) gaps")
        #expect(book.acked.count > 0)
        #expect(lost == 0)
        #expect(moved == 0)
        #expect(halfBatches == 0)
        #expect(gaps == 0)
        let verify = try run(Executables.path("ledgerctl"), ["verify", "--data-dir", data])
        #expect(verify.status == 0, "\(verify.stdout)")
    }

    @Test func killedReplayAndBackupLeaveTheLedgerSound() throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data"), sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: data, socketPath: sock)
        let events = RandomHistory.events(seed: 5, cases: 3000)
        let file = dir.file("h.ndjson")
        try (events.map { String(decoding: $0.canonical, as: UTF8.self) }.joined(separator: "\n") + "\n")
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try run(Executables.path("ledgerctl"), ["import", file, "--socket", sock]).status == 0)
        // Backup killed mid-way while the daemon runs: the ledger still verifies.
        for k in 0..<3 {
            try Self.killMidway(["backup", "--data-dir", data, dir.file("bk\(k)")], afterMicroseconds: UInt32(2_000 + k * 8_000))
        }
        #expect(d.stop() == 0)
        // Replay killed mid-way: the old projections stay, or the rebuild is complete.
        for k in 0..<3 {
            try Self.killMidway(["replay", "--data-dir", data], afterMicroseconds: UInt32(20_000 + k * 60_000))
            let verify = try run(Executables.path("ledgerctl"), ["verify", "--data-dir", data])
            #expect(verify.status == 0, "after a killed replay: \(verify.stdout)")
        }
        // And a daemon starts on it and serves the same head.
        let again = try DaemonProcess(dataDir: data, socketPath: sock)
        let status = try LedgerClient(path: sock).request(#"{"op":"status"}"#)
        #expect(status["head"] == .int(Int64(events.count)))
        #expect(again.stop() == 0)
    }
}
