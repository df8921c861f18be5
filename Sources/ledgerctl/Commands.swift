import ArgumentParser
import LedgerClient
import LedgerCore
import LedgerStore
#if canImport(Glibc)
import Glibc
#endif

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the daemon's head position and hash.",
        discussion: "Asks the running daemon over its socket and prints one `key: value` line per figure.")

    @OptionGroup var socket: SocketOptions
    @Flag(name: .long, help: "Print the daemon's JSON answer as it is.")
    var json = false

    func run() throws {
        try reporting {
            let client = try socket.connect()
            let line = "{\"op\":\"status\"}"
            try client.send(line)
            guard let answer = try client.readLine() else { throw Failure("the daemon closed the connection") }
            if json {
                print(String(decoding: answer, as: UTF8.self))
                return
            }
            guard case .object(let o) = try JSONParser.parse(answer), o["ok"] == .bool(true) else {
                throw Failure("the daemon refused status: \(String(decoding: answer, as: UTF8.self))")
            }
            for (key, value) in o.members where key != "ok" {
                switch value {
                case .string(let s): print("\(key): \(s)")
                case .int(let n): print("\(key): \(n)")
                default: print("\(key): \(String(decoding: CanonicalJSON.encode(value), as: UTF8.self))")
                }
            }
        }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write stored events, one JSON line each, in position order.",
        discussion: """
            Each line is a stored event {"event":E,"hash":…,"position":N,"recorded_at":…} in canonical form. \
            Reads the data directory directly, so it works while ledgerd runs; the export ends at the head \
            it reaches. Anyone can recompute the hash chain from it (docs/STORAGE.md).
            """)

    @OptionGroup var data: DataDirOptions
    @Option(help: ArgumentHelp("The first position to write.", valueName: "position"))
    var from: UInt64 = 1
    @Option(help: ArgumentHelp("The last position to write (default: the head).", valueName: "position"))
    var to: UInt64?

    func run() throws {
        try reporting {
            let ledger = try data.open()
            let head = try ledger.head()
            let last = min(to ?? head.position, head.position)
            let progress = Progress("export")
            var out = Output()
            var count: UInt64 = 0
            try ledger.forEach(from: from, to: last) { e in
                out.line(e.record)
                count += 1
                if count % 4096 == 0 { progress.update(count, of: last >= from ? last - from + 1 : 0) }
            }
            out.flush()
            progress.update(count, of: count, force: true)
            progress.finish()
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Recompute the hash chain and check every stored event and index.",
        discussion: """
            Exits 0 when everything matches, 1 naming the first bad position otherwise. Reads the data \
            directory directly; safe while ledgerd runs.
            """)

    @OptionGroup var data: DataDirOptions

    func run() throws {
        try reporting {
            let ledger = try data.open()
            let progress = Progress("verify")
            let report = try ledger.verify { done, total in progress.update(done, of: total) }
            progress.finish()
            if let problem = report.problem {
                print("verify: FAILED at position \(problem.position): \(problem.message)")
                throw ExitCode(1)
            }
            print("verify: ok, \(report.checked) events, head \(report.head.position) \(report.head.hashHex)")
        }
    }
}
