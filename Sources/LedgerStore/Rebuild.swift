import Dispatch
import LedgerCore
import LMDBKit
import Synchronization

extension Ledger {
    /// The state of a rebuild of the projections from position 0 (`rebuildProjections`), with its
    /// checkpoints written: the events are applied in windows of `rebuildInterval`, each by as many
    /// threads as there are processors, each thread taking the cases whose id hashes to it (a case's
    /// events depend only on that case; counters and samples add up), then merged and checkpointed.
    /// - Parameter progress: events applied and the head, about five times a second.
    func rebuildState(progress: (UInt64, UInt64) -> Void) throws -> WriterState {
        var loader = StateLoader(ledger: self, isWriter: true, interval: Ledger.rebuildInterval)
        try environment.read { txn in try loader.start(txn) }
        var state = loader.state
        let target = loader.target
        let shards = max(1, min(System.processors, 8))
        while state.projected < target.position {
            let from = state.projected + 1
            let to = min(state.projected + UInt64(Ledger.rebuildInterval), target.position)
            let done = EventCount()
            let outputs = Mutex<[Result<Shard, any Error>?]>(Array(repeating: nil, count: shards))
            let group = DispatchGroup()
            let indexed = state.indexed
            for k in 0..<shards {
                DispatchQueue.global(qos: .userInitiated).async(group: group) {
                    let r = Result { try self.applyShard(k, of: shards, from: from, to: to, indexed: indexed, done: done) }
                    outputs.withLock { $0[k] = r }
                }
            }
            while group.wait(timeout: .now() + .milliseconds(200)) == .timedOut {
                progress(from - 1 + done.value.load(ordering: .relaxed) / UInt64(shards), target.position)
            }
            let results = try outputs.withLock { try $0.map { try $0!.get() } }
            state.cases = results[0].cases
            state.moreCases = results.dropFirst().map(\.cases)
            var samples: [DurationSample] = []
            for r in results {
                for (key, n) in r.counters.all { state.counters.add(key, n) }
                samples += r.samples
                r.ids.forEach { state.ids.insert(hash: $0, position: $1) }
            }
            state.samples = samples.isEmpty ? nil : SampleChunk(samples, previous: nil)
            state.head = Head(position: to, hash: try environment.read { txn in
                try withUnsafeBytes(of: to.bigEndian) { k in try txn.withValue(layout.events, key: k) { Array($0.prefix(32)) } }
            } ?? [])
            try writeCheckpoint(&state)
            progress(to, target.position)
        }
        state.head = target
        return state
    }

    /// What one thread of a rebuild made of its cases' events in a window.
    struct Shard: Sendable {
        var cases: StringTable<CaseEntry>
        var counters: CounterTable
        var samples: [DurationSample]
        var ids: HashPositions
    }

    /// Applies the events `from...to` whose case id hashes to shard `k` of `shards`, reading in chunks
    /// of a read transaction each; the cases start from their stored records (at `from - 1`). Adds
    /// the events it read to `done`.
    private func applyShard(_ k: Int, of shards: Int, from: UInt64, to: UInt64, indexed: UInt64,
                            done: EventCount) throws -> Shard {
        var state = WriterState(head: .empty, projected: from - 1, indexed: indexed, counters: CounterTable(),
                                capacity: (1 << 18, 16))
        var samples: [DurationSample] = []
        var delta = ProjectionDelta()
        var noUndo: WriterState.Undo?
        var next = from
        while next <= to {
            try environment.read { txn in
                var read: UInt64 = 0
                try txn.scan(layout.events, from: next) { key, value in
                    guard let position = Layout.decodeUInt64(key), position <= to else { return false }
                    next = position + 1
                    read += 1
                    guard let factsBytes = StoredEvent.factsBytes(in: value), let caseBytes = EventFacts.caseBytes(in: factsBytes) else {
                        throw StoreError.unreadable(position)
                    }
                    let caseHash = keyHash(caseBytes)
                    guard Int(caseHash % UInt64(shards)) == k else { return read < 8192 }
                    guard let facts = EventFacts.decode(factsBytes, withID: false) else { throw StoreError.unreadable(position) }
                    delta.increments.removeAll(keepingCapacity: true)
                    delta.durations.removeAll(keepingCapacity: true)
                    do {
                        _ = try state.apply(facts, caseHash: caseHash, position: position, window: window, delta: &delta,
                                            undo: &noUndo) { try storedCaseRecord($0, txn: txn) }
                    } catch let e as LedgerError {
                        throw StoreError.brokenRule(position, e)
                    }
                    delta.apply(to: &state.counters)
                    for d in delta.durations { samples.append(DurationSample(measure: d.measure, seconds: d.seconds, position: position)) }
                    if position > indexed {
                        guard let id = EventFacts.idBytes(in: factsBytes) else { throw StoreError.unreadable(position) }
                        state.ids.insert(hash: keyHash(id, seed: idSeed), position: position)
                    }
                    return read < 8192
                }
                done.value.wrappingAdd(read, ordering: .relaxed)
                if read == 0 { next = to + 1 }  // the log ends early: the checkpoint of the window says so
            }
        }
        return Shard(cases: state.cases, counters: state.counters, samples: samples, ids: state.ids)
    }
}

/// Events read by the threads of a rebuild, for its progress.
final class EventCount: Sendable {
    let value = Atomic<UInt64>(0)
}

#if canImport(Glibc)
import Glibc
#endif

enum System {
    /// The processors this process may run on.
    static var processors: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
}
