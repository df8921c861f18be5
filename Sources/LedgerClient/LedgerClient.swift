public import LedgerCore
#if canImport(Glibc)
import Glibc
#endif

/// A blocking client for the daemon's Unix socket: writes request lines, reads response lines.
///
/// One client is one connection; use it from one thread at a time. Pipelining is up to the
/// caller: `send` many lines, then `readLine` as many responses.
public final class LedgerClient {
    public let path: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0

    /// A failure to connect, write or read, with what to do.
    public struct ClientError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Connects to the socket at `path`.
    /// - Throws: `ClientError` naming the path and the reason (no daemon, permission).
    public init(path: String) throws(ClientError) {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError(description: "cannot create a socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw ClientError(description: "the socket path \(path) is too long (at most 107 bytes)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (k, b) in bytes.enumerated() { buf[k] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ClientError(description: "cannot connect to \(path): \(reason); is ledgerd running with --socket \(path)?")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Writes `line` and a newline.
    public func send(_ line: [UInt8]) throws(ClientError) {
        try writeAll(line + [0x0A])
    }

    public func send(_ line: String) throws(ClientError) { try send(Array(line.utf8)) }

    /// Writes raw bytes as they are (for tests of framing).
    public func writeAll(_ bytes: [UInt8]) throws(ClientError) {
        var off = 0
        while off < bytes.count {
            // MSG_NOSIGNAL: a daemon that went away is an error here, not a SIGPIPE that kills us.
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError(description: "writing to \(path) failed: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    /// Reads one response line (without its newline); nil when the daemon closed the connection.
    public func readLine() throws(ClientError) -> [UInt8]? {
        while true {
            if let nl = buffer[start...].firstIndex(of: 0x0A) {
                let line = Array(buffer[start..<nl])
                start = nl + 1
                if start > 65536 { buffer.removeFirst(start); start = 0 }
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError(description: "reading from \(path) failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return nil }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Whether a complete line is already buffered (so `readLine` will not block).
    public var hasBufferedLine: Bool { buffer[start...].contains(0x0A) }

    /// Sends one request and returns its response parsed.
    public func request(_ line: String) throws -> JSONObject {
        try send(line)
        guard let response = try readLine() else {
            throw ClientError(description: "the daemon closed the connection without answering")
        }
        guard case .object(let o) = try JSONParser.parse(response) else {
            throw ClientError(description: "the daemon answered something that is not a JSON object")
        }
        return o
    }

    /// Stops sending (the daemon sees end of input) while responses can still be read.
    public func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }
}
