import Foundation
import LedgerClient
import LedgerCore
import LedgerServer
import LedgerStore
import LedgerTestSupport
import Testing

/// CONTRACT §2, "Consistency": read your writes in order on a connection, pipelined or not;
/// acknowledged means visible on every connection; `head` never goes backwards; and the stored
/// projections catch up with the head when appends stop.
@Suite("Consistency", .serialized)
struct ConsistencyTests {
    static func append(_ events: [String]) -> String { #"{"op":"append","events":["# + events.joined(separator: ",") + "]}" }

    static func parse(_ line: [UInt8]?) throws -> JSONObject {
        guard let line, case .object(let o) = try JSONParser.parse(line) else { throw Unexpected("no answer") }
        return o
    }

    /// An append followed on the same connection, without waiting, by status, case, read, report
    /// and another append that needs the first one (expected_version): each is answered as if the
    /// client had waited.
    @Test(arguments: 1...5)
    func pipelinedReadsSeeTheAppendBeforeThem(round: Int) async throws {
        try await withTestServer { server in
            let client = try LedgerClient(path: server.socketPath)
            let c = "C-p\(round)"
            let requested = TestEvents.json(id: "p\(round)-1", caseID: c)
            let screened = TestEvents.json(id: "p\(round)-2", type: "EligibilityScreened", caseID: c, at: "2023-07-04T10:00:00Z",
                                           expectedVersion: 1, data: #"{"result":"eligible"}"#)
            let lines = [
                Self.append([requested]),
                #"{"op":"status"}"#,
                #"{"op":"case","case":"\#(c)"}"#,
                #"{"op":"read","from":1,"limit":5}"#,
                #"{"op":"report"}"#,
                Self.append([screened]),
                #"{"op":"case","case":"\#(c)"}"#,
                #"{"op":"status"}"#,
            ]
            try client.writeAll(Array((lines.joined(separator: "\n") + "\n").utf8))
            var answers: [JSONObject] = []
            for _ in lines { answers.append(try Self.parse(try client.readLine())) }
            #expect(answers.allSatisfy { $0["ok"] == .bool(true) }, "\(answers)")
            #expect(answers[1]["head"] == .int(1))
            #expect(answers[2]["version"] == .int(1) && answers[2]["state"] == .string("requested"))
            guard case .array(let events)? = answers[3]["events"] else { Issue.record("no events"); return }
            #expect(events.count == 1)
            guard case .object(let report)? = answers[4]["report"], case .object(let funnel)? = report["funnel"],
                  case .object(let requestedStage)? = funnel["requested"] else { Issue.record("no report"); return }
            #expect(requestedStage["cases"] == .int(1) && report["position"] == .int(1))
            #expect(answers[6]["version"] == .int(2) && answers[6]["state"] == .string("eligible"))
            #expect(answers[7]["head"] == .int(2))
        }
    }

    /// An append acknowledged on one connection is seen by status, case and read on another that asks
    /// after the acknowledgement; and on a third connection that polls meanwhile, `head` never goes
    /// backwards.
    @Test func acknowledgedMeansVisibleOnEveryConnection() async throws {
        try await withTestServer { server in
            let a = try LedgerClient(path: server.socketPath)
            let b = try LedgerClient(path: server.socketPath)
            let watcher = Task.detached {
                let w = try LedgerClient(path: server.socketPath)
                var last: Int64 = 0
                var polls = 0
                while last < 200 && polls < 20_000 {
                    let s = try w.request(#"{"op":"status"}"#)
                    guard case .int(let head)? = s["head"] else { throw Unexpected("no head") }
                    #expect(head >= last, "head went back from \(last) to \(head)")
                    last = head
                    polls += 1
                }
                return last
            }
            for k in 1...200 {
                let r = try a.request(Self.append([TestEvents.json(id: "v\(k)", caseID: "C-v\(k)")]))
                #expect(r["ok"] == .bool(true))
                let s = try b.request(#"{"op":"status"}"#)
                #expect(s["head"] == .int(Int64(k)))
                let c = try b.request(#"{"op":"case","case":"C-v\#(k)"}"#)
                #expect(c["version"] == .int(1), "\(c)")
                if k % 50 == 0 {
                    let read = try b.request(#"{"op":"read","from":\#(k),"limit":5}"#)
                    guard case .array(let events)? = read["events"] else { Issue.record("no events"); continue }
                    #expect(events.count == 1)
                }
            }
            #expect(try await watcher.value == 200)
        }
    }

    /// `status` carries `projections_position`, the position the projections stored on disk reflect;
    /// when appends stop it reaches the head within `checkpoint_seconds`.
    @Test func projectionsPositionReachesTheHeadWhenIdle() async throws {
        try await withTestServer(configure: { $0.checkpointSeconds = 1 }) { server in
            let client = try LedgerClient(path: server.socketPath)
            let events = (0..<30).map { TestEvents.json(id: "i\($0)", caseID: "C-i\($0)") }
            #expect(try client.request(Self.append(events))["ok"] == .bool(true))
            let first = try client.request(#"{"op":"status"}"#)
            #expect(first["head"] == .int(30))
            #expect(first["role"] == .string("primary"))
            let deadline = Date().addingTimeInterval(5)
            var position: JSONValue? = first["projections_position"]
            while position != .int(30) && Date() < deadline {
                try await Task.sleep(nanoseconds: 100_000_000)
                position = try client.request(#"{"op":"status"}"#)["projections_position"]
            }
            #expect(position == .int(30), "the stored projections did not reach the head within 5 s")
            // Another process reading the directory now has nothing to apply again: its report is the
            // daemon's.
            var options = Ledger.Options()
            options.readOnly = true
            let reader = try Ledger(directory: server.ledger.directory, options: options)
            #expect(reader.status().projectionsPosition == 30)
            #expect(try reader.report() == server.ledger.report())
        }
    }

    /// Reads go on while a long ingest runs on other connections: every status answers, quickly, and
    /// what it says only moves forward.
    @Test func readsDuringALongIngest() async throws {
        try await withTestServer { server in
            let writers = (0..<3).map { w in
                Task.detached {
                    let c = try LedgerClient(path: server.socketPath)
                    for batch in 0..<40 {
                        let events = (0..<100).map { TestEvents.json(id: "w\(w)-\(batch)-\($0)", caseID: "C-w\(w)-\(batch)-\($0)") }
                        let r = try c.request(Self.append(events))
                        #expect(r["ok"] == .bool(true))
                    }
                }
            }
            let reader = try LedgerClient(path: server.socketPath)
            var last: Int64 = 0
            var slowest = 0.0
            var polls = 0
            while last < 12_000 && polls < 100_000 {
                let t0 = Date()
                let s = try reader.request(#"{"op":"status"}"#)
                slowest = max(slowest, Date().timeIntervalSince(t0))
                guard case .int(let head)? = s["head"], case .int(let stored)? = s["projections_position"] else {
                    Issue.record("status without head or projections_position: \(s)")
                    break
                }
                #expect(head >= last && stored <= head)
                last = head
                polls += 1
            }
            for w in writers { try await w.value }
            #expect(last == 12_000)
            // Not a benchmark (scripts/bench measures the p99 under load): a status must never wait
            // for a commit or a checkpoint.
            #expect(slowest < 0.5, "a status took \(slowest) s during the ingest")
        }
    }
}

struct Unexpected: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
