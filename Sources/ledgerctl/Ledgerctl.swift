import ArgumentParser
import LedgerClient
import LedgerCore
import LedgerStore
#if canImport(Glibc)
import Glibc
#endif

@main
struct Ledgerctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledgerctl",
        abstract: "Operate and read the Safe Mobility ledger.",
        discussion: """
            Commands with --data-dir read the data directory directly (safe while ledgerd runs); commands \
            with --socket talk to the daemon. Exit codes: 0 success, 1 the operation found a problem, \
            2 usage error.
            """,
        version: "0.1.0",
        subcommands: [Status.self, Import.self, Export.self, Tail.self, Verify.self, Replay.self, Dump.self, Backup.self, Upgrade.self])

    /// Runs the command; usage errors exit 2 (the contract's code) instead of 64.
    static func main() {
        // A parent may have left SIGINT/SIGTERM blocked (some test runners do): a command that runs
        // until interrupted (tail) must still stop on them.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGTERM)
        sigprocmask(SIG_UNBLOCK, &unblock, nil)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                writeStderr(fullMessage(for: error) + "\n")
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Options for commands that read the data directory.
struct DataDirOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The ledger's data directory.", valueName: "dir"))
    var dataDir: String

    func open() throws -> Ledger {
        var options = Ledger.Options()
        options.readOnly = true
        do {
            return try Ledger(directory: dataDir, options: options)
        } catch {
            throw Failure("\(error)")
        }
    }
}

/// Options for commands that go through the daemon.
struct SocketOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The daemon's Unix socket.", valueName: "path"))
    var socket: String = "var/ledgerd.sock"

    func connect() throws -> LedgerClient {
        do { return try LedgerClient(path: socket) } catch { throw Failure("\(error)") }
    }
}

/// A failure the user can act on: printed as `ledgerctl: <message>`, exit code 1.
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Writes to standard output through a buffer.
struct Output {
    private var buffer: [UInt8] = []

    init() { buffer.reserveCapacity(1 << 16) }

    mutating func line(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        buffer.append(0x0A)
        if buffer.count >= 1 << 16 { flush() }
    }

    mutating func line(_ text: String) { line(Array(text.utf8)) }

    mutating func flush() {
        var off = 0
        while off < buffer.count {
            let n = buffer[off...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                Glibc.exit(errno == EPIPE ? 0 : 1)
            }
            off += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Progress on standard error, only when it is a terminal.
final class Progress: @unchecked Sendable {
    // @unchecked: ledgerctl calls it from its one thread only (the store's progress callbacks run
    // synchronously on the caller's thread); `Sendable` only lets it sit in an options struct.
    let label: String
    let enabled = isatty(2) == 1
    private var last = 0.0
    private let started = Progress.now()

    init(_ label: String) { self.label = label }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Shows `done` of `total` (in `unit`) with a bar, the rate and the time left; at most 5 times a
    /// second unless `force`.
    func update(_ done: UInt64, of total: UInt64, unit: String = "events", extra: String = "", force: Bool = false) {
        guard enabled else { return }
        let t = Progress.now()
        guard force || t - last > 0.2 else { return }
        last = t
        let rate = Double(done) / max(t - started, 1e-6)
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 0
        let eta = rate > 0 && total > done ? Double(total - done) / rate : 0
        let filled = Int(fraction * 24)
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: 24 - filled)
        let amount = unit == "bytes" ? "\(done >> 20)/\(total >> 20) MiB" : "\(done)/\(total) \(unit)"
        let rateText = unit == "bytes" ? "\(Int(rate) >> 20) MiB/s" : "\(Int(rate))/s"
        let text = "\r\(label) [\(bar)] \(Int(fraction * 100))% \(amount) \(extra.isEmpty ? "" : extra + " ")\(rateText) eta \(Int(eta))s   "
        writeStderr(text)
    }

    func finish() {
        guard enabled else { return }
        writeStderr("\n")
    }
}

/// Writes `text` to standard error, unbuffered.
func writeStderr(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

extension ParsableCommand {
    /// Runs `body`, printing a `Failure` as one line on stderr and exiting 1.
    func reporting(_ body: () throws -> Void) throws {
        do { try body() } catch let f as Failure {
            writeStderr("ledgerctl: \(f.description)\n")
            throw ExitCode(1)
        }
    }
}
