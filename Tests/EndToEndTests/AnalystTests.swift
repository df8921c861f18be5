import Crypto
import Foundation
import LedgerClient
import LedgerCore
import LedgerTestSupport
import Testing

/// import, dump, replay and verify with the built programs, on a random valid history.
@Suite("Analyst workflow, end to end", .serialized)
struct AnalystTests {
    func ndjson(_ events: [Event]) -> String {
        events.map { String(decoding: $0.canonical, as: UTF8.self) }.joined(separator: "\n") + "\n"
    }

    /// `ledgerctl dump --data-dir` beside a running daemon gives the daemon's own `report`: right
    /// after an import (the reader applies the events after the stored projections itself) and once
    /// the daemon has checkpointed (nothing to apply).
    @Test func dumpBesideTheDaemonEqualsTheReportOp() throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data"), sock = dir.file("s.sock")
        let events = RandomHistory.events(seed: 12, cases: 300)
        let file = dir.file("history.ndjson")
        try ndjson(events).write(toFile: file, atomically: true, encoding: .utf8)
        let config = dir.file("ledgerd.toml")
        try "checkpoint_seconds = 1\n".write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(dataDir: data, socketPath: sock, extra: ["--config", config])
        defer { daemon.stop() }
        let ctl = Executables.path("ledgerctl")
        #expect(try run(ctl, ["import", file, "--socket", sock]).status == 0)
        let client = try LedgerClient(path: sock)
        func reportOp() throws -> [UInt8] {
            guard case .object(let r)? = try client.request(#"{"op":"report"}"#)["report"] else { throw Unexpected("no report") }
            return CanonicalJSON.encode(.object(r))
        }
        func dumped(_ name: String) throws -> [UInt8] {
            let out = dir.file(name)
            let dump = try run(ctl, ["dump", "--data-dir", data, "--out", out])
            #expect(dump.status == 0, "\(dump.stderr)")
            let bytes = try #require(FileManager.default.contents(atPath: out + "/report.json"))
            return CanonicalJSON.encode(try JSONParser.parse([UInt8](bytes)))
        }
        let before = try client.request(#"{"op":"status"}"#)
        #expect(before["head"] == .int(Int64(events.count)))
        #expect(try dumped("early") == (try reportOp()))
        var stored: JSONValue? = before["projections_position"]
        for _ in 0..<50 where stored != .int(Int64(events.count)) {
            Thread.sleep(forTimeInterval: 0.1)
            stored = try client.request(#"{"op":"status"}"#)["projections_position"]
        }
        #expect(stored == .int(Int64(events.count)), "the daemon did not checkpoint within 5 s")
        #expect(try dumped("late") == (try reportOp()))
        let verify = try run(ctl, ["verify", "--data-dir", data])
        #expect(verify.status == 0, "\(verify.stdout)")
    }

    @Test func importTwiceDumpReplayVerify() throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data"), sock = dir.file("s.sock")
        let events = RandomHistory.events(seed: 11, cases: 400)
        let file = dir.file("history.ndjson")
        // Two bad lines among the good ones.
        var text = ndjson(events)
        text += #"{"id":"x1","type":"Arrived","case":"C-nobody","at":"2023-08-01T00:00:00Z","data":{"referral":"R1","country":"USA"}}"# + "\n"
        text += "{oops\n"
        try text.write(toFile: file, atomically: true, encoding: .utf8)

        var daemon: DaemonProcess? = try DaemonProcess(dataDir: data, socketPath: sock)
        let ctl = Executables.path("ledgerctl")
        let first = try run(ctl, ["import", file, "--socket", sock, "--batch", "97"])
        #expect(first.status == 1)
        #expect(first.stdout.contains("import: \(events.count) appended, 0 duplicate, 2 rejected"), "\(first.stdout)")
        #expect(first.stdout.contains("line \(events.count + 1): invalid_transition"))
        #expect(first.stdout.contains("line \(events.count + 2): malformed"))
        let second = try run(ctl, ["import", file, "--socket", sock])
        #expect(second.stdout.contains("import: 0 appended, \(events.count) duplicate, 2 rejected"), "\(second.stdout)")
        let status = try LedgerClient(path: sock).request(#"{"op":"status"}"#)
        #expect(status["head"] == .int(Int64(events.count)))

        // Dump while the daemon runs.
        let out = dir.file("out")
        let dump = try run(ctl, ["dump", "--data-dir", data, "--out", out, "--min-cell", "10", "--html"])
        #expect(dump.status == 0, "\(dump.stderr)")
        let manifestData = try #require(FileManager.default.contents(atPath: out + "/manifest.json"))
        guard case .object(let manifest) = try JSONParser.parse([UInt8](manifestData)), case .object(let files)? = manifest["files"] else {
            Issue.record("no manifest"); return
        }
        #expect(manifest["position"] == status["head"])
        #expect(manifest["head_hash"] == status["head_hash"])
        #expect(manifest["as_of"] == .null)
        #expect(Set(files.keys) == ["report.json", "funnel.csv", "weekly.csv", "outside_window.csv", "durations.csv", "states.csv",
                                    "pathway_by_office.csv", "report.html"])
        for (name, hash) in files.members {
            let bytes = try #require(FileManager.default.contents(atPath: out + "/" + name))
            #expect(hash == .string(SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()), "\(name)")
        }
        let funnel = try String(contentsOfFile: out + "/funnel.csv", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(funnel.first == "dimension,key,stage,cases,persons")
        #expect(try String(contentsOfFile: out + "/weekly.csv", encoding: .utf8).hasPrefix("week,type,count\n"))
        #expect(try String(contentsOfFile: out + "/durations.csv", encoding: .utf8).hasPrefix("measure,count,p50_seconds,p90_seconds\n"))
        // --min-cell 10: no count from 1 to 9 in any split, in CSV or JSON.
        var suppressed = 0
        for row in funnel.dropFirst() where !row.hasPrefix("all,") {
            let cells = row.split(separator: ",", omittingEmptySubsequences: false).suffix(2)
            for c in cells {
                if c.isEmpty { suppressed += 1; continue }
                let n = try #require(Int(c))
                #expect(n == 0 || n >= 10, "\(row)")
            }
        }
        #expect(suppressed > 0)
        for row in try String(contentsOfFile: out + "/pathway_by_office.csv", encoding: .utf8).split(separator: "\n").dropFirst() {
            for c in row.split(separator: ",", omittingEmptySubsequences: false).suffix(2) where !c.isEmpty {
                let n = try #require(Int(c))
                #expect(n == 0 || n >= 10, "\(row)")
            }
        }
        let reportData = try #require(FileManager.default.contents(atPath: out + "/report.json"))
        guard case .object(let report) = try JSONParser.parse([UInt8](reportData)) else { Issue.record("no report"); return }
        func scan(_ v: JSONValue) {
            switch v {
            case .int(let n): #expect(n == 0 || n >= 10)
            case .object(let o): o.members.forEach { scan($0.value) }
            case .array(let a): a.forEach(scan)
            default: break
            }
        }
        for key in ["by_office_country", "by_nationality", "by_pathway"] { scan(report[key] ?? .null) }
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(html.contains("<svg"))
        #expect(!html.contains("src=") && !html.contains("href=") && !html.contains("@import"))

        // --as-of: a cut in the past has fewer registrations.
        let cutOut = dir.file("cut")
        #expect(try run(ctl, ["dump", "--data-dir", data, "--out", cutOut, "--as-of", "2023-07-01"]).status == 0)
        let cutManifest = try String(contentsOfFile: cutOut + "/manifest.json", encoding: .utf8)
        #expect(cutManifest.contains(#""as_of":"2023-07-01T23:59:59Z""#))

        // Replay needs the daemon stopped; then it equals what was kept while ingesting.
        let busy = try run(ctl, ["replay", "--data-dir", data])
        #expect(busy.status == 1)
        #expect(busy.stderr.contains("stop"))
        #expect(daemon!.stop() == 0)
        daemon = nil
        let replay = try run(ctl, ["replay", "--data-dir", data])
        #expect(replay.status == 0, "\(replay.stdout)\(replay.stderr)")
        #expect(replay.stdout.contains("identical to the projections kept while ingesting"))
        let verify = try run(ctl, ["verify", "--data-dir", data])
        #expect(verify.status == 0, "\(verify.stdout)")
        // The dump after the replay is byte-identical (but for the manifest's time).
        let again = dir.file("again")
        #expect(try run(ctl, ["dump", "--data-dir", data, "--out", again, "--min-cell", "10"]).status == 0)
        #expect(FileManager.default.contents(atPath: again + "/report.json") == reportData)
    }

    @Test("a generated pilot history: the report equals an independent computation")
    func generatedHistoryMatchesIndependentReport() throws {
        let dir = TemporaryDirectory()
        let root = Executables.packageRoot
        let file = dir.file("pilot.ndjson")
        let gen = try run("/usr/bin/python3", [root + "/scripts/generate-pilot-data", "--seed", "3", "--cases", "1500", "--out", file])
        #expect(gen.status == 0, "\(gen.stderr)")
        let data = dir.file("data"), sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: data, socketPath: sock)
        defer { d.stop() }
        let imp = try run(Executables.path("ledgerctl"), ["import", file, "--socket", sock])
        #expect(imp.status == 0, "\(imp.stdout)")
        #expect(imp.stdout.contains(" 0 rejected"))
        for cut in [nil, "2023-10-17"] as [String?] {
            let out = dir.file("dump-\(cut ?? "all")")
            #expect(try run(Executables.path("ledgerctl"), ["dump", "--data-dir", data, "--out", out] + (cut.map { ["--as-of", $0] } ?? [])).status == 0)
            let independent = try run("/usr/bin/python3", [root + "/scripts/compute-report", file] + (cut.map { ["--as-of", $0] } ?? []))
            #expect(independent.status == 0, "\(independent.stderr)")
            guard case .object(var ours) = try JSONParser.parse([UInt8](try #require(FileManager.default.contents(atPath: out + "/report.json")))),
                  case .object(let theirs) = try JSONParser.parse(independent.stdout) else { Issue.record("unparsable reports"); return }
            ours.members.removeAll { $0.key == "position" || $0.key == "head_hash" }
            #expect(ours.members.count == theirs.members.count)
            for (key, value) in ours.members {
                #expect(value.sortedMembers == theirs[key]?.sortedMembers, "\(key) differs at cut \(cut ?? "none")")
            }
        }
    }
}


struct Unexpected: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
