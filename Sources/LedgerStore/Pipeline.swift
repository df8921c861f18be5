public import LedgerCore
import LMDBKit
import Synchronization
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// A group of append requests validated and applied to the writer's in-memory state, waiting to
/// be written: `Ledger.sequence` makes it, `Ledger.commit` writes it durably (or fails it).
///
/// The two halves run on two threads in the daemon, so that one group's events are validated while
/// the previous group's are written and synced: a pipeline of depth two.
public struct SequencedGroup: Sendable {
    /// Each request's outcome of validation (a success is durable only once `commit` says so).
    public let validated: [Result<[AppendResult], LedgerError>]
    /// The events accepted (not duplicates), at positions `start + 1 …`.
    let accepted: Int
    let start: UInt64
    let epoch: UInt64
    let sealed: ChainBuilder.Sealed?
    /// The counters after the group, which become the committed ones.
    let counters: CounterTable
    /// A chunk of a checkpoint to write with the group.
    let checkpoint: CheckpointWork?
}

/// Chunks `chunks` of a checkpoint's `plan`, written in a group's transaction.
struct CheckpointWork: Sendable {
    let plan: CheckpointPlan
    let chunks: Range<Int>
    var isLast: Bool { chunks.upperBound == plan.chunks }
}

/// A group sequenced and perhaps not stored yet: where a duplicate's original is read from.
struct RecentGroup: Sendable {
    let start: UInt64
    let requests: [[Event]]
    let accepted: [Ledger.AcceptedEvent]
}

/// What has been committed: what readers may see.
struct CommittedState {
    var head: Head
    var counters: CounterTable
    /// The stored projections' position (the last checkpoint written).
    var checkpoint: UInt64
    /// Bumped when a commit fails: groups sequenced before are failed too, and the sequencer
    /// reloads its state from the log.
    var epoch: UInt64 = 0
    /// Commits since the daemon last dropped its mappings of LMDB's pages.
    var commitsSinceRelease = 0
}

extension Ledger {
    /// Validates a group of requests against the writer's state and applies them to it (the
    /// sequencing half of an append). Nothing is written; the group must go to `commit` next, in
    /// the order sequenced.
    public func sequence(_ requests: [[Event]], recordedAt: Timestamp = .now()) -> SequencedGroup {
        writer.withLock { state in
            do {
                return try sequence(requests, recordedAt: recordedAt, state: &state)
            } catch {
                let e = (error as? LedgerError)
                    ?? LedgerError(.unavailable, "the ledger could not be read (\(error)); nothing was stored; retry later")
                return SequencedGroup(validated: Array(repeating: .failure(e), count: requests.count), accepted: 0,
                                      start: state.head.position, epoch: state.epoch, sealed: nil,
                                      counters: state.counters, checkpoint: nil)
            }
        }
    }

    private func sequence(_ requests: [[Event]], recordedAt: Timestamp, state: inout WriterState) throws -> SequencedGroup {
        try reloadIfFailed(&state)
        let committed = self.committed.withLock { $0 }
        // The snapshot below is taken after this, so it holds what a retired frozen overlay held.
        state.retireFrozen(stored: committed.checkpoint, storesFilters: filters != nil)
        let stored = state.recent.prefix { $0.start + UInt64($0.accepted.count) <= committed.head.position }.count
        if stored > 0 {
            // Freeing thousands of events is not the sequencer's job: the last reference may be
            // these, so they go to another thread.
            let dropped = Array(state.recent[..<stored])
            state.recent.removeFirst(stored)
            Ledger.releaseQueue.async { withExtendedLifetime(dropped) {} }
        }
        return try environment.read { txn in
            let lookup = Lookup(txn: txn, storedHead: try storedHead(txn).position, frozen: state.frozen,
                                older: state.older, recent: state.recent, environment: environment,
                                faults: state.faults)
            defer { state.faults = lookup.faults }
            var validated: [Result<[AppendResult], LedgerError>] = []
            validated.reserveCapacity(requests.count)
            var accepted: [AcceptedEvent] = []
            let start = state.head.position
            let chain = state.chain
            chain.begin(recordTail: StoredEvent.recordTail(recordedAt: recordedAt.description),
                        events: requests.reduce(0) { $0 + $1.count })
            var delta = ProjectionDelta()
            for (r, request) in requests.enumerated() {
                var undo = Overlay.Undo(durations: state.overlay.durations.count)
                delta.increments.removeAll(keepingCapacity: true)
                delta.durations.removeAll(keepingCapacity: true)
                let before = accepted.count
                do {
                    let result = try appendRequest(r, requests: requests, groupStart: start, lookup: lookup,
                                                   accepted: &accepted, overlay: &state.overlay, undo: &undo, delta: &delta,
                                                   idFilters: &state.idFilters)
                    delta.apply(to: &state.counters)
                    validated.append(.success(result))
                    if accepted.count > before { chain.add(request, Array(accepted[before...])) }
                } catch let e as LedgerError {
                    accepted.removeLast(accepted.count - before)
                    state.overlay.rollBack(undo)
                    validated.append(.failure(e))
                } catch {
                    // Reading failed: take back this request and give up the group (nothing of it
                    // reached the chain but its earlier requests, which the reload drops too).
                    state.overlay.rollBack(undo)
                    self.committed.withLock { $0.epoch += 1 }
                    throw error
                }
            }
            guard !accepted.isEmpty else {
                return SequencedGroup(validated: validated, accepted: 0, start: start, epoch: state.epoch, sealed: nil,
                                      counters: state.counters, checkpoint: nil)
            }
            state.head = Head(position: start + UInt64(accepted.count), hash: [])
            state.recent.append(RecentGroup(start: start, requests: requests, accepted: accepted))
            state.pace.groups += 1
            state.pace.events += accepted.count
            var checkpoint: CheckpointWork?
            if let plan = state.plan {
                // The next chunk of the checkpoint being written. Once the next checkpoint is due
                // (it fell behind: the groups grew since it was planned), half of those left, so
                // that it is written within a few groups instead of the overlay growing on.
                let left = plan.chunks - state.nextChunk
                let due = state.head.position - state.overlay.checkpoint >= UInt64(options.checkpointEvents)
                let n = due ? (left + 1) / 2 : 1
                checkpoint = CheckpointWork(plan: plan, chunks: state.nextChunk..<(state.nextChunk + n))
                state.nextChunk += n
                if state.nextChunk == plan.chunks { state.plan = nil }
            } else if state.head.position - state.overlay.checkpoint >= UInt64(options.checkpointEvents),
                      (state.frozen?.checkpoint ?? 0) <= committed.checkpoint {
                // The overlay as of this group is written with it and the groups after it; until
                // its last chunk is seen stored, the frozen overlay answers the lookups of its ids
                // and cases, and then it stays as a cache of the cases (the previous one goes).
                let runStart = state.overlay.checkpoint + 1
                let frozen = state.overlay.freeze(at: state.head.position, capacity: options.checkpointEvents)
                let run = state.idFilters.addRun(start: runStart, ids: frozen.ids)
                // Only the run's filter: the filter of all ids is stored by the checkpoint of a clean
                // shutdown (`checkpoint()`); at every checkpoint it cost 18 MiB of peak memory and
                // 0.65 GB of writes at 4M events.
                let plan = CheckpointPlan(frozen, counters: state.counters, position: state.head.position,
                                          runStart: runStart, idFilters: (nil, run), chunkKeys: options.checkpointChunkKeys,
                                          maxChunks: Ledger.chunkLimit(pace: state.pace, interval: options.checkpointEvents),
                                          casesShape: try txn.shape(cases))
                state.pace = (0, 0)
                checkpoint = CheckpointWork(plan: plan, chunks: 0..<1)
                if let previous = state.frozen { state.older.insert(previous.cases, at: 0) }
                state.frozen = frozen
                state.trimCache(entries: options.caseCacheEntries)
                state.nextChunk = 1
                if plan.chunks > 1 { state.plan = plan }
            }
            return SequencedGroup(validated: validated, accepted: accepted.count, start: start, epoch: state.epoch,
                                  sealed: chain.seal(), counters: state.counters, checkpoint: checkpoint)
        }
    }

    /// Writes a sequenced group durably (the committing half of an append) and returns each
    /// request's result: its validation outcome, or `unavailable` for all when the write failed.
    /// Groups must be committed in the order they were sequenced.
    public func commit(_ group: SequencedGroup) -> [Result<[AppendResult], LedgerError>] {
        let current = committed.withLock { $0 }
        guard group.epoch == current.epoch else {
            // Sequenced on top of a group whose write failed: its positions are not free.
            _ = group.sealed?.wait()
            return failAccepted(group, LedgerError(.unavailable, "an earlier write failed; nothing of this request was stored; retry"))
        }
        guard let sealed = group.sealed else { return group.validated }
        let chain = sealed.wait()
        let head = Head(position: group.start + UInt64(group.accepted), hash: chain.lastHash)
        let outcome = withMapGrowth { () throws in
            try environment.write { txn in
                try txn.withCursor(events) { cursor in
                    try chain.forEach { k, value in
                        try withUnsafeBytes(of: (group.start + UInt64(k) + 1).bigEndian) { key in
                            try cursor.put(key: key, value: value, flags: .append)
                        }
                    }
                }
                if let work = group.checkpoint {
                    for chunk in work.chunks { try writeCheckpointChunk(work.plan, chunk, txn: txn) }
                }
                try txn.put(meta, key: Ledger.headKey, value: Ledger.encodeHead(head))
            }
        }
        chain.recycle()
        switch outcome {
        case .success:
            let checkpointed = group.checkpoint.flatMap { $0.isLast ? $0.plan.position : nil }
            let release: Bool = committed.withLock {
                $0.head = head
                $0.counters = group.counters
                if let checkpointed { $0.checkpoint = checkpointed }
                $0.commitsSinceRelease += 1
                guard group.checkpoint != nil || $0.commitsSinceRelease >= Ledger.commitsPerRelease else { return false }
                $0.commitsSinceRelease = 0
                return true
            }
            if release {
                // The index pages a chunk of a checkpoint read, and those lookups of cases and ids
                // read, need not stay mapped: else the resident set gains the whole `ids`, `cases`
                // and `durations` trees as the log grows. They stay in the page cache.
                environment.releaseMappedPages()
            }
            return group.validated
        case .failure(let e):
            committed.withLock { $0.epoch += 1 }
            let error = (e as? LedgerError) ?? LedgerError(.unavailable, "the commit failed (\(e)); nothing was stored; retry later")
            return failAccepted(group, error)
        }
    }

    /// Every request of `group` that validated gets `error` (it was not stored).
    private func failAccepted(_ group: SequencedGroup, _ error: LedgerError) -> [Result<[AppendResult], LedgerError>] {
        group.validated.map { r in
            if case .success = r { return .failure(error) }
            return r
        }
    }

    /// After a failed write: the in-memory state is rebuilt from what is stored, as at open.
    func reloadIfFailed(_ state: inout WriterState) throws {
        let current = committed.withLock { $0 }
        guard state.epoch != current.epoch else { return }
        let fresh = try loadWriterState(epoch: current.epoch, chain: state.chain)
        state = fresh
        committed.withLock {
            $0.head = fresh.head
            $0.counters = fresh.counters
            $0.checkpoint = fresh.overlay.checkpoint
        }
    }

    /// The writer's state from what is stored: the head, and the projections after the checkpoint
    /// replayed from the log.
    func loadWriterState(epoch: UInt64, chain: ChainBuilder) throws -> WriterState {
        var state = try environment.read { txn in
            let current = try currentState(txn, capacity: options.checkpointEvents)
            chain.reset(to: current.head)
            return WriterState(head: current.head, counters: current.counters, overlay: current.overlay, chain: chain,
                               epoch: epoch)
        }
        // Stored filters cover the checkpoint they were read with, or a later one: a superset.
        state.idFilters = try loadIDFilters(overlay: state.overlay)
        return state
    }

    /// Waits until every sequenced group has been committed (or failed): for readers and
    /// maintenance that must see the writer's state as stored. Called with the writer's lock held,
    /// so nothing new is sequenced meanwhile; the committer does not need that lock.
    func drain(_ state: inout WriterState) throws {
        while true {
            let current = committed.withLock { $0 }
            if current.epoch != state.epoch {
                try reloadIfFailed(&state)
                return
            }
            if current.head.position == state.head.position {
                state.head = current.head  // with its hash
                try finishCheckpoint(&state)
                state.retireFrozen(stored: committed.withLock { $0.checkpoint }, storesFilters: filters != nil)
                state.recent.removeAll()
                return
            }
            usleep(200)
        }
    }
}

extension Ledger {
    /// Where the sequencer sends what it no longer needs, to be freed off its thread.
    static let releaseQueue = DispatchQueue(label: "ledger-release", qos: .utility)

    /// Commits between two drops of the mapped pages (`Environment.releaseMappedPages`) when no
    /// checkpoint is being written.
    static let commitsPerRelease = 8

    /// The most chunks a checkpoint planned now may have: half the groups that the next
    /// `interval` events take at `pace` (the groups and events since the last checkpoint was
    /// planned), so that it is written well before the next one is due. Without it a small
    /// `checkpointChunkKeys` with large groups made each checkpoint take longer than the interval:
    /// the overlay grew with every checkpoint (at 4M events with 2,048 keys, 380 MiB of heap).
    static func chunkLimit(pace: (groups: Int, events: Int), interval: Int) -> Int {
        guard pace.events > 0 else { return .max }
        return max(1, interval / 2 / max(1, pace.events / pace.groups))
    }

    /// Writes the chunks of a checkpoint not yet handed to a group, so that what is stored is the
    /// checkpoint whole. For `drain`, when every group is committed.
    func finishCheckpoint(_ state: inout WriterState) throws {
        guard let plan = state.plan else { return }
        try writeCheckpointChunksNow(plan, state.nextChunk..<plan.chunks)
        state.plan = nil
    }
}

/// Where the sequencer looks up what is not in its overlay: the frozen overlay of a checkpoint not
/// yet seen stored, the events of groups not yet stored, and the stored state in one snapshot.
/// A class: the closures that read it capture one reference, not copies of its tables.
final class Lookup {
    let txn: ReadTransaction
    /// The head of the snapshot: events after it are not stored yet.
    let storedHead: UInt64
    let frozen: Overlay?
    /// The case tables of earlier checkpoints, newest first (a cache: all of it is stored).
    let older: [StringTable<Overlay.CaseSlot>]
    let recent: [RecentGroup]
    let environment: Environment
    /// The sequencer's page faults since its mapped pages were last dropped (`WriterState.faults`,
    /// handed back after the group).
    private(set) var faults: FaultBudget

    init(txn: ReadTransaction, storedHead: UInt64, frozen: Overlay?, older: [StringTable<Overlay.CaseSlot>],
         recent: [RecentGroup], environment: Environment, faults: FaultBudget) {
        self.txn = txn
        self.storedHead = storedHead
        self.frozen = frozen
        self.older = older
        self.recent = recent
        self.environment = environment
        self.faults = faults
    }

    /// Runs `body`, a read of the stored indexes, then drops the mapped pages if the reads so far
    /// took `Ledger.faultsPerRelease` faults: reads of cases and ids not cached go all over the
    /// file, and each maps 64 KiB of it (`Environment.releaseMappedPages(ifOver:)`).
    func readingStored<T>(_ body: () throws -> T) rethrows -> T {
        defer {
            // Checked every 16th read: asking the kernel for the fault count costs about a read.
            storedReads &+= 1
            if storedReads % 16 == 0 { environment.releaseMappedPages(ifOver: &faults) }
        }
        return try body()
    }
    private var storedReads = 0

    /// A case's record from the frozen overlay or an older checkpoint's table, newest first; `h`
    /// is the id's `keyHash`.
    func cachedCaseRecord(_ id: String, hash h: UInt64) -> CaseRecord? {
        if let r = frozen?.caseRecord(id, hash: h) { return r }
        for table in older {
            if let i = table.index(of: id, hash: h), let r = table[value: i].record { return r }
        }
        return nil
    }

    /// Touches what looking up these keys in the frozen overlay and the older tables reads first
    /// (`StringTable.touch`); `h` is the case id's `keyHash`.
    func touchCase(_ h: UInt64) -> UInt64 {
        var x = frozen?.cases.touch(h) ?? 0
        for table in older { x ^= table.touch(h) }
        return x
    }

    /// The same for the entries those slots name (`StringTable.touchEntry`).
    func touchCaseEntry(_ h: UInt64) -> UInt64 {
        var x = frozen?.cases.touchEntry(h) ?? 0
        for table in older { x ^= table.touchEntry(h) }
        return x
    }
}
