import ArgumentParser
import Foundation
import LedgerServer
import LedgerStore
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals

@main
struct Ledgerd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledgerd",
        abstract: "The Safe Mobility ledger daemon.",
        discussion: """
            Owns the data directory, serves the Unix socket (newline-delimited JSON, see docs/PROTOCOL.md), \
            appends events durably and keeps the hash chain. Runs in the foreground and logs to stderr; it is \
            ready when the socket accepts connections. SIGTERM or SIGINT stop it gracefully: it stops \
            accepting, commits and answers what was received, removes the socket and exits 0.

            Settings come from the configuration file (--config, else $LEDGERD_CONFIG, else \
            Config/ledgerd.toml when present), then LEDGERD_<KEY> environment variables, then these flags.
            """,
        version: LedgerServer.version)

    /// Runs the daemon; usage errors exit 2 (the contract's code) instead of 64.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }

    @Option(name: .long, help: ArgumentHelp("The data directory (created when missing).", valueName: "dir"))
    var dataDir: String?

    @Option(name: .long, help: ArgumentHelp("The Unix socket to serve.", valueName: "path"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("The configuration file.", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String?

    func run() async throws {
        var settings = Configuration()
        let env = ProcessInfo.processInfo.environment
        let file = config ?? env["LEDGERD_CONFIG"] ?? (FileManager.default.fileExists(atPath: "Config/ledgerd.toml") ? "Config/ledgerd.toml" : nil)
        do {
            if let file { try settings.apply(file: file) }
            try settings.apply(environment: env)
            if let dataDir { settings.dataDir = dataDir }
            if let socket { settings.socket = socket }
            if let logLevel { try settings.set("log_level", logLevel, bare: true) }
        } catch {
            throw ValidationError("\(error)")
        }

        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "ledgerd")
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["ledger_commit_seconds"] = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
        ]
        factory.valueHistogramBuckets["ledger_commit_events"] = [1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000, 20000]
        factory.valueHistogramBuckets["ledger_commit_requests"] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
        MetricsSystem.bootstrap(factory)

        let lock: DirectoryLock
        let ledger: Ledger
        let server: LedgerServer
        do {
            try LedgerServer.checkSocketPath(settings.socket)
            lock = try DirectoryLock(directory: settings.dataDir)
            var options = Ledger.Options()
            options.initialMapSize = settings.initialMapSizeMiB << 20
            options.maxMapSize = max(settings.maxMapSizeGiB << 30, options.initialMapSize)
            options.create = true
            options.checkpointEvents = settings.checkpointEvents
            options.checkpointSeconds = Double(settings.checkpointSeconds)
            options.window = try settings.window()
            options.rebuildProgress = { done, total in
                if done == total || done % 100_000 == 0 {
                    logger.notice("rebuilding projections", metadata: ["done": "\(done)", "total": "\(total)"])
                }
            }
            ledger = try Ledger(directory: settings.dataDir, options: options)
            let cleared = try ledger.clearStaleReaders()
            if cleared > 0 { logger.notice("cleared stale LMDB readers", metadata: ["count": "\(cleared)"]) }
            server = try LedgerServer(ledger: ledger, configuration: settings, logger: logger,
                                      exposition: { registry.emitToBuffer() })
        } catch {
            logger.critical("ledgerd cannot start: \(error)")
            throw ExitCode(1)
        }
        // The service binds the socket once the group traps SIGTERM and SIGINT, so a signal sent as
        // soon as the socket accepts connections is already a graceful stop.
        let group = ServiceGroup(
            services: [DaemonService(server: server)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        do {
            try await group.run()
        } catch let error as DaemonService.StartFailure {
            logger.critical("ledgerd cannot start: \(error.underlying)")
            throw ExitCode(1)
        }
        withExtendedLifetime(lock) {}
    }
}

/// Runs the server until a shutdown signal, then stops it gracefully.
struct DaemonService: Service {
    let server: LedgerServer

    struct StartFailure: Error {
        let underlying: any Error
    }

    func run() async throws {
        do { try await server.start() } catch { throw StartFailure(underlying: error) }
        try await withGracefulShutdownHandler {
            try await server.waitUntilClosed()
        } onGracefulShutdown: {
            server.stopAccepting()
        }
        await server.shutdown()
    }
}
