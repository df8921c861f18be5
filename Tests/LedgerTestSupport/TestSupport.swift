import Foundation
public import LedgerCore
public import LedgerServer
public import LedgerStore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A directory under /tmp removed with everything in it when the value goes away.
public final class TemporaryDirectory: @unchecked Sendable {
    // @unchecked: `path` is immutable.
    public let path: String

    public init(_ prefix: String = "ledger-test") {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs `body` with a new ledger in a temporary directory.
public func withTemporaryLedger<T>(options: Ledger.Options = Ledger.Options(),
                                   _ body: (Ledger, TemporaryDirectory) throws -> T) throws -> T {
    let dir = TemporaryDirectory()
    var options = options
    options.create = !options.readOnly
    let ledger = try Ledger(directory: dir.file("data"), options: options)
    return try body(ledger, dir)
}

/// Builders of valid envelopes for tests.
public enum TestEvents {
    /// The JSON text of an envelope.
    public static func json(id: String, type: String = "AppointmentRequested", caseID: String,
                            at: String = "2023-07-03T14:05:00Z", expectedVersion: Int? = nil,
                            data: String? = nil) -> String {
        let d = data ?? #"{"office_country":"CO","nationality":"VEN","household_size":3}"#
        let ev = expectedVersion.map { #","expected_version":\#($0)"# } ?? ""
        return #"{"id":"\#(id)","type":"\#(type)","case":"\#(caseID)","at":"\#(at)"\#(ev),"data":\#(d)}"#
    }

    /// A validated event.
    public static func event(id: String, type: String = "AppointmentRequested", caseID: String,
                             at: String = "2023-07-03T14:05:00Z", expectedVersion: Int? = nil,
                             data: String? = nil) throws -> Event {
        try Event.validate(json: Array(json(id: id, type: type, caseID: caseID, at: at,
                                            expectedVersion: expectedVersion, data: data).utf8))
    }

    /// `n` requests for new cases, ids `prefix-k`.
    public static func requested(_ n: Int, prefix: String = "e", from: Int = 0) throws -> [Event] {
        try (from..<(from + n)).map { try event(id: "\(prefix)-\($0)", caseID: "C-\(prefix)-\($0)") }
    }
}

/// An in-process daemon on a socket in a temporary directory.
public final class TestServer: Sendable {
    public let server: LedgerServer
    public let ledger: Ledger
    public let socketPath: String
    let directory: TemporaryDirectory

    public static func start(configure: (inout Configuration) -> Void = { _ in }) async throws -> TestServer {
        let dir = TemporaryDirectory()
        var config = Configuration()
        config.dataDir = dir.file("data")
        config.socket = dir.file("ledgerd.sock")
        configure(&config)
        var options = Ledger.Options()
        options.create = true
        options.checkpointEvents = config.checkpointEvents
        options.checkpointSeconds = Double(config.checkpointSeconds)
        let ledger = try Ledger(directory: config.dataDir, options: options)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let server = try LedgerServer(ledger: ledger, configuration: config, logger: logger)
        try await server.start()
        return TestServer(server: server, ledger: ledger, socketPath: config.socket, directory: dir)
    }

    init(server: LedgerServer, ledger: Ledger, socketPath: String, directory: TemporaryDirectory) {
        self.server = server
        self.ledger = ledger
        self.socketPath = socketPath
        self.directory = directory
    }

    public func stop() async { await server.shutdown() }
}

/// Runs `body` against an in-process daemon and stops it afterwards.
public func withTestServer<T>(configure: (inout Configuration) -> Void = { _ in },
                              _ body: (TestServer) async throws -> T) async throws -> T {
    let s = try await TestServer.start(configure: configure)
    do {
        let r = try await body(s)
        await s.stop()
        return r
    } catch {
        await s.stop()
        throw error
    }
}

extension Ledger.Options {
    /// The defaults, creating the ledger when the directory is missing or empty.
    public static var creating: Ledger.Options {
        var o = Ledger.Options()
        o.create = true
        return o
    }
}
