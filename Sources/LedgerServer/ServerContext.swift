public import LedgerCore
public import LedgerStore
public import Logging
import NIOCore
public import NIOPosix
import Synchronization
import Metrics

/// The daemon's figures: kept here for `status`, and reported through swift-metrics (which `main`
/// bootstraps, for example to Prometheus) under the names of docs/OPERATIONS.md.
public final class ServerMetrics: Sendable {
    private let connections = Atomic<Int>(0)
    private let subscribers = Atomic<Int>(0)
    private let rejectedCounts = Mutex<[ErrorCode: Int]>([:])
    private let commitTotals = Mutex<(commits: Int, events: Int)>((0, 0))

    private let appendedCounter = Counter(label: "ledger_events_appended_total")
    private let commitsCounter = Counter(label: "ledger_commits_total")
    private let commitEvents = Recorder(label: "ledger_commit_events", aggregate: true)
    private let commitRequests = Recorder(label: "ledger_commit_requests", aggregate: true)
    private let commitSeconds = Metrics.Timer(label: "ledger_commit_seconds")
    private let connectionsGauge = Gauge(label: "ledger_connections")
    private let subscribersGauge = Gauge(label: "ledger_subscribers")
    private let droppedCounter = Counter(label: "ledger_subscribers_dropped_total")
    private let headGauge = Gauge(label: "ledger_head_position")
    private let lagGauge = Gauge(label: "ledger_projection_lag_events")
    private let mapUsedGauge = Gauge(label: "ledger_map_used_bytes")
    private let mapSizeGauge = Gauge(label: "ledger_map_size_bytes")

    public init() {}

    func connectionOpened() { connectionsGauge.record(connections.add(1, ordering: .relaxed).newValue) }
    func connectionClosed() { connectionsGauge.record(connections.subtract(1, ordering: .relaxed).newValue) }
    func subscriberAdded() { subscribersGauge.record(subscribers.add(1, ordering: .relaxed).newValue) }
    func subscriberEnded() { subscribersGauge.record(subscribers.subtract(1, ordering: .relaxed).newValue) }
    func subscriberDropped() { droppedCounter.increment() }

    func rejected(_ code: ErrorCode) {
        rejectedCounts.withLock { $0[code, default: 0] += 1 }
        Counter(label: "ledger_rejected_requests_total", dimensions: [("code", code.rawValue)]).increment()
    }

    func committed(events: Int, requests: Int, seconds: Double, status: LedgerStatus) {
        commitTotals.withLock { $0.commits += 1; $0.events += events }
        appendedCounter.increment(by: events)
        commitsCounter.increment()
        commitEvents.record(events)
        commitRequests.record(requests)
        commitSeconds.recordNanoseconds(Int64(seconds * 1e9))
        record(status)
    }

    /// The gauges that follow the ledger: head, projections' lag, map.
    func record(_ status: LedgerStatus) {
        headGauge.record(Int64(status.head.position))
        lagGauge.record(Int64(status.head.position - status.projectionsPosition))  // events after the stored projections
        mapUsedGauge.record(status.mapUsed)
        mapSizeGauge.record(status.mapSize)
    }

    func started(_ status: LedgerStatus) {
        record(status)
        connectionsGauge.record(0)
        subscribersGauge.record(0)
    }

    public var openConnections: Int { connections.load(ordering: .relaxed) }
    public var openSubscribers: Int { subscribers.load(ordering: .relaxed) }
    public var rejected: [ErrorCode: Int] { rejectedCounts.withLock { $0 } }
    public var commits: (commits: Int, events: Int) { commitTotals.withLock { $0 } }
}

/// Tells subscribed connections about each commit's new head position.
public final class CommitNotifier: Sendable {
    private let head: Atomic<UInt64>
    private let listeners = Mutex<[ObjectIdentifier: @Sendable (UInt64) -> Void]>([:])

    public init(position: UInt64) { head = Atomic(position) }

    /// The last committed position.
    public var position: UInt64 { head.load(ordering: .acquiring) }

    /// Records a new head and calls every listener (on the caller's thread: listeners must only
    /// schedule work).
    public func publish(_ position: UInt64) {
        head.store(position, ordering: .releasing)
        for l in listeners.withLock({ Array($0.values) }) { l(position) }
    }

    func addListener(_ id: ListenerID, _ listener: @escaping @Sendable (UInt64) -> Void) {
        listeners.withLock { $0[ObjectIdentifier(id)] = listener }
    }

    func removeListener(_ id: ListenerID) {
        _ = listeners.withLock { $0.removeValue(forKey: ObjectIdentifier(id)) }
    }
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
    public let commits: CommitNotifier

    public init(ledger: Ledger, writer: GroupCommitWriter, readPool: NIOThreadPool, configuration: Configuration,
                logger: Logger, metrics: ServerMetrics, access: AccessPolicy, commits: CommitNotifier) {
        self.commits = commits
        self.ledger = ledger
        self.writer = writer
        self.readPool = readPool
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.access = access
    }

    /// The `status` response, from the ledger's published snapshot.
    func status() -> [UInt8] {
        let status = ledger.status()
        let commits = metrics.commits
        return Response.ok(JSONObject([
            ("head", .int(Int64(status.head.position))),
            ("head_hash", .string(status.head.hashHex)),
            ("projections_position", .int(Int64(status.projectionsPosition))),
            ("role", .string("primary")),
            ("version", .string(LedgerServer.version)),
            ("map_size_bytes", .int(Int64(status.mapSize))),
            ("map_used_bytes", .int(Int64(status.mapUsed))),
            ("connections", .int(Int64(metrics.openConnections))),
            ("subscribers", .int(Int64(metrics.openSubscribers))),
            ("commits", .int(Int64(commits.commits))),
            ("events_appended", .int(Int64(commits.events))),
        ]))
    }
}
