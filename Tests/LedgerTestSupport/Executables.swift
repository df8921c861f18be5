public import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the built executables are: `$LEDGER_BIN_DIR`, else `.build/debug` of this package.
public enum Executables {
    public static var packageRoot: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }

    public static var binDir: String {
        if let dir = ProcessInfo.processInfo.environment["LEDGER_BIN_DIR"] { return dir }
        return packageRoot + "/.build/debug"
    }

    public static func path(_ name: String) -> String { binDir + "/" + name }
}

/// The result of running a program to its end.
public struct RunResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// Runs `program` with `arguments` to its end, with an optional standard input.
public func run(_ program: String, _ arguments: [String], stdin: Data? = nil, timeout: Double = 120) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = arguments
    let dir = TemporaryDirectory("run")
    let outPath = dir.file("out"), errPath = dir.file("err")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    p.standardOutput = FileHandle(forWritingAtPath: outPath)
    p.standardError = FileHandle(forWritingAtPath: errPath)
    if let stdin {
        let inPath = dir.file("in")
        _ = FileManager.default.createFile(atPath: inPath, contents: stdin)
        p.standardInput = FileHandle(forReadingAtPath: inPath)
    } else {
        p.standardInput = FileHandle.nullDevice
    }
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(10_000) }
    if p.isRunning { p.terminate(); p.waitUntilExit() }
    p.waitUntilExit()
    let out = String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self)
    let err = String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
    return RunResult(status: p.terminationStatus, stdout: out, stderr: err)
}

/// A `ledgerd` child process on a data directory and socket.
public final class DaemonProcess: @unchecked Sendable {
    // @unchecked: used from one test at a time; `process` is only touched by that test.
    public let process: Process
    public let socketPath: String
    public let dataDir: String
    public let logPath: String

    /// Starts `ledgerd` and waits (up to `timeout` seconds) until its socket accepts connections.
    public init(dataDir: String, socketPath: String, extra: [String] = [], timeout: Double = 20) throws {
        self.dataDir = dataDir
        self.socketPath = socketPath
        self.logPath = dataDir + ".log"
        process = Process()
        process.executableURL = URL(fileURLWithPath: Executables.path("ledgerd"))
        process.arguments = ["--data-dir", dataDir, "--socket", socketPath] + extra
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !process.isRunning { break }
            if DaemonProcess.accepts(socketPath) { return }
            usleep(20_000)
        }
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        if process.isRunning { process.terminate() }
        throw DaemonError(description: "ledgerd did not become ready: \(log)")
    }

    public struct DaemonError: Error, CustomStringConvertible { public let description: String }

    static func accepts(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (k, b) in path.utf8.enumerated() { buf[k] = b }
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    /// Sends `signal` and waits for the exit; returns the exit status.
    @discardableResult
    public func stop(signal: Int32 = 15, timeout: Double = 20) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}
