import LedgerCore
import LMDBKit

/// The `ids` index in runs (format 3): each checkpoint stores the ids of the events it covers,
/// (previous checkpoint, checkpoint], as one run under the key `start ‖ id`, where `start` is the
/// run's first position (big-endian `UInt64`) and `id` the event id's UTF-8 bytes. The value is
/// the event's position.
///
/// Why runs: every key of a new run sorts after every stored key, so a checkpoint appends its ids
/// at the end of the tree, page after page, whatever the ids look like. With the id alone as the key,
/// random ids (UUIDs) landed all over the tree, and each checkpoint rewrote about all of it: the
/// cost of a checkpoint grew with the log (at 2M UUID events, 259k events/s and 232 MiB).
///
/// The price is the lookup: an id may be in any run. The writer keeps a Bloom filter per run beside
/// the filter of all ids (`IDFilters`), so a new id costs no lookup and a duplicate about one. The
/// run of an event at position `p` is the one with the largest start at or before `p`, which is how
/// `verify` finds it.
///
/// A run is named by where it starts, not where it ends, so that a checkpoint written again after a
/// crash (its chunks half stored) writes the same keys again rather than a second copy.
extension Ledger {
    /// `start ‖ id`, the id given by its UTF-8 bytes.
    static func idKey(run start: UInt64, _ id: UnsafeRawBufferPointer, into key: inout [UInt8]) {
        key.removeAll(keepingCapacity: true)
        withUnsafeBytes(of: start.bigEndian) { key.append(contentsOf: $0) }
        key.append(contentsOf: id)
    }

    /// `start ‖ id`.
    static func idKey(run start: UInt64, _ id: String, into key: inout [UInt8]) {
        var id = id
        id.withUTF8 { idKey(run: start, UnsafeRawBufferPointer($0), into: &key) }
    }

    /// The position stored for `id` in the run that starts at `start`, or nil.
    func storedPosition(ofID id: String, run start: UInt64, txn: some Transaction) throws -> UInt64? {
        var key: [UInt8] = []
        Ledger.idKey(run: start, id, into: &key)
        return try key.withUnsafeBytes { k in try txn.withValue(ids, key: k) { Ledger.decodeUInt64($0) } }
    }

    /// The position stored for `id`: looked up in the runs whose filter may hold it, newest first.
    /// - Parameter h: the id's `keyHash`.
    func storedPosition(ofID id: String, hash h: UInt64, filters: IDFilters, txn: some Transaction) throws -> UInt64? {
        for run in filters.runs where try mayContain(run, hash: h, txn: txn) {
            if let position = try storedPosition(ofID: id, run: run.start, txn: txn) { return position }
        }
        return nil
    }

    /// Whether `run`'s filter may hold the id whose `keyHash` is `h`: the filter in memory, else the
    /// one stored in `filters`, read in the map. A stored filter that is missing or unreadable
    /// says "maybe", so the run is looked up.
    func mayContain(_ run: IDFilters.Run, hash h: UInt64, txn: some Transaction) throws -> Bool {
        if let filter = run.filter { return filter.mayContain(hash: h) }
        guard let db = filters else { return true }
        return try withUnsafeBytes(of: run.start.bigEndian) { key in
            try txn.withValue(db, key: key) { IDFilter.mayContain(hash: h, serialized: $0) ?? true } ?? true
        }
    }

    /// The starts of the stored runs, ascending: one seek per run.
    func idRunStarts(_ txn: some Transaction) throws -> [UInt64] {
        var starts: [UInt64] = []
        var next: UInt64 = 0
        while true {
            var found: UInt64?
            try withUnsafeBytes(of: next.bigEndian) { from in
                try txn.scan(ids, from: from) { key, _ in
                    found = Ledger.decodeUInt64(key)
                    return false
                }
            }
            guard let start = found else { return starts }
            starts.append(start)
            if start == UInt64.max { return starts }
            next = start + 1
        }
    }

    /// The run that holds the id of the event at `position`, among `starts` (ascending), or nil.
    static func run(of position: UInt64, in starts: [UInt64]) -> UInt64? {
        runIndex(of: position, in: starts).map { starts[$0] }
    }

    /// The index in `starts` (ascending) of the run that holds the id of the event at `position`,
    /// or nil.
    static func runIndex<Starts: RandomAccessCollection<UInt64>>(of position: UInt64, in starts: Starts) -> Int?
    where Starts.Index == Int {
        var low = 0, high = starts.count  // the first start after `position`
        while low < high {
            let mid = (low + high) / 2
            if starts[mid] <= position { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : low - 1
    }

    /// The key of the filter of all ids in `filters`; a run's filter is under its start.
    static let allIDsFilterKey = [UInt8](repeating: 0, count: 8)

    /// The value stored under `allIDsFilterKey`: the checkpoint's position, then the filter's bytes.
    static func allIDsFilterValue(_ all: IDFilter, at position: UInt64) -> [UInt8] {
        all.serialized(after: encodeUInt64(position))
    }

    /// The writer's filters for the log as stored, and `overlay`'s ids (the events after the
    /// checkpoint): those stored in `filters` when they cover the checkpoint (a few ms however long
    /// the log), else built by scanning the index (about 90 ms per 1,000,000 ids here) and, by a
    /// writer, stored for the next open.
    func loadIDFilters(overlay: Overlay) throws -> IDFilters {
        let (stored, checkpoint) = try environment.read { txn in (try storedIDFilters(txn), try storedCheckpoint(txn)) }
        var filters: IDFilters
        if let stored {
            filters = stored
            filters.dropStoredRuns()
        } else {
            filters = try environment.read { txn in try scanIDFilters(txn) }
            if !options.readOnly, let db = self.filters {
                // Best effort: if this fails, the next open scans again, and the runs' filters stay
                // in memory.
                let outcome = withMapGrowth { () throws in
                    try environment.write { txn in
                        try txn.clear(db)
                        try storeIDFilters(all: Ledger.allIDsFilterValue(filters.all, at: checkpoint),
                                           runs: filters.runs.compactMap { run in run.filter.map { (run.start, $0.serialized()) } },
                                           txn: txn)
                    }
                }
                if case .success = outcome { filters.dropStoredRuns() }
            }
        }
        for i in overlay.ids.indices where overlay.ids[value: i] != 0 { filters.insert(hash: keyHash(overlay.ids.key(at: i))) }
        return filters
    }

    /// Stores the filter of all ids as of a checkpoint (`all`: the checkpoint's position, then the
    /// filter's bytes; a superset does no harm: it may hold ids after it; nil: leave the stored one,
    /// which then names an older checkpoint and is not used), and the filters of `runs`
    /// (`IDFilter.serialized` each).
    func storeIDFilters(all: [UInt8]?, runs: [(start: UInt64, filter: [UInt8])], txn: WriteTransaction) throws {
        guard let db = filters else { return }
        if let all { try txn.put(db, key: Ledger.allIDsFilterKey, value: all) }
        for run in runs {
            try txn.put(db, key: Ledger.encodeUInt64(run.start), value: run.filter)
        }
    }

    /// What `filters` holds, as `storeIDFilters` wrote it (entries that do not read back are left
    /// out); nil when the ledger has no `filters`.
    func readStoredIDFilters(_ txn: some Transaction) throws -> StoredIDFilters? {
        guard let db = filters else { return nil }
        var stored = StoredIDFilters()
        try txn.scan(db, from: nil) { key, value in
            guard key.count == 8 else { return true }
            if key.elementsEqual(Ledger.allIDsFilterKey) {
                guard value.count > 8, let all = IDFilter(serialized: UnsafeRawBufferPointer(rebasing: value[8...])) else { return true }
                stored.all = (Ledger.decodeUInt64(value), all)
            } else if let f = IDFilter(serialized: value) {
                stored.runs.append((Ledger.decodeUInt64(key), f))
            }
            return true
        }
        return stored
    }

    /// The stored filters, if they cover the whole index as `txn` sees it: the filter of all ids
    /// is the checkpoint's, no checkpoint is half written, and every run has its own.
    func storedIDFilters(_ txn: some Transaction) throws -> IDFilters? {
        guard try storedPending(txn) == nil, let stored = try readStoredIDFilters(txn), let all = stored.all,
              all.position == (try storedCheckpoint(txn))
        else { return nil }
        let byStart = Dictionary(stored.runs, uniquingKeysWith: { first, _ in first })
        var runs: [IDFilters.Run] = []
        for start in try idRunStarts(txn).reversed() {
            guard let f = byStart[start] else { return nil }
            runs.append(IDFilters.Run(start: start, filter: f))
        }
        var filters = IDFilters()
        filters.all = all.filter
        filters.runs = runs
        return filters
    }

    /// The filters of the ids in the index as `txn` sees it, built by scanning it (about 90 ms per
    /// 1,000,000 ids here).
    func scanIDFilters(_ txn: some Transaction) throws -> IDFilters {
        let stored = try txn.count(ids)
        // Room for half as many again before the filter of all ids adds another.
        var filters = IDFilters(expected: max(stored * 3 / 2, 1 << 20))
        var runs: [IDFilters.Run] = []
        var runStart: UInt64?
        var hashes: [UInt64] = []  // of the run being read
        func endRun() {
            guard let start = runStart else { return }
            var filter = IDFilter(expected: hashes.count)  // sized to the run: no filter added
            for h in hashes { filter.insert(hash: h) }
            runs.append(IDFilters.Run(start: start, filter: filter))
            hashes.removeAll(keepingCapacity: true)
        }
        try txn.scan(ids, from: nil) { key, _ in
            guard key.count > 8 else { return true }
            let start = Ledger.decodeUInt64(key)
            if runStart != start {
                endRun()
                runStart = start
            }
            let h = keyHash(UnsafeRawBufferPointer(rebasing: key[8...]))
            hashes.append(h)
            filters.all.insert(hash: h)
            return true
        }
        endRun()
        filters.runs = runs.reversed()
        return filters
    }
}

/// The writer's Bloom filters of event ids: of all of them (a new id costs no lookup), and of each
/// stored run (a possible duplicate is looked up only in the runs that may hold it). The ids after
/// the checkpoint need no run filter: the overlay holds them exactly. A run's filter is made when
/// its checkpoint is planned, from the overlay's ids, in one pass (a few ms per 250,000 ids) rather
/// than one more cache miss per appended id.
///
/// Only the filter of all ids is asked for every id; a run's filter only when that one says
/// "maybe" (about 1 % of new ids, and duplicates). So only the filters of the newest
/// `runsInMemory` runs stay in memory once stored (retries are mostly of recent events, and cost
/// no read then); older runs' filters are read in `filters`, in LMDB's map: 1.25 bytes per id less
/// memory (5 MiB at 4,000,000 events), for a retry of an old event about 1 µs more per run it
/// tests (a whole 4M-event log sent again: 9.5 s with every filter in memory, 15.8 s with none,
/// 11.9 s with the newest 4).
struct IDFilters {
    struct Run {
        let start: UInt64
        /// Nil once it is stored in `filters` under `start`.
        var filter: IDFilter?
    }

    var all: IDFilter
    /// Stored runs (and the one being written), newest first.
    var runs: [Run] = []

    init(expected: Int = 1 << 20) {
        all = IDFilter(expected: expected)
    }

    mutating func insert(hash h: UInt64) { all.insert(hash: h) }

    /// The stored runs whose filters stay in memory, newest first.
    static let runsInMemory = 4

    /// Forgets the filters of the runs up to `checkpoint` (all of them by default), which are stored
    /// in `filters`, but for the newest `runsInMemory`.
    mutating func dropStoredRuns(through checkpoint: UInt64 = .max) {
        for i in runs.indices.dropFirst(IDFilters.runsInMemory) where runs[i].start <= checkpoint { runs[i].filter = nil }
    }

    /// A checkpoint of `ids` (an overlay's: the events from `start` on) is planned: they form the
    /// run that starts at `start`. Returns the run's filter.
    @discardableResult
    mutating func addRun(start: UInt64, ids: StringTable<UInt64>) -> IDFilter {
        var filter = IDFilter(expected: ids.count)
        for i in ids.indices where ids[value: i] != 0 { filter.insert(hash: ids.withKeyBytes(at: i) { keyHash($0) }) }
        if runs.first?.start == start {
            runs[0].filter = filter  // written again (a checkpoint finished after a crash)
        } else {
            runs.insert(Run(start: start, filter: filter), at: 0)
        }
        return filter
    }
}

/// The id filters as stored (`Ledger.readStoredIDFilters`).
struct StoredIDFilters {
    /// The filter of all ids and the checkpoint it was stored with.
    var all: (position: UInt64, filter: IDFilter)?
    /// Runs by start, ascending.
    var runs: [(start: UInt64, filter: IDFilter)] = []

    /// The filter of the run that holds the id of the event at `position`, if it is stored.
    func run(of position: UInt64) -> IDFilter? {
        Ledger.runIndex(of: position, in: runs.lazy.map(\.start)).map { runs[$0].filter }
    }
}
