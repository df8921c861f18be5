import ArgumentParser
import Foundation
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
            let head = ledger.head
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
            let report = try verifyShowingProgress(try data.open(), label: "verify")
            if let problem = report.problem {
                print("verify: FAILED at position \(problem.position): \(problem.message)")
                throw ExitCode(1)
            }
            print("verify: ok, \(report.checked) events, head \(report.head.position) \(report.head.hashHex)")
        }
    }
}

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print stored events as they are committed, until interrupted.",
        discussion: """
            Subscribes through the daemon and prints each stored event {"event":E,"hash":…,"position":N,\
            "recorded_at":…} on its own line: from --from on (catching up first), or only new ones. \
            Exits 1 if the daemon drops the subscription or goes away.
            """)

    @OptionGroup var socket: SocketOptions
    @Option(help: ArgumentHelp("The first position to print (default: new events only).", valueName: "position"))
    var from: UInt64?

    func run() throws {
        try reporting {
            let client = try socket.connect()
            try client.send(from.map { #"{"op":"subscribe","from":\#($0)}"# } ?? #"{"op":"subscribe"}"#)
            var out = Output()
            let prefix = Array(#"{"event":"#.utf8)
            while true {
                if !client.hasBufferedLine { out.flush() }
                guard let line = try client.readLine() else {
                    out.flush()
                    throw Failure("the daemon closed the subscription")
                }
                guard line.starts(with: prefix), line.last == UInt8(ascii: "}") else {
                    out.flush()
                    throw Failure("the daemon ended the subscription: \(String(decoding: line, as: UTF8.self))")
                }
                out.line(Array(line[prefix.count..<(line.count - 1)]))
            }
        }
    }
}

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a consistent, compacted copy of the ledger, and verify it.",
        discussion: """
            Copies the data directory's LMDB environment from one snapshot (LMDB's mdb_env_copy2 with \
            compaction) while ledgerd goes on appending, into DEST (created mode 0700; it must not hold a \
            ledger yet), then opens the copy as a ledger and verifies its chain and projections. To \
            restore, stop ledgerd and start it with --data-dir DEST (or move DEST into place).
            """)

    @OptionGroup var data: DataDirOptions
    @Argument(help: ArgumentHelp("The directory to write the copy into.", valueName: "dest"))
    var dest: String

    func run() throws {
        try reporting {
            let ledger = try data.open()
            let used = ledger.storage.usedBytes
            let progress = Progress("backup")
            let started = Progress.now()
            // LMDB's copy reports nothing: show the copy's size growing, from another thread.
            let done = DoneFlag()
            let path = dest + "/data.mdb"
            let watcher = Thread {
                while !done.isSet {
                    var st = stat()
                    if stat(path, &st) == 0 { progress.update(UInt64(st.st_size), of: UInt64(used), unit: "bytes") }
                    usleep(200_000)
                }
            }
            watcher.start()
            defer { done.set() }
            do { try ledger.backup(to: dest) } catch { throw Failure("\(error)") }
            done.set()
            progress.finish()
            var st = stat()
            stat(path, &st)
            let seconds = Progress.now() - started
            var options = Ledger.Options()
            options.readOnly = true
            let copy: Ledger
            do { copy = try Ledger(directory: dest, options: options) } catch { throw Failure("the copy does not open as a ledger: \(error)") }
            let report = try verifyShowingProgress(copy, label: "verify copy")
            if let problem = report.problem {
                print("backup: the copy in \(dest) FAILED verification at position \(problem.position): \(problem.message)")
                throw ExitCode(1)
            }
            print("backup: \(dest) holds \(report.checked) events, head \(report.head.position) \(report.head.hashHex); \(st.st_size >> 10) KiB in \(String(format2: seconds)) s; verified")
        }
    }
}

/// `Ledger.verify` with a progress bar on a terminal.
func verifyShowingProgress(_ ledger: Ledger, label: String) throws -> VerifyReport {
    let progress = Progress(label)
    let report = try ledger.verify { done, total in progress.update(done, of: total) }
    progress.finish()
    return report
}

/// A flag set once, read from another thread.
final class DoneFlag: @unchecked Sendable {
    // @unchecked: `value` is only touched under `lock`.
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
