import ArgumentParser
import Foundation
import LedgerClient
import LedgerCore

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Append the events of an NDJSON file through the daemon.",
        discussion: """
            Reads one event envelope per line (blank lines are skipped) from FILE, or standard input for \
            `-`, and appends them in requests of --batch events, one request in flight, in file order. \
            Events already in the ledger with the same content count as duplicates, so importing a file \
            twice appends nothing the second time. A rejected event is reported with its line number and \
            error code and left out; the rest of its batch is sent again (an event that needed it is then \
            rejected too). Exit 1 when any line was rejected.
            """)

    @Argument(help: ArgumentHelp("The NDJSON file, or - for standard input.", valueName: "file"))
    var file: String

    @OptionGroup var socket: SocketOptions

    @Option(help: ArgumentHelp("Events per append request (1 to 10000).", valueName: "n"))
    var batch: Int = 1000

    @Flag(help: "Print only the summary, not each reject.")
    var quiet = false

    func validate() throws {
        guard (1...Event.maxBatch).contains(batch) else { throw ValidationError("--batch must be from 1 to \(Event.maxBatch)") }
    }

    struct Pending {
        let line: Int
        let bytes: [UInt8]
    }

    func run() throws {
        try reporting {
            let reader: LineReader
            do { reader = try LineReader(path: file) } catch { throw Failure("\(error)") }
            let client = try socket.connect()
            let progress = Progress("import")
            var appended = 0, duplicates = 0, rejected = 0, lineNumber = 0
            let started = Progress.now()
            var pending: [Pending] = []

            var rejects: [(line: Int, text: String)] = []
            func reject(_ line: Int, _ code: String, _ message: String) {
                rejected += 1
                if !quiet { rejects.append((line, "line \(line): \(code): \(message)")) }
            }
            /// Prints the rejects so far in line order.
            func printRejects() {
                for r in rejects.sorted(by: { $0.line < $1.line }) { print(r.text) }
                rejects.removeAll()
            }

            func flush() throws {
                while !pending.isEmpty {
                    var request = Array(#"{"op":"append","events":["#.utf8)
                    for (k, p) in pending.enumerated() {
                        if k > 0 { request.append(UInt8(ascii: ",")) }
                        request += p.bytes
                    }
                    request += Array("]}".utf8)
                    try client.send(request)
                    guard let answer = try client.readLine() else { throw Failure("the daemon closed the connection; \(appended) events were appended before") }
                    guard case .object(let o) = try JSONParser.parse(answer) else { throw Failure("the daemon answered something that is not JSON") }
                    if o["ok"] == .bool(true), case .array(let results)? = o["results"] {
                        for r in results {
                            if case .object(let ro) = r, ro["duplicate"] == .bool(true) { duplicates += 1 } else { appended += 1 }
                        }
                        pending.removeAll()
                        printRejects()
                        return
                    }
                    guard case .object(let e)? = o["error"], case .string(let code)? = e["code"] else {
                        throw Failure("the daemon answered an unexpected line: \(String(decoding: answer.prefix(200), as: UTF8.self))")
                    }
                    let message: String = { if case .string(let m)? = e["message"] { return m } else { return "" } }()
                    guard case .int(let index)? = e["index"], index >= 0, Int(index) < pending.count else {
                        if code == "unavailable" { throw Failure("the daemon is unavailable: \(message); \(appended) events were appended, run import again to go on") }
                        throw Failure("the daemon refused a batch: \(code): \(message)")
                    }
                    reject(pending[Int(index)].line, code, message)
                    pending.remove(at: Int(index))
                }
            }

            while let line = reader.next() {
                lineNumber += 1
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                // A line that is not one JSON object would make the whole request malformed.
                guard case .object? = try? JSONParser.parse(line) else {
                    reject(lineNumber, "malformed", "the line is not a JSON object")
                    continue
                }
                pending.append(Pending(line: lineNumber, bytes: line))
                if pending.count == batch {
                    try flush()
                    progress.update(UInt64(reader.bytesRead), of: UInt64(reader.size), unit: "bytes", extra: "\(appended + duplicates) events")
                }
            }
            try flush()
            printRejects()
            progress.finish()
            let seconds = Progress.now() - started
            let total = appended + duplicates
            print("import: \(appended) appended, \(duplicates) duplicate, \(rejected) rejected, from \(lineNumber) lines in \(String(format2: seconds)) s (\(Int(Double(total) / max(seconds, 1e-9))) events/s)")
            if rejected > 0 { throw ExitCode(1) }
        }
    }
}

/// Reads a file or standard input line by line, without the newline.
final class LineReader {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var start = 0
    private var eof = false
    /// The file's size (0 for standard input), and the bytes consumed so far.
    let size: Int
    private(set) var bytesRead = 0

    init(path: String) throws {
        if path == "-" {
            handle = FileHandle.standardInput
            size = 0
        } else {
            guard let h = FileHandle(forReadingAtPath: path) else {
                throw Failure("cannot read \(path): no such file or no permission")
            }
            handle = h
            size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        }
    }

    func next() -> [UInt8]? {
        while true {
            if let nl = buffer[start...].firstIndex(of: 0x0A) {
                let line = Array(buffer[start..<nl])
                bytesRead += nl - start + 1
                start = nl + 1
                return line
            }
            if eof {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                bytesRead += line.count
                start = buffer.count
                return line
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            let chunk = handle.readData(ofLength: 1 << 20)
            if chunk.isEmpty { eof = true } else { buffer.append(contentsOf: chunk) }
        }
    }
}
