import Foundation
public import LedgerCore
public import LedgerStore
public import Logging

/// The one writer: takes the append requests queued by every connection and commits them together
/// (group commit: one durable transaction for many requests), on two threads, one group apart:
/// the sequencer validates a group against the ledger's state (`Ledger.sequence`) while the
/// committer writes and syncs the group before it (`Ledger.commit`) and answers it. With
/// `threads` 1 the sequencer commits each group itself. Between groups the sequencer writes a
/// checkpoint when one is due (`Ledger.checkpointDue`), once the committer has caught up.
///
/// Guarantees: a completion is called only after the commit that holds its events returned and the
/// ledger published the new head (so a success is durable and visible to every later read);
/// requests are committed in the order they were submitted; a request that fails validation gets
/// its error without affecting the others of its group. After `shutdown` starts, the queued
/// requests are still committed, new ones get `unavailable`, and a last checkpoint is written.
public final class GroupCommitWriter: @unchecked Sendable {
    // @unchecked: the mutable state (`queue`, `sequenced`, `committing`, `stopping`, `sequencerDone`,
    // `finished`, `started`, `waiters`) is guarded by `condition`; `ledger` and the callbacks are
    // immutable and Sendable.
    public typealias Completion = @Sendable (Result<[AppendResult], LedgerError>) -> Void

    private struct Pending: Sendable {
        let events: [Event]
        let completion: Completion
    }

    private let ledger: Ledger
    private let logger: Logger
    private let maxGroupEvents: Int
    private let threads: Int
    private let onCommit: @Sendable (_ events: Int, _ requests: Int, _ seconds: Double) -> Void
    private let condition = NSCondition()
    private var queue: [Pending] = []
    /// A group sequenced and waiting for the committer (at most one).
    private var sequenced: (group: SequencedGroup, requests: [Pending])?
    /// The committer is writing a group.
    private var committing = false
    private var stopping = false
    private var sequencerDone = false
    private var finished = false
    private var started = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// - Parameters:
    ///   - maxGroupEvents: the most events one commit takes (a bigger single request still goes alone).
    ///   - threads: 2 (a sequencer and a committer) or 1 (one thread does both).
    ///   - onCommit: called on the committer's thread after each commit that appended something,
    ///     before its requests are answered.
    public init(ledger: Ledger, logger: Logger, maxGroupEvents: Int = 4_096, threads: Int = 2,
                onCommit: @escaping @Sendable (Int, Int, Double) -> Void = { _, _, _ in }) {
        self.ledger = ledger
        self.logger = logger
        self.maxGroupEvents = maxGroupEvents
        self.threads = threads
        self.onCommit = onCommit
    }

    /// Starts the writer's threads.
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

    /// Queues an append request. `completion` runs on the committer's thread after the commit.
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

    /// Commits what is queued, writes a last checkpoint, then stops the threads. Returns when they
    /// have stopped.
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
            // Takes requests only once the committer has taken the group before (so that what
            // arrives meanwhile joins one group); wakes at least every 200 ms when idle, to write a
            // checkpoint that came due.
            while (queue.isEmpty && !stopping) || sequenced != nil {
                if !condition.wait(until: Date(timeIntervalSinceNow: 0.2)) && sequenced == nil { break }
            }
            if queue.isEmpty && stopping {
                condition.unlock()
                break
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

            if !requests.isEmpty {
                let group = ledger.sequence(requests.map(\.events))
                if threads == 1 {
                    commitAndAnswer(group, requests)
                } else {
                    condition.lock()
                    sequenced = (group, requests)
                    condition.broadcast()
                    condition.unlock()
                }
            }
            if ledger.checkpointDue { drainAndCheckpoint() }
        }
        // The projections to disk, so that the next start has nothing to apply again.
        drainAndCheckpoint()
        condition.lock()
        sequencerDone = true
        condition.broadcast()
        condition.unlock()
    }

    private func commitLoop() {
        while true {
            condition.lock()
            while sequenced == nil && !sequencerDone { condition.wait() }
            guard let (group, requests) = sequenced else {
                finished = true
                let w = waiters
                waiters = []
                condition.unlock()
                for c in w { c.resume() }
                logger.debug("writer stopped")
                return
            }
            sequenced = nil
            committing = true
            condition.broadcast()  // the sequencer may hand over the next group
            condition.unlock()

            commitAndAnswer(group, requests)

            condition.lock()
            committing = false
            condition.broadcast()
            condition.unlock()
        }
    }

    private func commitAndAnswer(_ group: SequencedGroup, _ requests: [Pending]) {
        let started = DispatchTime.now().uptimeNanoseconds
        let results = ledger.commit(group)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        var appended = 0
        for r in results { if case .success(let list) = r { appended += list.count { !$0.duplicate } } }
        if appended > 0 { onCommit(appended, requests.count, seconds) }
        for (p, r) in zip(requests, results) { p.completion(r) }
    }

    /// Waits until the committer has written every group sequenced, then writes a checkpoint.
    private func drainAndCheckpoint() {
        condition.lock()
        while sequenced != nil || committing { condition.wait() }
        condition.unlock()
        do { try ledger.checkpoint() } catch {
            logger.warning("a checkpoint failed; the next one writes everything since the last", metadata: ["error": "\(error)"])
        }
    }
}
