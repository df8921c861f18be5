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
            `-`, and appends them in requests of --batch events, --inflight requests at a time, in file \
            order. Events already in the ledger with the same content count as duplicates, so importing a \
            file twice appends nothing the second time. A rejected event is reported with its line number \
            and error code and left out; the rest of its batch is sent again, after the batches already in \
            flight (an event that needed the rejected one is then rejected too; with --inflight 1 the \
            ledger's order is the file's order even around rejects). Exit 1 when any line was rejected.
            """)

    @Argument(help: ArgumentHelp("The NDJSON file, or - for standard input.", valueName: "file"))
    var file: String

    @OptionGroup var socket: SocketOptions

    @Option(help: ArgumentHelp("Events per append request (1 to 10000).", valueName: "n"))
    var batch: Int = 1000

    @Option(help: ArgumentHelp("Requests in flight at once (1 for strict file order even around rejects).", valueName: "n"))
    var inflight: Int = 4

    @Flag(help: "Print only the summary, not each reject.")
    var quiet = false

    func validate() throws {
        guard (1...Event.maxBatch).contains(batch) else { throw ValidationError("--batch must be from 1 to \(Event.maxBatch)") }
        guard (1...64).contains(inflight) else { throw ValidationError("--inflight must be from 1 to 64") }
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

            /// Batches sent and not answered yet, in the order sent.
            var window: [[Pending]] = []

            func send(_ batch: [Pending]) throws {
                guard !batch.isEmpty else { return }
                var request = Array(#"{"op":"append","events":["#.utf8)
                for (k, p) in batch.enumerated() {
                    if k > 0 { request.append(UInt8(ascii: ",")) }
                    request += p.bytes
                }
                request += Array("]}".utf8)
                try client.send(request)
                window.append(batch)
            }

            /// Reads the answer to the oldest batch in flight; a rejected batch is sent again
            /// without the rejected event.
            func receive() throws {
                let batch = window.removeFirst()
                guard let answer = try client.readLine() else { throw Failure("the daemon closed the connection; \(appended) events were appended before") }
                guard case .object(let o) = try JSONParser.parse(answer) else { throw Failure("the daemon answered something that is not JSON") }
                if o["ok"] == .bool(true), case .array(let results)? = o["results"] {
                    for r in results {
                        if case .object(let ro) = r, ro["duplicate"] == .bool(true) { duplicates += 1 } else { appended += 1 }
                    }
                    return
                }
                guard case .object(let e)? = o["error"], case .string(let code)? = e["code"] else {
                    throw Failure("the daemon answered an unexpected line: \(String(decoding: answer.prefix(200), as: UTF8.self))")
                }
                let message: String = { if case .string(let m)? = e["message"] { return m } else { return "" } }()
                if case .int(let index)? = e["index"], index >= 0, Int(index) < batch.count {
                    reject(batch[Int(index)].line, code, message)
                    var rest = batch
                    rest.remove(at: Int(index))
                    try send(rest)
                    return
                }
                if code == "malformed" {
                    // Some line is not a JSON object: find it here, report it, send the others.
                    var rest: [Pending] = []
                    for p in batch {
                        if case .object? = try? JSONParser.parse(p.bytes) { rest.append(p) } else {
                            reject(p.line, "malformed", "the line is not a JSON object")
                        }
                    }
                    if rest.count < batch.count { try send(rest); return }
                }
                if code == "unavailable" { throw Failure("the daemon is unavailable: \(message); \(appended) events were appended, run import again to go on") }
                throw Failure("the daemon refused a batch: \(code): \(message)")
            }

            func flush() throws {
                try send(pending)
                pending.removeAll(keepingCapacity: true)
                while window.count >= inflight { try receive() }
                printRejects()
            }

            while let line = reader.next() {
                lineNumber += 1
                guard let first = line.first(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }) else { continue }
                // A line that is not an object would make its whole request malformed.
                guard first == UInt8(ascii: "{") else {
                    reject(lineNumber, "malformed", "the line is not a JSON object")
                    continue
                }
                pending.append(Pending(line: lineNumber, bytes: line))
                if pending.count == batch {
                    try flush()
                    progress.update(UInt64(reader.bytesRead), of: UInt64(reader.size), unit: "bytes", extra: "\(appended + duplicates) events")
                }
            }
            try send(pending)
            pending.removeAll()
            while !window.isEmpty { try receive() }
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
