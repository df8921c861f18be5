import LedgerCore
import LMDBKit
import Synchronization

extension Ledger {
    /// Writes the projections at the head to disk now (a checkpoint), so that the stored ones
    /// reflect every event: what a clean shutdown does, and what the writer does when one is due.
    /// - Throws: `StoreError`; the stored projections are then unchanged, and the next checkpoint
    ///   writes everything since the last one.
    ///
    /// Call it from the thread that sequences, with every sequenced group committed.
    public func checkpoint() throws(StoreError) {
        guard isWriter else { return }
        try writer.withLock { (state) throws(StoreError) in
            do {
                try reloadIfStale(&state)
                let committed = committer.withLock { $0.head }
                precondition(committed.position == state.head.position, "a checkpoint with groups sequenced and not committed")
                state.head = committed
                state.inFlight.removeAll()
                try writeCheckpoint(&state)
            } catch {
                throw StoreError.wrap(error, "the checkpoint", directory: directory)
            }
            publish(state)
            trimMappedPages()
        }
    }

    /// Whether a checkpoint is due: `checkpointEvents` events follow the stored projections, or some
    /// do and the last checkpoint is `checkpointSeconds` old.
    public var checkpointDue: Bool {
        guard isWriter else { return false }
        return writer.withLock { state in
            let behind = state.head.position - state.projected
            guard behind > 0 else { return false }
            if behind >= UInt64(options.checkpointEvents) { return true }
            return Double(monotonicNanos() - state.checkpointedAt) / 1e9 >= options.checkpointSeconds
        }
    }

    /// Writes what changed since the last checkpoint, in two write transactions, each atomic with
    /// its own watermark: the ids after `indexed` as a new run of `ids` (and `indexed` moved to the
    /// head); then the dirty case records, the duration samples after `projected` and the counters
    /// (and `projected` moved to the head). Two smaller transactions rather than one: LMDB keeps the
    /// buffers of the largest transaction's dirty pages for good. Then the state starts a new
    /// interval with no cases, ids or samples in memory (a case is read from `cases` when next
    /// used). Does not publish.
    func writeCheckpoint(_ state: inout WriterState) throws {
        state.checkpointedAt = monotonicNanos()
        let head = state.head
        if head.position > state.indexed {
            let ids = state.ids.sorted
            let runStart = state.indexed + 1
            try withMapGrowth("the checkpoint of the id index") {
                try environment.write { txn in
                    if !ids.isEmpty { try writeRun(start: runStart, ids, txn: txn) }
                    try txn.put(layout.meta, key: Layout.MetaKey.indexed.key, value: Layout.encode(head.position))
                }
            }
            if !ids.isEmpty {
                var filter = IDFilter(expected: ids.count)
                for e in ids { filter.insert(hash: e.hash) }
                state.filters?.runs.insert(IDFilters.Run(start: runStart, filter: filter), at: 0)
            }
            state.indexed = head.position
            state.ids = HashPositions(capacity: min(options.checkpointEvents, 1 << 20))
        }
        guard head.position > state.projected else { return }
        let tables = [state.cases] + state.moreCases
        let dirty = Ledger.sortedIndexes(tables) { tables[$0][value: $1].dirty }
        var samples = state.samples?.all ?? []
        samples.sort(by: <)
        let counters = state.counters.all
        try withMapGrowth("the checkpoint of the projections") {
            try environment.write { txn in
                // Into an empty `cases` (a rebuild) every key is appended, page after page.
                let appending: PutFlags = try txn.count(layout.cases) == 0 ? .append : []
                try txn.withCursor(layout.cases) { cursor in
                    var value: [UInt8] = []
                    for (t, i) in dirty {
                        guard let record = tables[t][value: i].record else { continue }
                        value.removeAll(keepingCapacity: true)
                        record.encode(into: &value)
                        try tables[t].withKeyBytes(at: i) { key in
                            try value.withUnsafeBytes { v in try cursor.put(key: key, value: v, flags: appending) }
                        }
                    }
                }
                try txn.withCursor(layout.durations) { cursor in
                    for s in samples {
                        try Layout.durationKey(s).withUnsafeBytes { k in
                            try cursor.put(key: k, value: UnsafeRawBufferPointer(start: nil, count: 0), flags: .append)
                        }
                    }
                }
                try txn.clear(layout.counters)
                try txn.withCursor(layout.counters) { cursor in
                    for (k, v) in counters where v != 0 {
                        try withUnsafeBytes(of: k.raw.bigEndian) { key in
                            try withUnsafeBytes(of: UInt64(bitPattern: v).bigEndian) { value in
                                try cursor.put(key: key, value: value, flags: .append)
                            }
                        }
                    }
                }
                try txn.put(layout.meta, key: Layout.MetaKey.projected.key, value: Layout.encode(head.position))
            }
        }
        state.projected = head.position
        state.recent = .empty
        state.samples = nil
        state.cases = StringTable(capacity: min(options.checkpointEvents, 1 << 20))
        state.moreCases = []
    }

    /// Rebuilds the stored projections from the log: empties them (keeping the id index), then
    /// applies every event again, as a start after a crash applies those after the checkpoint,
    /// checkpointing every `checkpointEvents`. A crash on the way leaves projections that reflect
    /// some position, which the next open continues from.
    /// - Parameter progress: events applied and the head, now and then.
    public func rebuildProjections(progress: (UInt64, UInt64) -> Void = { _, _ in }) throws(StoreError) {
        guard isWriter else { throw StoreError(.readOnly, "the ledger is open read-only; a rebuild needs the data directory's lock", directory: directory) }
        try writer.withLock { (state) throws(StoreError) in
            do {
                try withMapGrowth("emptying the projections") {
                    try environment.write { txn in
                        try txn.clear(layout.cases)
                        try txn.clear(layout.counters)
                        try txn.clear(layout.durations)
                        try txn.put(layout.meta, key: Layout.MetaKey.projected.key, value: Layout.encode(0))
                        try txn.put(layout.meta, key: Layout.MetaKey.window.key, value: Layout.encodeWindow(window))
                        try txn.put(layout.meta, key: Layout.MetaKey.projectionVersion.key, value: Layout.encode(Layout.projectionVersion))
                    }
                }
                state = try rebuildState(progress: progress)
            } catch {
                state.stale = true
                throw StoreError.wrap(error, "rebuilding the projections", directory: directory)
            }
            adopt(&state)
        }
    }

    /// The entries of `tables` that `include` picks (table, index), in LMDB's order of their keys:
    /// by their first 16 bytes as two integers, then byte by byte, the shorter first.
    static func sortedIndexes<Value>(_ tables: [StringTable<Value>], include: (Int, Int) -> Bool) -> [(table: Int, index: Int)] {
        var order: [(a: UInt64, b: UInt64, table: Int, index: Int)] = []
        for (t, table) in tables.enumerated() {
            for i in table.indices where include(t, i) {
                let words = table.withKeyBytes(at: i) { keyWords($0) }
                order.append((words.0, words.1, t, i))
            }
        }
        var first: [UInt8] = []
        order.sort { x, y in
            if x.a != y.a { return x.a < y.a }
            if x.b != y.b { return x.b < y.b }
            first.removeAll(keepingCapacity: true)
            tables[x.table].withKeyBytes(at: x.index) { first.append(contentsOf: $0) }
            return tables[y.table].withKeyBytes(at: y.index) { first.lexicographicallyPrecedes($0) }
        }
        return order.map { ($0.table, $0.index) }
    }

    /// The first two 8-byte words of a key, big-endian, zero-padded.
    static func keyWords(_ bytes: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
        func word(_ from: Int) -> UInt64 {
            var w: UInt64 = 0
            for k in 0..<8 { w = w << 8 | UInt64(from + k < bytes.count ? bytes[from + k] : 0) }
            return w
        }
        return (word(0), word(8))
    }
}
