import Foundation
import LedgerClient
import LedgerCore
import LedgerTestSupport
import Testing

/// Runs the built `ledgerd` and `ledgerctl` (from `.build/debug`, or `$LEDGER_BIN_DIR`).
@Suite("ledgerd and ledgerctl, end to end", .serialized)
struct DaemonTests {
    func appendLine(_ events: [String]) -> String { #"{"op":"append","events":["# + events.joined(separator: ",") + "]}" }

    func positions(_ response: JSONObject) -> [Int64] {
        guard case .array(let results)? = response["results"] else { return [] }
        return results.compactMap { r in
            if case .object(let o) = r, case .int(let p)? = o["position"] { return p }
            return nil
        }
    }

    @Test("2,000 events: one request of 1,000, then 1,000 of one; export, chain, restart")
    func twoThousandEvents() throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data"), sock = dir.file("ledgerd.sock")
        var daemon: DaemonProcess? = try DaemonProcess(dataDir: data, socketPath: sock)
        let client = try LedgerClient(path: sock)
        let big = (0..<1000).map { TestEvents.json(id: "big-\($0)", caseID: "C-big-\($0)") }
        #expect(positions(try client.request(appendLine(big))) == Array(1...1000))
        // 1,000 requests of one event, pipelined.
        let singles = (0..<1000).map { appendLine([TestEvents.json(id: "one-\($0)", caseID: "C-one-\($0)")]) }
        try client.writeAll(Array((singles.joined(separator: "\n") + "\n").utf8))
        var got: [Int64] = []
        for _ in 0..<1000 {
            guard case .object(let o) = try JSONParser.parse(try #require(try client.readLine())) else { break }
            got += positions(o)
        }
        #expect(got == Array(1001...2000))
        let status = try client.request(#"{"op":"status"}"#)
        #expect(status["head"] == .int(2000))
        guard case .string(let headHash)? = status["head_hash"] else { Issue.record("no head_hash"); return }

        // Export while the daemon runs; an independent script recomputes the chain.
        let export = try run(Executables.path("ledgerctl"), ["export", "--data-dir", data])
        #expect(export.status == 0, "\(export.stderr)")
        let lines = export.stdout.split(separator: "\n")
        #expect(lines.count == 2000)
        let chain = try run("/usr/bin/env", ["python3", Executables.packageRoot + "/scripts/verify-chain"],
                            stdin: Data(export.stdout.utf8))
        #expect(chain.status == 0, "\(chain.stdout)\(chain.stderr)")
        #expect(chain.stdout.contains("chain ok: head 2000 \(headHash)"))
        let partial = try run(Executables.path("ledgerctl"), ["export", "--data-dir", data, "--from", "1999", "--to", "2000"])
        #expect(partial.stdout.split(separator: "\n").count == 2)

        // SIGTERM: exit 0 and the socket is gone.
        #expect(daemon!.stop() == 0, "\(daemon!.log)")
        #expect(!FileManager.default.fileExists(atPath: sock))
        daemon = nil

        // Restart: same head and hash; positions go on without a gap.
        let again = try DaemonProcess(dataDir: data, socketPath: sock)
        let c2 = try LedgerClient(path: sock)
        let s2 = try c2.request(#"{"op":"status"}"#)
        #expect(s2["head"] == .int(2000))
        #expect(s2["head_hash"] == .string(headHash))
        #expect(positions(try c2.request(appendLine([TestEvents.json(id: "after", caseID: "C-after")]))) == [2001])
        #expect(again.stop() == 0)

        let verify = try run(Executables.path("ledgerctl"), ["verify", "--data-dir", data])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("ok, 2001 events"))
    }

    @Test func secondDaemonOnTheSameDataDirectoryRefuses() throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data")
        let first = try DaemonProcess(dataDir: data, socketPath: dir.file("a.sock"))
        let second = try run(Executables.path("ledgerd"), ["--data-dir", data, "--socket", dir.file("b.sock")], timeout: 20)
        #expect(second.status == 1)
        #expect(second.stderr.contains("another ledgerd"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("b.sock")))
        // Nor may a second daemon take a live socket.
        let third = try run(Executables.path("ledgerd"), ["--data-dir", dir.file("other"), "--socket", dir.file("a.sock")], timeout: 20)
        #expect(third.status == 1)
        #expect(third.stderr.contains("another daemon is serving"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("other")))  // refused before creating anything
        #expect(try LedgerClient(path: dir.file("a.sock")).request(#"{"op":"status"}"#)["ok"] == .bool(true))
        #expect(first.stop() == 0)
    }

    @Test("SIGTERM as soon as the socket accepts connections is a graceful stop")
    func stopRightAfterReady() throws {
        let dir = TemporaryDirectory()
        for k in 0..<10 {
            let d = try DaemonProcess(dataDir: dir.file("data"), socketPath: dir.file("s.sock"))
            #expect(d.stop() == 0, "round \(k): \(d.log)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("s.sock")))
        }
    }

    @Test func staleSocketFileIsReplaced() throws {
        let dir = TemporaryDirectory()
        let sock = dir.file("s.sock")
        let crashed = try DaemonProcess(dataDir: dir.file("data"), socketPath: sock)
        crashed.stop(signal: SIGKILL)
        #expect(FileManager.default.fileExists(atPath: sock))  // left behind by the crash
        let next = try DaemonProcess(dataDir: dir.file("data"), socketPath: sock)
        #expect(try LedgerClient(path: sock).request(#"{"op":"status"}"#)["head"] == .int(0))
        #expect(next.stop() == 0)
    }

    @Test func socketIsGroupReadWriteOnly() throws {
        let dir = TemporaryDirectory()
        let sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: dir.file("data"), socketPath: sock)
        let attrs = try FileManager.default.attributesOfItem(atPath: sock)
        #expect((attrs[.posixPermissions] as? Int) == 0o660)
        #expect(d.stop() == 0)
    }

    @Test func helpAndUsageErrors() throws {
        for program in ["ledgerd", "ledgerctl"] {
            let help = try run(Executables.path(program), ["--help"])
            #expect(help.status == 0)
            #expect(help.stdout.contains("USAGE"))
            let bad = try run(Executables.path(program), ["--no-such-flag"])
            #expect(bad.status == 2)
        }
        let missing = try run(Executables.path("ledgerctl"), ["verify", "--data-dir", "/nonexistent/ledger"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("no ledger"))
    }
}
