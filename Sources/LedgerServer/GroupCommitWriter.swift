import Foundation
public import LedgerCore
public import LedgerStore
public import Logging

/// The one writer: commits the appends of many connections together (group commit), in a pipeline
/// of two threads: the sequencer validates a group against the ledger's in-memory state
/// (`Ledger.sequence`) while the committer writes and syncs the group before it (`Ledger.commit`).
///
/// Guarantees: a completion is called only after the commit that holds its events returned (so a
/// success is durable); requests are committed in the order they were submitted; a request that
/// fails validation gets its error without affecting the others of its group. After `shutdown`
/// starts, the queued requests are still committed and new ones get `unavailable`.
public final class GroupCommitWriter: @unchecked Sendable {
    // @unchecked: all mutable state (`queue`, `sequenced`, `stopping`, `sequencerDone`,
    // `finished`, `waiters`) is guarded by `condition`; `ledger` and the callbacks are immutable
    // and Sendable.
    public typealias Completion = @Sendable (Result<[AppendResult], LedgerError>) -> Void

    private struct Pending: Sendable {
        let events: [Event]
        let completion: Completion
    }

    private let ledger: Ledger
    private let logger: Logger
    private let maxGroupEvents: Int
    private let onCommit: @Sendable (_ head: Head, _ events: Int, _ requests: Int, _ seconds: Double) -> Void
    private let condition = NSCondition()
    private var queue: [Pending] = []
    /// Groups sequenced and waiting for the committer (at most one: the sequencer runs one group
    /// ahead of the commit in progress).
    private var sequenced: [(group: SequencedGroup, requests: [Pending])] = []
    private var sequencerDone = false
    private var stopping = false
    private var finished = false
    private var started = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// Where committed requests are released.
    private let janitor = DispatchQueue(label: "ledger-writer-janitor", qos: .utility)

    /// - Parameters:
    ///   - maxGroupEvents: the most events one commit takes (a bigger single request still goes alone).
    ///   - onCommit: called on the writer's thread after each commit that appended something, before
    ///     its requests are answered.
    public init(ledger: Ledger, logger: Logger, maxGroupEvents: Int = 4_096,
                onCommit: @escaping @Sendable (Head, Int, Int, Double) -> Void = { _, _, _, _ in }) {
        self.ledger = ledger
        self.logger = logger
        self.maxGroupEvents = maxGroupEvents
        self.onCommit = onCommit
    }

    /// Starts the writer's thread.
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard !started else { return }
        started = true
        let sequencer = Thread { [self] in sequenceLoop() }
        sequencer.name = "ledger-sequencer"
        sequencer.start()
        let committer = Thread { [self] in commitLoop() }
        committer.name = "ledger-committer"
        committer.start()
    }

    /// Queues an append request. `completion` runs on the writer's thread after the commit.
    public func submit(_ events: [Event], completion: @escaping Completion) {
        condition.lock()
        if stopping {
            condition.unlock()
            completion(.failure(LedgerError(.unavailable, "the daemon is shutting down; nothing was stored; retry when it is back")))
            return
        }
        queue.append(Pending(events: events, completion: completion))
        condition.broadcast()
        condition.unlock()
    }

    /// Commits what is queued, then stops the thread. Returns when it has stopped.
    public func shutdown() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            condition.lock()
            stopping = true
            if finished || !started {
                finished = true
                condition.unlock()
                c.resume()
                return
            }
            waiters.append(c)
            condition.broadcast()
            condition.unlock()
        }
    }

    private func sequenceLoop() {
        while true {
            condition.lock()
            while (queue.isEmpty && !stopping) || (!queue.isEmpty && !sequenced.isEmpty) { condition.wait() }
            if queue.isEmpty && stopping {
                sequencerDone = true
                condition.broadcast()
                condition.unlock()
                return
            }
            var take = 0
            var events = 0
            while take < queue.count && (take == 0 || events + queue[take].events.count <= maxGroupEvents) {
                events += queue[take].events.count
                take += 1
            }
            let requests = Array(queue[0..<take])
            queue.removeFirst(take)
            condition.unlock()

            let group = ledger.sequence(requests.map(\.events))

            condition.lock()
            sequenced.append((group, requests))
            condition.broadcast()
            condition.unlock()
        }
    }

    private func commitLoop() {
        while true {
            condition.lock()
            while sequenced.isEmpty && !sequencerDone { condition.wait() }
            if sequenced.isEmpty && sequencerDone {
                condition.unlock()
                // Write the projections kept in memory, so the next start has nothing to replay.
                do { try ledger.checkpoint() } catch {
                    logger.warning("the checkpoint at shutdown failed; the next start replays the events after the last one", metadata: ["error": "\(error)"])
                }
                condition.lock()
                finished = true
                let w = waiters
                waiters = []
                condition.unlock()
                for c in w { c.resume() }
                logger.debug("writer stopped")
                return
            }
            let (group, requests) = sequenced.removeFirst()
            condition.broadcast()  // the sequencer may start on the next group
            condition.unlock()

            let started = DispatchTime.now().uptimeNanoseconds
            let results = ledger.commit(group)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            var appended = 0
            for r in results { if case .success(let list) = r { appended += list.count { !$0.duplicate } } }
            // Publish before answering: whoever sees an acknowledgement also sees the new head.
            if appended > 0, let head = try? ledger.head() {
                onCommit(head, appended, requests.count, seconds)
            }
            for (p, r) in zip(requests, results) { p.completion(r) }
            // Freeing thousands of decoded events is not the writer's job: another thread does it
            // while the writer starts the next commit.
            janitor.async { [requests = consume requests] in _ = requests }
        }
    }
}
