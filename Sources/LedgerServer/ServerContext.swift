public import LedgerCore
import LMDBKit
public import LedgerStore
public import Logging
import NIOCore
public import NIOPosix
import Synchronization

/// Counters of the daemon, readable by `status`.
public final class ServerMetrics: Sendable {
    private let connections = Atomic<Int>(0)
    private let rejectedCounts = Mutex<[ErrorCode: Int]>([:])
    private let commitTotals = Mutex<(commits: Int, events: Int)>((0, 0))

    public init() {}

    func connectionOpened() { connections.add(1, ordering: .relaxed) }
    func connectionClosed() { connections.subtract(1, ordering: .relaxed) }
    func rejected(_ code: ErrorCode) { rejectedCounts.withLock { $0[code, default: 0] += 1 } }
    func committed(events: Int) { commitTotals.withLock { $0.commits += 1; $0.events += events } }

    public var openConnections: Int { connections.load(ordering: .relaxed) }
    public var rejected: [ErrorCode: Int] { rejectedCounts.withLock { $0 } }
    public var commits: (commits: Int, events: Int) { commitTotals.withLock { $0 } }
}

/// What every connection of a running daemon shares.
public final class ServerContext: Sendable {
    public let ledger: Ledger
    public let writer: GroupCommitWriter
    public let readPool: NIOThreadPool
    public let configuration: Configuration
    public let logger: Logger
    public let metrics: ServerMetrics
    public let access: AccessPolicy

    public init(ledger: Ledger, writer: GroupCommitWriter, readPool: NIOThreadPool, configuration: Configuration,
                logger: Logger, metrics: ServerMetrics, access: AccessPolicy) {
        self.ledger = ledger
        self.writer = writer
        self.readPool = readPool
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.access = access
    }

    /// The `status` response.
    func status() throws -> [UInt8] {
        let head = try ledger.head()
        let info = ledger.environment.info()
        let commits = metrics.commits
        return Response.ok(JSONObject([
            ("head", .int(Int64(head.position))),
            ("head_hash", .string(head.hashHex)),
            ("version", .string(LedgerServer.version)),
            ("map_size_bytes", .int(Int64(info.mapSize))),
            ("map_used_bytes", .int(Int64(info.usedBytes))),
            ("connections", .int(Int64(metrics.openConnections))),
            ("commits", .int(Int64(commits.commits))),
            ("events_appended", .int(Int64(commits.events))),
        ]))
    }
}
