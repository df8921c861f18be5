import LedgerCore

/// What readers see: the state as of one commit, published by the writer after the commit and
/// before the commit's requests are answered. Immutable; a reader takes the current one (a
/// reference copy) and never waits for the writer.
///
/// The stored projections (`cases`, `counters`, `durations`) reflect `projected`; a snapshot adds
/// what the events after it changed: the counters at `head`, and, for the events after `projected`,
/// their cases' positions (`recent`) and their duration samples (`samples`). A reader combines
/// them with an LMDB snapshot opened after taking this one, which holds every event up to `head`
/// and stored projections at `projected` or later (a checkpoint may have committed meanwhile).
final class Snapshot: Sendable {
    let head: Head
    let projected: UInt64
    let counters: CounterTable
    let recent: RecentCases
    /// The samples of the events after `projected`, newest chunk first.
    let samples: SampleChunk?
    /// The writer's case records and event ids in memory.
    let casesInMemory: Int
    let idsInMemory: Int

    init(head: Head, projected: UInt64, counters: CounterTable, recent: RecentCases, samples: SampleChunk?,
         casesInMemory: Int, idsInMemory: Int) {
        self.head = head
        self.projected = projected
        self.counters = counters
        self.recent = recent
        self.samples = samples
        self.casesInMemory = casesInMemory
        self.idsInMemory = idsInMemory
    }
}

/// The duration samples of one commit, and those of the commits before it since the checkpoint.
final class SampleChunk: Sendable {
    let samples: [DurationSample]
    let previous: SampleChunk?

    init(_ samples: [DurationSample], previous: SampleChunk?) {
        self.samples = samples
        self.previous = previous
    }

    /// Every sample of this chunk and the ones before it, oldest first.
    var all: [DurationSample] {
        var chunks: [SampleChunk] = []
        var c: SampleChunk? = self
        while let chunk = c {
            chunks.append(chunk)
            c = chunk.previous
        }
        return chunks.reversed().flatMap(\.samples)
    }
}

/// The positions of the events after a checkpoint, by the hash of their case id: where a reader
/// finds a case's latest event that the stored `cases` does not know yet.
///
/// Levels of `HashPositions`, newest first: each commit adds a level, and a level is merged into the
/// one below while it holds at least half as many entries, so there are at most about
/// log2(entries) levels, and each entry is copied about that many times.
final class RecentCases: Sendable {
    struct Level: Sendable {
        let table: HashPositions
        let count: Int
    }

    let levels: [Level]

    static let empty = RecentCases(levels: [])

    private init(levels: [Level]) { self.levels = levels }

    /// These levels and one more with `entries` (case id hash, position).
    func adding(_ entries: [(hash: UInt64, position: UInt64)]) -> RecentCases {
        guard !entries.isEmpty else { return self }
        var levels = self.levels
        var merged = entries.count
        var take = 0
        while take < levels.count, merged * 2 >= levels[take].count {
            merged += levels[take].count
            take += 1
        }
        var table = HashPositions(capacity: merged)
        for e in entries { table.insert(hash: e.hash, position: e.position) }
        for level in levels[..<take] { level.table.forEach { table.insert(hash: $0, position: $1) } }
        levels.removeFirst(take)
        levels.insert(Level(table: table, count: merged), at: 0)
        return RecentCases(levels: levels)
    }

    /// The positions at or before `limit` whose case id hashes to `h`, newest first: the caller
    /// checks each one's case id (two ids may share a hash) and takes the first that matches.
    func candidates(hash h: UInt64, atOrBefore limit: UInt64) -> [UInt64] {
        var out: [UInt64] = []
        for level in levels {
            _ = level.table.first(hash: h) { p -> Bool? in
                if p <= limit { out.append(p) }
                return nil
            }
        }
        return out.sorted(by: >)
    }
}
