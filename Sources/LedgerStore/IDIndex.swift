import LedgerCore
import LMDBKit

// The index of event ids, which makes every id unique in the ledger (CONTRACT §2, idempotency).
//
// On disk, `ids` is kept in runs, like the levels of an LSM tree: each checkpoint stores the ids of
// the events since the previous one as one run, under keys `run start ‖ id hash` (the run's first
// position, then `keyHash` of the id under the ledger's seed, both big-endian). Every key of a new
// run sorts after every stored key, so a checkpoint appends its run at the end of the tree, page
// after page, whatever the ids look like (random UUIDs included), and the hashes sort as integers.
// The value lists the run's positions whose id has that hash (one, but for a collision). The id
// itself is the event's: a candidate position is confirmed by reading the event.
//
// In memory, the writer holds the ids after the last checkpoint exactly (`HashPositions`), a Bloom
// filter of every id (`IDFilters.all`: a new id, nearly every one, costs no lookup at all) and one
// filter per stored run (a possible duplicate is looked up only in the runs that may hold it). The
// filters are built at open by scanning the keys of `ids`, which hold the hashes: nothing that
// depends on the hash function is stored but those keys, and `meta.id_hash` names the function.

/// Positions by a 64-bit hash (of an event id, or of a case id): several positions may share a hash,
/// so a caller confirms each candidate by its event. Open addressing with linear probing; removal
/// shifts entries back, so no tombstones. The writer's ids after the last checkpoint are one; the
/// levels of `RecentCases` are others.
struct HashPositions: Sendable {
    private var hashes: [UInt64]
    /// 0 for an empty slot.
    private var positions: [UInt64]
    private var mask: Int
    private(set) var count = 0

    init(capacity: Int = 1 << 12) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        hashes = Array(repeating: 0, count: n)
        positions = Array(repeating: 0, count: n)
        mask = n - 1
    }

    @inline(__always)
    private func home(_ h: UInt64) -> Int { Int(truncatingIfNeeded: h) & mask }

    mutating func insert(hash h: UInt64, position: UInt64) {
        if (count + 1) * 2 > positions.count { grow() }
        var i = home(h)
        while positions[i] != 0 { i = (i + 1) & mask }
        hashes[i] = h
        positions[i] = position
        count += 1
    }

    /// Removes the entry (`h`, `position`) if present.
    mutating func remove(hash h: UInt64, position: UInt64) {
        var i = home(h)
        while positions[i] != 0 && !(hashes[i] == h && positions[i] == position) { i = (i + 1) & mask }
        guard positions[i] != 0 else { return }
        positions[i] = 0
        count -= 1
        // Shift back the entries after it whose home is not between the hole and themselves.
        var j = i
        while true {
            j = (j + 1) & mask
            guard positions[j] != 0 else { return }
            let k = home(hashes[j])
            let between = i <= j ? (i < k && k <= j) : (i < k || k <= j)
            if !between {
                hashes[i] = hashes[j]
                positions[i] = positions[j]
                positions[j] = 0
                i = j
            }
        }
    }

    /// Calls `body` with each position whose id hash is `h` until it returns a value.
    func first<T>(hash h: UInt64, _ body: (UInt64) throws -> T?) rethrows -> T? {
        var i = home(h)
        while positions[i] != 0 {
            if hashes[i] == h, let found = try body(positions[i]) { return found }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Calls `body` with every entry, in no order.
    func forEach(_ body: (UInt64, UInt64) -> Void) {
        for i in positions.indices where positions[i] != 0 { body(hashes[i], positions[i]) }
    }

    /// Every entry, ordered by hash, then position: a run's keys in LMDB's order.
    var sorted: [(hash: UInt64, position: UInt64)] {
        var out: [(hash: UInt64, position: UInt64)] = []
        out.reserveCapacity(count)
        for i in positions.indices where positions[i] != 0 { out.append((hashes[i], positions[i])) }
        out.sort { $0.hash != $1.hash ? $0.hash < $1.hash : $0.position < $1.position }
        return out
    }

    private mutating func grow() {
        let old = (hashes, positions)
        self = HashPositions(capacity: positions.count)
        for i in old.1.indices where old.1[i] != 0 { insert(hash: old.0[i], position: old.1[i]) }
    }
}

/// The writer's Bloom filters of event ids (`IDFilter`): of all of them, and of each stored run.
struct IDFilters {
    struct Run {
        let start: UInt64
        let filter: IDFilter
    }

    var all: IDFilter
    /// The stored runs, newest first.
    var runs: [Run] = []

    init(expected: Int) { all = IDFilter(expected: expected) }
}

extension Ledger {
    /// The filters of the ids stored in `ids` as `txn` sees it, built from its keys (the hashes).
    func scanIDFilters(_ txn: some Transaction) throws -> IDFilters {
        let stored = try txn.count(layout.ids)
        // Room for half as many again before the filter of all ids adds another.
        var filters = IDFilters(expected: max(stored * 3 / 2, 1 << 20))
        var runStart: UInt64?
        var hashes: [UInt64] = []
        func endRun() {
            guard let start = runStart else { return }
            var filter = IDFilter(expected: hashes.count)
            for h in hashes { filter.insert(hash: h) }
            filters.runs.insert(IDFilters.Run(start: start, filter: filter), at: 0)
            hashes.removeAll(keepingCapacity: true)
        }
        try txn.scan(layout.ids, from: nil) { key, _ in
            guard key.count == 16 else { throw StoreError(.corrupt, "an id index key is \(key.count) bytes, not 16", database: "ids") }
            let start = Layout.prefixUInt64(key)
            if runStart != start {
                endRun()
                runStart = start
            }
            let h = UInt64(bigEndian: key.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            hashes.append(h)
            filters.all.insert(hash: h)
            return true
        }
        endRun()
        return filters
    }

    /// The positions stored in the run starting at `start` for id hash `h`.
    func storedPositions(run start: UInt64, hash h: UInt64, txn: some Transaction) throws -> [UInt64] {
        var key = Layout.idKey(run: start, hash: h)
        return try withUnsafeBytes(of: &key) { k in
            try txn.withValue(layout.ids, key: k) { v in
                stride(from: 0, to: v.count - 7, by: 8).map { UInt64(bigEndian: v.loadUnaligned(fromByteOffset: $0, as: UInt64.self)) }
            } ?? []
        }
    }

    /// Writes the run that starts at `start`: `entries` ordered by hash, then position (appended
    /// after every stored key; one key per hash).
    func writeRun(start: UInt64, _ entries: [(hash: UInt64, position: UInt64)], txn: WriteTransaction) throws {
        try txn.withCursor(layout.ids) { cursor in
            var i = 0
            var value: [UInt8] = []
            while i < entries.count {
                let h = entries[i].hash
                value.removeAll(keepingCapacity: true)
                while i < entries.count && entries[i].hash == h {
                    withUnsafeBytes(of: entries[i].position.bigEndian) { value.append(contentsOf: $0) }
                    i += 1
                }
                var key = Layout.idKey(run: start, hash: h)
                try withUnsafeBytes(of: &key) { k in
                    try value.withUnsafeBytes { v in try cursor.put(key: k, value: v, flags: .append) }
                }
            }
        }
    }

    /// The starts of the stored runs, ascending (one seek per run).
    func idRunStarts(_ txn: some Transaction) throws -> [UInt64] {
        var starts: [UInt64] = []
        var next: UInt64 = 0
        while true {
            var found: UInt64?
            try txn.scan(layout.ids, from: next) { key, _ in
                found = Layout.prefixUInt64(key)
                return false
            }
            guard let start = found else { return starts }
            starts.append(start)
            if start == .max { return starts }
            next = start + 1
        }
    }

    /// The run that holds the id of the event at `position`: the one with the largest start at or
    /// before it, among `starts` (ascending); nil when none.
    static func run(of position: UInt64, in starts: [UInt64]) -> UInt64? {
        var low = 0, high = starts.count  // the first start after `position`
        while low < high {
            let mid = (low + high) / 2
            if starts[mid] <= position { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : starts[low - 1]
    }
}
