import Foundation
import LedgerClient
import LedgerCore
import LedgerTestSupport
import Synchronization
import Testing

@Suite("Operations, end to end", .serialized)
struct OperationsTests {
    func appendLine(_ events: [String]) -> String { #"{"op":"append","events":["# + events.joined(separator: ",") + "]}" }

    @Test func anotherUserMayReadButNotAppend() throws {
        guard getuid() == 0 else { return }  // needs root to act as another user
        let dir = TemporaryDirectory()
        chmod(dir.path, 0o755)
        let sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: dir.file("data"), socketPath: sock)
        defer { d.stop() }
        #expect(try LedgerClient(path: sock).request(appendLine([TestEvents.json(id: "root-1", caseID: "C-r")]))["ok"] == .bool(true))
        chmod(sock, 0o666)  // let "nobody" open the socket; the daemon still decides who may append
        let script = """
        import json, socket, sys
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rwb")
        for line in [sys.argv[2], '{"op":"status"}']:
            f.write(line.encode() + b"\\n"); f.flush(); print(f.readline().decode().strip())
        """
        let r = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script, sock,
                                             appendLine([TestEvents.json(id: "nobody-1", caseID: "C-n")])])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.contains(#""code":"forbidden""#) == true, "\(r.stdout)")
        #expect(lines.last?.contains(#""head":1"#) == true, "\(r.stdout)")
    }

    @Test func backupWhileAppendingThenVerifyAndRestore() throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data"), sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: data, socketPath: sock)
        let client = try LedgerClient(path: sock)
        #expect(try client.request(appendLine((0..<500).map { TestEvents.json(id: "b\($0)", caseID: "C-b\($0)") }))["ok"] == .bool(true))
        // Keep appending from another thread while the backup runs.
        let stop = DispatchSemaphore(value: 0)
        let writerDone = DispatchSemaphore(value: 0)
        let path = sock
        Thread {
            defer { writerDone.signal() }
            guard let c = try? LedgerClient(path: path) else { return }
            var k = 0
            while stop.wait(timeout: .now()) == .timedOut && k < 2000 {
                _ = try? c.request(#"{"op":"append","events":["# + TestEvents.json(id: "w\(k)", caseID: "C-w\(k)") + "]}")
                k += 1
            }
        }.start()
        let backup = try run(Executables.path("ledgerctl"), ["backup", "--data-dir", data, dir.file("copy")])
        stop.signal()
        writerDone.wait()
        #expect(backup.status == 0, "\(backup.stdout)\(backup.stderr)")
        #expect(backup.stdout.contains("verified"))
        #expect(d.stop() == 0)
        // The copy opens as a ledger: a daemon serves it and it verifies.
        let restored = try DaemonProcess(dataDir: dir.file("copy"), socketPath: dir.file("r.sock"))
        let status = try LedgerClient(path: dir.file("r.sock")).request(#"{"op":"status"}"#)
        guard case .int(let head)? = status["head"] else { Issue.record("no head"); return }
        #expect(head >= 500)
        #expect(restored.stop() == 0)
        #expect(try run(Executables.path("ledgerctl"), ["verify", "--data-dir", dir.file("copy")]).status == 0)
    }

    @Test func tailPrintsCatchUpThenLive() throws {
        let dir = TemporaryDirectory()
        let sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: dir.file("data"), socketPath: sock)
        defer { d.stop() }
        let client = try LedgerClient(path: sock)
        #expect(try client.request(appendLine((0..<3).map { TestEvents.json(id: "t\($0)", caseID: "C-t\($0)") }))["ok"] == .bool(true))
        let tail = Process()
        tail.executableURL = URL(fileURLWithPath: Executables.path("ledgerctl"))
        tail.arguments = ["tail", "--socket", sock, "--from", "2"]
        let outPath = dir.file("tail.out")
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        tail.standardOutput = FileHandle(forWritingAtPath: outPath)
        tail.standardInput = FileHandle.nullDevice
        try tail.run()
        #expect(try client.request(appendLine([TestEvents.json(id: "t-live", caseID: "C-live")]))["ok"] == .bool(true))
        var text = ""
        let deadline = Date().addingTimeInterval(10)
        while text.split(separator: "\n").count < 3 && Date() < deadline {
            usleep(20_000)
            text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        }
        tail.terminate()
        tail.waitUntilExit()
        let positions = text.split(separator: "\n").compactMap { line -> Int64? in
            guard case .object(let o)? = try? JSONParser.parse(String(line)), case .int(let p)? = o["position"] else { return nil }
            return p
        }
        #expect(positions == [2, 3, 4])
    }

    @Test func gracefulShutdownLosesNothingAcknowledged() throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data"), sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: data, socketPath: sock)
        let client = try LedgerClient(path: sock)
        let lines = (0..<400).map { appendLine([TestEvents.json(id: "g\($0)", caseID: "C-g\($0)")]) }
        try client.writeAll(Array((lines.joined(separator: "\n") + "\n").utf8))
        _ = try client.readLine()
        kill(d.process.processIdentifier, SIGTERM)
        var acknowledged: [Int64] = [1]
        while let line = try client.readLine() {
            guard case .object(let o) = try JSONParser.parse(line) else { break }
            if case .array(let results)? = o["results"], case .object(let r)? = results.first, case .int(let p)? = r["position"] {
                acknowledged.append(p)
            }
        }
        #expect(d.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: sock))
        let export = try run(Executables.path("ledgerctl"), ["export", "--data-dir", data])
        let stored = export.stdout.split(separator: "\n").count
        #expect(acknowledged == Array(1...Int64(acknowledged.count)))
        #expect(stored == acknowledged.count, "acknowledged \(acknowledged.count), stored \(stored)")
    }

    @Test func metricsInPrometheusFormat() throws {
        let dir = TemporaryDirectory()
        let port = 20000 + Int(getpid() % 20000)
        let config = dir.file("ledgerd.toml")
        try "metrics_address = \"127.0.0.1:\(port)\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: dir.file("data"), socketPath: sock, extra: ["--config", config])
        defer { d.stop() }
        #expect(try LedgerClient(path: sock).request(appendLine([TestEvents.json(id: "m1", caseID: "C-m1")]))["ok"] == .bool(true))
        _ = try LedgerClient(path: sock).request(#"{"op":"fly"}"#)
        let r = try run("/usr/bin/python3", ["-c", "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
                                            "http://127.0.0.1:\(port)/metrics"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("ledger_events_appended_total 1"))
        #expect(r.stdout.contains("ledger_commit_seconds_bucket"))
        #expect(r.stdout.contains(#"ledger_rejected_requests_total{code="unknown_op"} 1"#))
        #expect(r.stdout.contains("ledger_head_position 1"))
    }

    @Test func sixtyFourClientsShareCommits() throws {
        let dir = TemporaryDirectory()
        let sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: dir.file("data"), socketPath: sock)
        defer { d.stop() }
        let group = DispatchGroup()
        let failed = Mutex<[String]>([])
        for c in 0..<64 {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let client = try LedgerClient(path: sock)
                    for k in 0..<10 {
                        let r = try client.request(#"{"op":"append","events":["# + TestEvents.json(id: "q\(c)-\(k)", caseID: "C-q\(c)-\(k)") + "]}")
                        if r["ok"] != .bool(true) { failed.withLock { $0.append("\(r)") } }
                    }
                } catch {
                    failed.withLock { $0.append("\(error)") }
                }
            }.start()
        }
        group.wait()
        #expect(failed.withLock { $0 }.isEmpty)
        let status = try LedgerClient(path: sock).request(#"{"op":"status"}"#)
        #expect(status["head"] == .int(640))
        guard case .int(let commits)? = status["commits"] else { Issue.record("no commits"); return }
        #expect(commits < 320, "\(commits) commits for 640 single-event requests from 64 clients")
    }
}
