import Foundation
import LedgerClient
import LedgerCore
import LedgerServer
import LedgerStore
import LedgerTestSupport
import Logging
import Testing

@Suite("The socket server", .serialized)
struct ServerTests {
    func append(_ events: [String]) -> String { #"{"op":"append","events":["# + events.joined(separator: ",") + "]}" }

    @Test func appendStatusRead() async throws {
        try await withTestServer { server in
            let client = try LedgerClient(path: server.socketPath)
            let r = try client.request(append([TestEvents.json(id: "a", caseID: "C-a"), TestEvents.json(id: "b", caseID: "C-b")]))
            #expect(r["ok"] == .bool(true))
            #expect(r["results"] == .array([
                .object(JSONObject([("position", .int(1)), ("duplicate", .bool(false))])),
                .object(JSONObject([("position", .int(2)), ("duplicate", .bool(false))])),
            ]))
            let status = try client.request(#"{"op":"status"}"#)
            #expect(status["head"] == .int(2))
            #expect(status["head_hash"] == .string(try server.ledger.head.hashHex))
            let read = try client.request(#"{"op":"read","from":2,"limit":10}"#)
            guard case .array(let events)? = read["events"], case .object(let first)? = events.first else {
                Issue.record("no events"); return
            }
            #expect(events.count == 1)
            #expect(first["position"] == .int(2))
            guard case .string(let hash)? = first["hash"] else { Issue.record("no hash"); return }
            #expect(hash.count == 64)
            guard case .object(let e)? = first["event"] else { Issue.record("no event"); return }
            #expect(e["id"] == .string("b"))
        }
    }

    @Test func errorsHaveCodesAndKeepTheConnection() async throws {
        try await withTestServer { server in
            let client = try LedgerClient(path: server.socketPath)
            let cases: [(String, String, Int?)] = [
                ("not json", "malformed", nil),
                ("[1,2]", "malformed", nil),
                (#"{"events":[]}"#, "malformed", nil),
                (#"{"op":"fly"}"#, "unknown_op", nil),
                (#"{"op":"append","events":[]}"#, "invalid_event", nil),
                (#"{"op":"read","limit":10001}"#, "too_large", nil),
                (append([TestEvents.json(id: "ok", caseID: "C-ok"), TestEvents.json(id: "bad", type: "Nope", caseID: "C-x")]), "unknown_type", 1),
                (append([#"{"id":"x"}"#]), "invalid_event", 0),
            ]
            for (line, code, index) in cases {
                let r = try client.request(line)
                #expect(r["ok"] == .bool(false), "\(line)")
                guard case .object(let error)? = r["error"] else { Issue.record("no error for \(line)"); continue }
                #expect(error["code"] == .string(code), "\(line)")
                #expect(error["index"] == index.map { .int(Int64($0)) }, "\(line)")
                guard case .string(let message)? = error["message"] else { Issue.record("no message"); continue }
                #expect(!message.isEmpty)
            }
            // Nothing of the failed requests was stored.
            #expect(try server.ledger.head.position == 0)
            #expect(try client.request(#"{"op":"status"}"#)["ok"] == .bool(true))
        }
    }

    @Test func tooLargeLineIsDiscardedAndConnectionStaysUsable() async throws {
        try await withTestServer(configure: { $0.maxLineBytes = 4096 }) { server in
            let client = try LedgerClient(path: server.socketPath)
            // Over the limit, sent in pieces, then a normal request on the same connection.
            try client.writeAll(Array(#"{"op":"append","events":[""#.utf8))
            for _ in 0..<50 { try client.writeAll([UInt8](repeating: UInt8(ascii: "x"), count: 1000)) }
            try client.writeAll(Array("\"]}\n".utf8))
            try client.send(append([TestEvents.json(id: "after", caseID: "C-after")]))
            let first = try JSONParser.parse(try #require(try client.readLine()))
            guard case .object(let o) = first, case .object(let e)? = o["error"] else { Issue.record("expected an error"); return }
            #expect(e["code"] == .string("too_large"))
            let second = try JSONParser.parse(try #require(try client.readLine()))
            guard case .object(let o2) = second else { Issue.record("expected an object"); return }
            #expect(o2["ok"] == .bool(true))
            #expect(try server.ledger.head.position == 1)
        }
    }

    @Test func pipelinedResponsesComeInRequestOrder() async throws {
        try await withTestServer { server in
            let client = try LedgerClient(path: server.socketPath)
            var expected: [String] = []
            var lines: [String] = []
            for k in 0..<300 {
                switch k % 3 {
                case 0:
                    lines.append(append([TestEvents.json(id: "p\(k)", caseID: "C-p\(k)")]))
                    expected.append("append")
                case 1:
                    lines.append(#"{"op":"status"}"#)
                    expected.append("status")
                default:
                    lines.append(#"{"op":"bogus"}"#)
                    expected.append("error")
                }
            }
            // Write everything before reading anything.
            try client.writeAll(Array((lines.joined(separator: "\n") + "\n").utf8))
            var lastPosition: Int64 = 0
            for kind in expected {
                guard case .object(let o) = try JSONParser.parse(try #require(try client.readLine())) else {
                    Issue.record("not an object"); return
                }
                switch kind {
                case "append":
                    guard case .array(let results)? = o["results"], case .object(let r)? = results.first,
                          case .int(let p)? = r["position"] else { Issue.record("expected an append result, got \(o)"); return }
                    #expect(p == lastPosition + 1)
                    lastPosition = p
                case "status":
                    #expect(o["head"] != nil)
                default:
                    #expect(o["ok"] == .bool(false))
                }
            }
            #expect(lastPosition == 100)
        }
    }

    @Test func concurrentClientsGetDistinctGapFreePositions() async throws {
        try await withTestServer { server in
            let path = server.socketPath
            let positions = try await withThrowingTaskGroup(of: [Int64].self) { group in
                for c in 0..<16 {
                    group.addTask {
                        let client = try LedgerClient(path: path)
                        var mine: [Int64] = []
                        for k in 0..<25 {
                            let event = TestEvents.json(id: "c\(c)-\(k)", caseID: "C-c\(c)-\(k)")
                            let r = try client.request(#"{"op":"append","events":["# + event + "]}")
                            guard case .array(let results)? = r["results"], case .object(let o)? = results.first,
                                  case .int(let p)? = o["position"] else { throw Failure(description: "\(r)") }
                            mine.append(p)
                        }
                        return mine
                    }
                }
                var all: [Int64] = []
                for try await list in group {
                    #expect(list == list.sorted())  // one connection's appends keep their order
                    all += list
                }
                return all
            }
            #expect(positions.sorted() == Array(1...400))
            #expect(try server.ledger.verify().ok)
        }
    }

    @Test func shutdownAnswersWhatWasQueuedAndRemovesTheSocket() async throws {
        let s = try await TestServer.start()
        let client = try LedgerClient(path: s.socketPath)
        let lines = (0..<200).map { append([TestEvents.json(id: "s\($0)", caseID: "C-s\($0)")]) }
        try client.writeAll(Array((lines.joined(separator: "\n") + "\n").utf8))
        // Wait for the first answer so the requests are in, then stop while the rest are in flight.
        _ = try client.readLine()
        await s.stop()
        var answered = 1
        while let line = try client.readLine() {
            guard case .object(let o) = try JSONParser.parse(line) else { break }
            if o["ok"] == .bool(true) { answered += 1 } else {
                guard case .object(let e)? = o["error"] else { break }
                #expect(e["code"] == .string("unavailable"))
            }
        }
        // Every acknowledged append is stored, and nothing else.
        #expect(try s.ledger.head.position == UInt64(answered))
        #expect(!FileManager.default.fileExists(atPath: s.socketPath))
    }

    @Test func aSecondServerCannotTakeTheSocket() async throws {
        try await withTestServer { server in
            let dir = TemporaryDirectory()
            var config = Configuration()
            config.dataDir = dir.file("data")
            config.socket = server.socketPath
            let other = try LedgerServer(ledger: try Ledger(directory: config.dataDir, options: .creating), configuration: config,
                                         logger: .init(label: "test"))
            await #expect(throws: (any Error).self) { try await other.start() }
            // The first one still serves.
            #expect(try LedgerClient(path: server.socketPath).request(#"{"op":"status"}"#)["ok"] == .bool(true))
        }
    }

    @Test func caseAndReport() async throws {
        try await withTestServer { server in
            let client = try LedgerClient(path: server.socketPath)
            let events = [
                TestEvents.json(id: "k1", caseID: "C-k"),
                TestEvents.json(id: "k2", type: "EligibilityScreened", caseID: "C-k", at: "2023-07-04T10:00:00Z", data: #"{"result":"eligible"}"#),
            ]
            #expect(try client.request(append(events))["ok"] == .bool(true))
            let c = try client.request(#"{"op":"case","case":"C-k"}"#)
            #expect(c["state"] == .string("eligible"))
            #expect(c["version"] == .int(2))
            guard case .array(let list)? = c["events"] else { Issue.record("no events"); return }
            #expect(list.count == 2)
            let none = try client.request(#"{"op":"case","case":"C-none"}"#)
            #expect(none["state"] == .string("new"))
            #expect(none["version"] == .int(0))
            let bad = try client.request(append([TestEvents.json(id: "k3", type: "Interviewed", caseID: "C-k", at: "2023-07-05T10:00:00Z", data: #"{"interviewer":"IOM"}"#)]))
            guard case .object(let e)? = bad["error"] else { Issue.record("expected an error"); return }
            #expect(e["code"] == .string("invalid_transition"))
            #expect(e["message"] == .string("case C-k is `eligible`; Interviewed needs it to be `scheduled`"))

            let r = try client.request(#"{"op":"report"}"#)
            guard case .object(let report)? = r["report"] else { Issue.record("no report"); return }
            #expect(report["position"] == .int(2))
            guard case .object(let funnel)? = report["funnel"], case .object(let eligible)? = funnel["eligible"] else { Issue.record("no funnel"); return }
            #expect(eligible["persons"] == .int(3))
            let cut = try client.request(#"{"op":"report","as_of":"2023-07-03T23:00:00Z"}"#)
            guard case .object(let cutReport)? = cut["report"], case .object(let f2)? = cutReport["funnel"],
                  case .object(let e2)? = f2["eligible"] else { Issue.record("no cut report"); return }
            #expect(e2["cases"] == .int(0))
            #expect(cutReport["as_of"] == .string("2023-07-03T23:00:00Z"))
            let wrong = try client.request(#"{"op":"report","as_of":"soon"}"#)
            #expect(wrong["ok"] == .bool(false))
        }
    }

    @Test func answersAfterTheClientClosesItsSide() async throws {
        try await withTestServer { server in
            let client = try LedgerClient(path: server.socketPath)
            try client.send(#"{"op":"report"}"#)
            try client.send(#"{"op":"status"}"#)
            client.shutdownWrite()
            #expect(try client.readLine() != nil)
            #expect(try client.readLine() != nil)
            #expect(try client.readLine() == nil)  // then the daemon closes
        }
    }

    @Test func halfALineAtDisconnectIsNotExecuted() async throws {
        try await withTestServer { server in
            let client = try LedgerClient(path: server.socketPath)
            try client.writeAll(Array(append([TestEvents.json(id: "half", caseID: "C-half")]).utf8))  // no newline
            client.shutdownWrite()
            #expect(try client.readLine() == nil)
            #expect(try server.ledger.head.position == 0)
        }
    }

    @Test func subscribeCatchesUpThenFollowsLive() async throws {
        try await withTestServer { server in
            let writer = try LedgerClient(path: server.socketPath)
            let first = (0..<30).map { TestEvents.json(id: "sub-\($0)", caseID: "C-sub-\($0)") }
            #expect(try writer.request(append(first))["ok"] == .bool(true))
            let subscriber = try LedgerClient(path: server.socketPath)
            try subscriber.send(#"{"op":"subscribe","from":11}"#)
            let newOnly = try LedgerClient(path: server.socketPath)
            try newOnly.send(#"{"op":"subscribe"}"#)
            var seen: [Int64] = []
            for _ in 0..<20 {
                guard case .object(let o) = try JSONParser.parse(try #require(try subscriber.readLine())),
                      case .object(let r)? = o["event"], case .int(let p)? = r["position"] else { Issue.record("not an event"); return }
                seen.append(p)
            }
            #expect(seen == Array(11...30))
            // Live: events committed after the subscription arrive too, in order.
            for k in 0..<5 {
                #expect(try writer.request(append([TestEvents.json(id: "live-\(k)", caseID: "C-live-\(k)")]))["ok"] == .bool(true))
            }
            var live: [Int64] = []
            var liveNew: [Int64] = []
            for _ in 0..<5 {
                guard case .object(let o) = try JSONParser.parse(try #require(try subscriber.readLine())),
                      case .object(let r)? = o["event"], case .int(let p)? = r["position"] else { Issue.record("not an event"); return }
                live.append(p)
                guard case .object(let o2) = try JSONParser.parse(try #require(try newOnly.readLine())),
                      case .object(let r2)? = o2["event"], case .int(let p2)? = r2["position"] else { Issue.record("not an event"); return }
                liveNew.append(p2)
            }
            #expect(live == Array(31...35))
            #expect(liveNew == Array(31...35))
            #expect(try writer.request(#"{"op":"status"}"#)["subscribers"] == .int(2))
        }
    }

    @Test func aSubscriberThatStopsReadingIsDropped() async throws {
        try await withTestServer(configure: { $0.subscriberStallSeconds = 1 }) { server in
            let writer = try LedgerClient(path: server.socketPath)
            // Enough events to fill the subscriber's socket buffers many times over.
            for b in 0..<20 {
                let batch = (0..<1000).map { TestEvents.json(id: "st\(b)-\($0)", caseID: "C-st\(b)-\($0)") }
                #expect(try writer.request(append(batch))["ok"] == .bool(true))
            }
            let subscriber = try LedgerClient(path: server.socketPath)
            try subscriber.send(#"{"op":"subscribe","from":1}"#)
            // Do not read. The daemon stops sending when the socket is full, then drops it.
            var subscribers: JSONValue? = .int(1)
            for _ in 0..<100 {
                try await Task.sleep(for: .milliseconds(100))
                subscribers = try writer.request(#"{"op":"status"}"#)["subscribers"]
                if subscribers == .int(0) { break }
            }
            #expect(subscribers == .int(0), "the stalled subscriber was not dropped")
            // What it finally reads ends with the daemon's message, then the connection closes.
            var last: [UInt8]?
            var count = 0
            while let line = try subscriber.readLine() { last = line; count += 1 }
            #expect(count < 20_000)
            guard let last, case .object(let o) = try JSONParser.parse(last), case .object(let e)? = o["error"] else {
                Issue.record("no final error line after \(count) lines: \(last.map { String(decoding: $0.prefix(300), as: UTF8.self) } ?? "none")"); return
            }
            #expect(e["code"] == .string("unavailable"))
            guard case .string(let message)? = e["message"] else { return }
            #expect(message.contains("subscribe again from position"))
        }
    }

    struct Failure: Error { let description: String }
}

@Suite("Configuration")
struct ConfigurationTests {
    @Test func theShippedFileHoldsTheDefaults() throws {
        var fromFile = Configuration()
        try fromFile.apply(file: Executables.packageRoot + "/Config/ledgerd.toml")
        #expect(fromFile == Configuration())
    }

    @Test func environmentAndErrors() throws {
        var c = Configuration()
        try c.apply(environment: ["LEDGERD_SOCKET": "/run/x.sock", "LEDGERD_APPEND_GROUPS": "ledger,ops", "OTHER": "1"])
        #expect(c.socket == "/run/x.sock")
        #expect(c.appendGroups == ["ledger", "ops"])
        #expect(throws: Configuration.Problem.self) { try c.set("max_line_bytes", "ten") }
        #expect(throws: Configuration.Problem.self) { try c.set("no_such_key", "1") }
    }
}
