import LedgerCore

/// A case as the writer knows it.
struct CaseEntry: Sendable {
    /// Its record at the head; nil when the case has no events.
    var record: CaseRecord?
    /// Changed since the last checkpoint: `cases` holds an older record, or none.
    var dirty = false
}

/// The projections at the head, in memory: the stored ones (at `projected`) with the events after
/// it applied. Owned by the writer (one thread at a time, under `Ledger.writer`'s lock); readers see
/// only the `Snapshot`s made from it.
///
/// Everything in it is a function of the log: after a crash it is rebuilt by applying the events
/// after the checkpoint again (`Ledger.loadState`), so nothing acknowledged depends on it.
struct WriterState {
    var head: Head
    /// The position `cases`, `counters` and `durations` reflect.
    var projected: UInt64
    /// The position `ids` reflects.
    var indexed: UInt64
    var counters: CounterTable
    /// The cases used since the checkpoint: changed (dirty), or read from `cases` and unchanged.
    var cases: StringTable<CaseEntry>
    /// More such tables, of the cases of other shards of a rebuild (`Ledger.rebuildState`).
    var moreCases: [StringTable<CaseEntry>] = []
    /// The ids of the events after `indexed`.
    var ids = HashPositions()
    /// Loaded at the first append (`Ledger.prepareToAppend`): built from the keys of `ids` and `ids`
    /// of this state.
    var filters: IDFilters?
    /// What readers see of the events after `projected` (`Snapshot`).
    var recent = RecentCases.empty
    var samples: SampleChunk?
    /// Monotonic time of the last checkpoint, nanoseconds.
    var checkpointedAt: UInt64
    /// Set when reading the stored state failed half-way through a group: the state is loaded again
    /// before the next use (as when `epoch` is behind the committer's after a failed write).
    var stale = false
    /// The committer's epoch this state was sequenced in (`Ledger.epoch`).
    var epoch: UInt64 = 0
    /// Groups sequenced and perhaps not committed yet: their events are not in a read snapshot.
    var inFlight: [SequencedGroup] = []

    /// - Parameter capacity: the case records and the ids to make room for at once (a table that
    ///   grows rehashes what it holds).
    init(head: Head, projected: UInt64, indexed: UInt64, counters: CounterTable, capacity: (cases: Int, ids: Int) = (16, 16)) {
        self.head = head
        self.projected = projected
        self.indexed = indexed
        self.counters = counters
        cases = StringTable(capacity: capacity.cases)
        ids = HashPositions(capacity: capacity.ids)
        checkpointedAt = monotonicNanos()
    }

    /// What `apply` changed, to take back when a later event of the same request fails.
    struct Undo {
        var cases: [(index: Int, previous: CaseEntry)] = []
        var ids: [(hash: UInt64, position: UInt64)] = []

        mutating func reset() {
            cases.removeAll(keepingCapacity: true)
            ids.removeAll(keepingCapacity: true)
        }
    }

    /// Applies the event with `facts`, at `position`, to its case: the one path of appending and of
    /// every replay. Adds its effect on the counters and samples to `delta`; notes in `undo` what it
    /// replaced (unless `undo` is nil: a replay of the log takes nothing back). `stored` reads the
    /// case's record from `cases` when the table does not hold it.
    /// - Returns: the position of the case's previous event (0 for its first).
    /// - Throws: `LedgerError` when the case does not allow the event (nothing changed then), or
    ///   what `stored` throws.
    mutating func apply(_ facts: EventFacts, caseHash: UInt64, position: UInt64, window: ReportWindow,
                        delta: inout ProjectionDelta, undo: inout Undo?,
                        stored: (String) throws -> CaseRecord?) throws -> UInt64 {
        var i = cases.index(of: facts.caseID, hash: caseHash)
        if i == nil {
            let record = try stored(facts.caseID)
            i = cases.index(of: facts.caseID, hash: caseHash) { CaseEntry(record: record) }
        }
        let index = i!
        // The entry as it was, for `undo` only: a copy shares the state's storage, so that changing
        // it in place below copies that storage.
        let before = undo == nil ? nil : cases[value: index]
        let previous = cases[value: index].record?.last ?? 0
        if previous != 0 {
            // Changed in place: the case machine throws before it changes anything.
            try CaseMachine.apply(facts, existing: &cases[value: index].record!.state, window: window, delta: &delta)
            cases[value: index].record!.last = position
        } else {
            let state = try CaseMachine.apply(facts, to: nil, window: window, delta: &delta)
            cases[value: index].record = CaseRecord(state: state, last: position)
        }
        cases[value: index].dirty = true
        if let before { undo?.cases.append((index, before)) }
        return previous
    }

    /// Takes back what `undo` noted, newest first.
    mutating func rollBack(_ undo: Undo) {
        for (i, previous) in undo.cases.reversed() { cases[value: i] = previous }
        for (h, p) in undo.ids { ids.remove(hash: h, position: p) }
        // (The id filters keep the ids taken back: a filter that says "maybe" only costs a lookup.)
    }

    /// The snapshot of this state, for readers.
    var snapshot: Snapshot {
        Snapshot(head: head, projected: projected, counters: counters, recent: recent, samples: samples,
                 casesInMemory: cases.count, idsInMemory: ids.count)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC in nanoseconds.
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
