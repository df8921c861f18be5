import Foundation
import LedgerCore
public import LedgerStore
public import Logging
import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's socket server: binds the Unix socket, serves connections, and on `shutdown` stops
/// accepting, commits what was queued, answers it, closes the connections and removes the socket.
public final class LedgerServer: Sendable {
    public static let version = "0.1.0"

    public let context: ServerContext
    private let group: MultiThreadedEventLoopGroup
    private let state = Mutex<State>(State())

    private let exposition: (@Sendable () -> [UInt8])?

    private struct State {
        var server: (any Channel)?
        var metricsServer: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var stopped = false
    }

    /// Errors that keep the server from starting.
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// - Parameter exposition: the metrics text served at `metrics_address`'s `/metrics`, when set.
    public init(ledger: Ledger, configuration: Configuration, logger: Logger,
                exposition: (@Sendable () -> [UInt8])? = nil) throws {
        self.exposition = exposition
        let access = try AccessPolicy(users: configuration.appendUsers, groups: configuration.appendGroups)
        let metrics = ServerMetrics()
        let commits = CommitNotifier(position: ledger.head.position)
        let writer = GroupCommitWriter(ledger: ledger, logger: logger, maxGroupEvents: configuration.maxGroupEvents,
                                       threads: configuration.writerThreads) { events, requests, seconds in
            let status = ledger.status()
            metrics.committed(events: events, requests: requests, seconds: seconds, status: status)
            commits.publish(status.head.position)
        }
        let pool = NIOThreadPool(numberOfThreads: configuration.readThreads)
        context = ServerContext(ledger: ledger, writer: writer, readPool: pool, configuration: configuration,
                                logger: logger, metrics: metrics, access: access, commits: commits)
        group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
    }

    /// Binds the socket and starts serving. Returns once the socket accepts connections.
    /// - Throws: `StartError` when the socket path is held by a live daemon or is not a socket.
    public func start() async throws {
        let path = context.configuration.socket
        try LedgerServer.prepareSocketPath(path)
        let staging = path + ".new"
        unlink(staging)
        try context.ledger.prepareToAppend()
        context.readPool.start()
        context.writer.start()
        let ctx = context
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            // Two reads per connection per turn of the event loop: a client sending large appends
            // does not hold back the others' requests (a `status` among them) for long.
            .childChannelOption(.maxMessagesPerRead, value: 2)
            .childChannelOption(.autoRead, value: true)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] channel in
                LedgerServer.peerMayAppend(channel, ctx.access).flatMapThrowing { canAppend in
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineFramer(maxLength: ctx.configuration.maxLineBytes)))
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(context: ctx, canAppend: canAppend))
                    self.track(channel)
                }
            }
            .bind(unixDomainSocketPath: staging, cleanupExistingSocketFile: false).get()
        // Bound under a temporary name, given its mode, then renamed: the socket never appears
        // at `path` with the default mode, not even for a moment.
        chmod(staging, 0o660)
        guard rename(staging, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? await server.close()
            unlink(staging)
            throw StartError(description: "cannot move the socket into place at \(path): \(reason); check the directory's permissions")
        }
        state.withLock { $0.server = server }
        if let exposition, !context.configuration.metricsAddress.isEmpty {
            let m = try await MetricsEndpoint.bind(address: context.configuration.metricsAddress, group: group, exposition: exposition)
            state.withLock { $0.metricsServer = m }
            context.logger.info("metrics served", metadata: ["address": "http://\(context.configuration.metricsAddress)/metrics"])
        }
        let status = context.ledger.status()
        context.metrics.started(status)
        context.logger.info("ledgerd ready", metadata: ["socket": "\(path)", "head": "\(status.head.position)",
                                                         "projections_position": "\(status.projectionsPosition)"])
    }

    /// Waits until the server socket is closed (by `shutdown`).
    public func waitUntilClosed() async throws {
        let server = state.withLock { $0.server }
        try await server?.closeFuture.get()
    }

    /// Closes the listening socket; `waitUntilClosed` then returns. Call `shutdown` to finish.
    public func stopAccepting() {
        let server = state.withLock { $0.server }
        server?.close(promise: nil)
    }

    /// Graceful stop: stop accepting, commit and answer what was queued, close the connections once
    /// their responses are written, remove the socket file.
    public func shutdown() async {
        let (server, alreadyStopped) = state.withLock { s -> ((any Channel)?, Bool) in
            defer { s.stopped = true }
            return (s.server, s.stopped)
        }
        guard !alreadyStopped else { return }
        try? await server?.close()
        let metricsServer = state.withLock { $0.metricsServer }
        try? await metricsServer?.close()
        await context.writer.shutdown()
        let connections = state.withLock { Array($0.connections.values) }
        for c in connections { c.pipeline.fireUserInboundEventTriggered(CloseWhenIdle()) }
        for c in connections {
            // Bounded wait: a client that never reads cannot hold the shutdown forever.
            let deadline = c.eventLoop.scheduleTask(in: .seconds(5)) { c.close(promise: nil) }
            try? await c.closeFuture.get()
            deadline.cancel()
        }
        unlink(context.configuration.socket)
        try? await context.readPool.shutdownGracefully()
        try? await group.shutdownGracefully()
        context.logger.info("ledgerd stopped", metadata: ["head": "\(context.ledger.head.position)"])
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        state.withLock { $0.connections[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.connections.removeValue(forKey: id) }
        }
    }

    /// Reads the peer's credentials (`SO_PEERCRED`) and asks the policy; false when unknown.
    static func peerMayAppend(_ channel: any Channel, _ access: AccessPolicy) -> EventLoopFuture<Bool> {
        guard let provider = channel as? any SocketOptionProvider else { return channel.eventLoop.makeSucceededFuture(false) }
        let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return future.map { access.mayAppend(uid: $0.uid, gid: $0.gid) }.recover { _ in false }
    }

    /// Checks, before anything is created, that `path` can be served: throws `StartError` when a
    /// live daemon holds it or it is not a socket. `start` checks again.
    public static func checkSocketPath(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw StartError(description: "\(path) exists and is not a socket; remove it or choose another --socket")
        }
        if socketAcceptsConnections(path) {
            throw StartError(description: "another daemon is serving on \(path); stop it first or choose another --socket")
        }
    }

    /// Refuses a socket path held by a live daemon or by something that is not a socket; removes a
    /// stale socket; creates the parent directory (mode 0750) when missing.
    static func prepareSocketPath(_ path: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && !FileManager.default.fileExists(atPath: parent) {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o750])
        }
        try checkSocketPath(path)
        var st = stat()
        if lstat(path, &st) == 0 { unlink(path) }
    }

    static func socketAcceptsConnections(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (k, b) in bytes.enumerated() { buf[k] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return rc == 0
    }
}
