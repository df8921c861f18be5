import LedgerCore
import LMDBKit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One duration sample not yet checkpointed.
struct DurationSample: Equatable {
    var measure: Measure
    var seconds: Int64
    var position: UInt64

    /// position ‖ measure ‖ seconds (`Ledger.durationKey`).
    var key: [UInt8] { Ledger.durationKey(measure, seconds, position) }

    /// `samples` in the order of their keys.
    static func inKeyOrder(_ samples: [DurationSample]) -> [DurationSample] {
        samples.sorted { ($0.position, $0.measure.rawValue, $0.seconds) < ($1.position, $1.measure.rawValue, $1.seconds) }
    }
}

/// What the events after the last checkpoint changed: the case records, ids and duration samples
/// that are not in their databases yet. The counters are kept whole, beside it.
///
/// The stored `cases`, `ids`, `durations` and `projections` reflect the log up to `checkpoint`
/// (`meta.projected`); stored plus overlay reflect the head. An append writes only its events and
/// the head; every `checkpointEvents` events the overlay is written with the appends that follow
/// (`CheckpointPlan`: sorted, so each B-tree page is rewritten once per checkpoint instead of once
/// per event). After a crash the overlay is rebuilt by replaying the events after the checkpoint:
/// they are in the log.
///
/// The writer caches case records by checkpoint interval: the overlay's table (the cases touched
/// since the last checkpoint), the frozen overlay of that checkpoint (written in chunks, then kept
/// read-only), and the tables of the checkpoints before it, newest first, as many as fit in
/// `caseCacheEntries`. A freeze moves the overlay's table into the frozen overlay without copying
/// it. A case in none is read from `cases`. So the cache's memory is bounded whatever the log's
/// size.
struct Overlay {
    /// A case in the table: its record at the head when known (nil: read the stored one), and
    /// whether that differs from the stored one.
    struct CaseSlot {
        var record: CaseRecord?
        var dirty: Bool
        /// Not in `cases` yet when the overlay took it (a new case): written, it adds an entry
        /// (appended when its key sorts last) instead of rewriting one in its page, so it weighs
        /// less when a checkpoint is cut into chunks (`CheckpointPlan.caseBounds`).
        var isNew = false
    }

    var checkpoint: UInt64
    var cases: StringTable<CaseSlot>
    /// The positions of the events after the checkpoint by id (0: taken back).
    var ids: StringTable<UInt64>
    var durations: [DurationSample] = []

    init(checkpoint: UInt64, capacity: Int = 16) {
        self.checkpoint = checkpoint
        cases = StringTable(capacity: capacity)
        ids = StringTable(capacity: capacity)
    }

    /// After a checkpoint at `position` written from this overlay: the same cases, now clean, and
    /// no ids or samples.
    mutating func checkpointed(at position: UInt64, capacity: Int) {
        checkpoint = position
        ids = StringTable(capacity: capacity)
        durations.removeAll(keepingCapacity: true)
        for i in cases.indices {
            cases[value: i].dirty = false
            cases[value: i].isNew = false
        }
    }

    /// For a checkpoint at `position`: returns what must be written (the cases, the ids, the
    /// samples; its `checkpoint` is `position`), moved out without a copy, and leaves `self` empty
    /// as after that checkpoint.
    mutating func freeze(at position: UInt64, capacity: Int) -> Overlay {
        var frozen = Overlay(checkpoint: position)
        frozen.cases = StringTable(capacity: cases.count)
        swap(&frozen.cases, &cases)
        swap(&frozen.ids, &ids)
        ids = StringTable(capacity: capacity)
        swap(&frozen.durations, &durations)
        checkpoint = position
        return frozen
    }

    /// The same cases, as a read-only cache once they are stored: no ids or samples.
    func retired() -> Overlay {
        var cache = Overlay(checkpoint: checkpoint, capacity: 0)
        cache.cases = cases
        return cache
    }

    /// The case's record at the head if the overlay knows it.
    func caseRecord(_ id: String) -> CaseRecord? { caseRecord(id, hash: keyHash(id)) }

    /// The case's record at the head if the overlay knows it; `h` is the id's `keyHash`.
    func caseRecord(_ id: String, hash h: UInt64) -> CaseRecord? {
        cases.index(of: id, hash: h).flatMap { cases[value: $0].record }
    }

    mutating func setCase(_ id: String, _ record: CaseRecord) {
        let i = cases.index(of: id) { CaseSlot(record: nil, dirty: false) }
        cases[value: i] = CaseSlot(record: record, dirty: true)
    }

    func position(ofID id: String) -> UInt64? {
        guard let i = ids.index(of: id), ids[value: i] != 0 else { return nil }
        return ids[value: i]
    }

    /// Changes made by requests that may still fail, newest last, to take back. Entries name
    /// indexes in `cases` and `ids` (a table never moves its values).
    struct Undo {
        var cases: [(index: Int, previous: CaseSlot)] = []
        var ids: [Int] = []
        var durations = 0
    }

    mutating func rollBack(_ undo: Undo) {
        for (i, previous) in undo.cases.reversed() { cases[value: i] = previous }
        for i in undo.ids { ids[value: i] = 0 }
        durations.removeLast(durations.count - undo.durations)
    }

}

extension Ledger {
    /// The case's record: the overlay's, else the stored one.
    func caseRecord(_ id: String, overlay: Overlay, txn: some Transaction) throws -> CaseRecord? {
        if let r = overlay.caseRecord(id) { return r }
        return try storedCaseRecord(id, txn: txn)
    }

    func storedCaseRecord(_ id: String, txn: some Transaction) throws -> CaseRecord? {
        var key = id
        return try key.withUTF8 { k in
            try txn.withValue(cases, key: UnsafeRawBufferPointer(k)) { CaseRecord.decode($0) } ?? nil
        }
    }

    /// Applies the event with `facts` and `id` at `position` to its case in `overlay` (noting in
    /// `undo` what it replaced) and adds its effect to `delta`. The one path of appending and of
    /// catching up after the checkpoint.
    /// - Parameters:
    ///   - idIndex: the id's index in `overlay.ids` when it is there (an id taken back).
    ///   - idHash: the id's `keyHash` when the caller has it.
    ///   - caseHash: the case id's `keyHash` when the caller has it.
    ///   - stored: the case's record before the overlay knew it, given its id and `keyHash`.
    /// - Returns: the position of the case's previous event (0 for a new case).
    /// - Throws: `LedgerError` when the case does not allow the event; nothing is changed then.
    @discardableResult
    func apply(_ facts: EventFacts, id: String, idIndex: Int? = nil, idHash: UInt64? = nil, caseHash: UInt64? = nil, position: UInt64,
               overlay: inout Overlay, undo: inout Overlay.Undo, delta: inout ProjectionDelta,
               stored: (String, UInt64) throws -> CaseRecord?) throws -> UInt64 {
        let caseHash = caseHash ?? keyHash(facts.caseID)
        let ci = overlay.cases.index(of: facts.caseID, hash: caseHash) { Overlay.CaseSlot(record: nil, dirty: false) }
        let samplesBefore = delta.durations.count
        let previous: UInt64
        if let last = overlay.cases[value: ci].record?.last {
            // In memory: changed in place (the case machine throws before it changes anything).
            undo.cases.append((ci, overlay.cases[value: ci]))
            try CaseMachine.apply(facts, existing: &overlay.cases[value: ci].record!.state, window: window, delta: &delta)
            overlay.cases[value: ci].record!.last = position
            overlay.cases[value: ci].dirty = true
            previous = last
        } else {
            let before = try stored(facts.caseID, caseHash)
            let state = try CaseMachine.apply(facts, to: before?.state, window: window, delta: &delta)
            undo.cases.append((ci, overlay.cases[value: ci]))
            overlay.cases[value: ci] = Overlay.CaseSlot(record: CaseRecord(state: state, last: position), dirty: true,
                                                        isNew: before == nil)
            previous = before?.last ?? 0
        }
        let ii = idIndex ?? overlay.ids.index(of: id, hash: idHash ?? keyHash(id)) { 0 }
        overlay.ids[value: ii] = position
        undo.ids.append(ii)
        for d in delta.durations[samplesBefore...] {
            overlay.durations.append(DurationSample(measure: d.measure, seconds: d.seconds, position: position))
        }
        return previous
    }

    /// The state at the head `txn` sees: the stored head, counters and checkpoint, with the events
    /// after the checkpoint replayed into an overlay. How a writer starts (after a crash, at most
    /// `checkpointEvents` events) and how a reader in another process sees the head.
    ///
    /// A checkpoint being written in chunks (`meta.pending`) may have stored some of its cases
    /// already: a stored case record is its case's state as of its latest event (`last`), so an
    /// event at or before that is already in it and only its id is noted. The pending checkpoint's
    /// counters and duration samples are stored whole with its first chunk, so the events up to it
    /// add to neither.
    func currentState(_ txn: some Transaction, capacity: Int) throws -> CurrentState {
        let head = try storedHead(txn)
        let pending = try storedPending(txn)
        var counters = try pending?.counters ?? storedCounters(txn)
        var overlay = Overlay(checkpoint: try storedCheckpoint(txn), capacity: capacity)
        guard head.position > overlay.checkpoint else {
            return CurrentState(head: head, counters: counters, overlay: overlay)
        }
        // The counters and samples include the events up to here.
        let counted = max(pending?.position ?? 0, overlay.checkpoint)
        var undo = Overlay.Undo()  // the log's events are never taken back: only reused
        var delta = ProjectionDelta()
        try txn.scan(events, from: overlay.checkpoint + 1) { key, value in
            let position = Ledger.decodeUInt64(key)
            guard position <= head.position else { return false }
            guard let facts = StoredEvent.facts(in: value) else { throw StoreError.unreadable(position) }
            if position <= counted, let record = try caseRecord(facts.caseID, overlay: overlay, txn: txn),
               record.last >= position {
                let ii = overlay.ids.index(of: facts.id) { 0 }
                overlay.ids[value: ii] = position
                return true
            }
            delta.increments.removeAll(keepingCapacity: true)
            delta.durations.removeAll(keepingCapacity: true)
            undo.cases.removeAll(keepingCapacity: true)
            undo.ids.removeAll(keepingCapacity: true)
            do {
                try apply(facts, id: facts.id, position: position, overlay: &overlay, undo: &undo, delta: &delta) { id, _ in
                    try storedCaseRecord(id, txn: txn)
                }
            } catch let e as LedgerError {
                throw StoreError.brokenRule(position, e)
            }
            if position > counted {
                delta.apply(to: &counters)
            } else {
                overlay.durations.removeLast(delta.durations.count)  // stored with the pending checkpoint
            }
            return true
        }
        return CurrentState(head: head, counters: counters, overlay: overlay)
    }

    /// Writes chunk `chunk` of `plan` (the first and the last chunk do more, see `CheckpointPlan`).
    func writeCheckpointChunk(_ plan: CheckpointPlan, _ chunk: Int, txn: WriteTransaction) throws {
        let keys = plan.keys(of: chunk)
        let overlay = plan.overlay
        if chunk == 0 {
            if plan.chunks > 1 {
                try txn.put(meta, key: Ledger.pendingKey, value: Ledger.encodePending(plan.position, plan.counters))
            }
            // After every stored sample (their keys start with the position): appended.
            var appending = LastKey(txn: txn, db: durations)
            try txn.withCursor(durations) { cursor in
                for d in DurationSample.inKeyOrder(overlay.durations) {
                    try d.key.withUnsafeBytes { k in
                        try cursor.put(key: k, value: UnsafeRawBufferPointer(start: nil, count: 0), flags: try appending.flags(for: k))
                    }
                }
            }
        }
        try putSorted(overlay.cases, keys.cases, into: cases, txn: txn) { i, out in
            overlay.cases[value: i].record!.encode(into: &out)
        }
        try putSorted(overlay.ids, keys.ids, into: ids, run: plan.runStart, txn: txn) { i, out in
            withUnsafeBytes(of: overlay.ids[value: i].bigEndian) { out.append(contentsOf: $0) }
        }
        if chunk == plan.chunks - 1 {
            for (k, v) in plan.counters.all {
                if v == 0 {
                    _ = try txn.delete(projections, key: k.encoded)
                } else {
                    try txn.put(projections, key: k.encoded, value: Ledger.encodeUInt64(UInt64(bitPattern: v)))
                }
            }
            try txn.put(meta, key: Ledger.projectedKey, value: Ledger.encodeUInt64(plan.position))
            _ = try txn.delete(meta, key: Ledger.pendingKey)
            try storeIDFilters(all: plan.idFilters.all, runs: [(plan.runStart, plan.idFilters.run)], txn: txn)
        }
    }

    /// Puts the entries of `table` that `order` names (indexes, in key order) into `db`, `value`
    /// writing the value of entry `i`. Keys past the tree's last key are appended (`MDB_APPEND`:
    /// no search from the root), which is most new cases and ids when keys grow with time.
    ///
    /// It drops the mapped pages whenever it took `Ledger.faultsPerRelease` page faults: each page
    /// of the tree it reads maps at least the 64 KiB of the file around it (fault-around), so one
    /// chunk of a large tree would otherwise map 16 times the pages it touches or more (90 MiB at
    /// 2M events).
    /// - Parameter run: the `ids` run the keys go to (`Ledger.idKey`); nil: the keys as they are.
    private func putSorted<Value>(_ table: StringTable<Value>, _ order: ArraySlice<Int>, into db: Database, run: UInt64? = nil,
                                  txn: WriteTransaction, value: (Int, inout [UInt8]) -> Void) throws {
        var buffer: [UInt8] = []
        var keyBytes: [UInt8] = []
        var appending = LastKey(txn: txn, db: db)
        var faults = FaultBudget(faults: Ledger.faultsPerRelease)
        try txn.withCursor(db) { cursor in  // (one cursor: sorted puts search from where it is)
            for (n, i) in order.enumerated() {
                if n % 16 == 15 { environment.releaseMappedPages(ifOver: &faults) }
                table.withKeyBytes(at: i) { key in
                    if let run {
                        Ledger.idKey(run: run, key, into: &keyBytes)
                    } else {
                        keyBytes.removeAll(keepingCapacity: true)
                        keyBytes.append(contentsOf: key)
                    }
                }
                buffer.removeAll(keepingCapacity: true)
                value(i, &buffer)
                try keyBytes.withUnsafeBytes { k in
                    let flags = try appending.flags(for: k)
                    try buffer.withUnsafeBytes { v in try cursor.put(key: k, value: v, flags: flags) }
                }
            }
        }
    }

    /// The checkpoint being written in chunks, if one is: its position and its counters.
    func storedPending(_ txn: some Transaction) throws -> (position: UInt64, counters: CounterTable)? {
        try txn.get(meta, key: Ledger.pendingKey).flatMap(Ledger.decodePending)
    }

    /// position ‖ (counter key, count) for each non-zero counter, all big-endian.
    static func encodePending(_ position: UInt64, _ counters: CounterTable) -> [UInt8] {
        var out = encodeUInt64(position)
        for (k, v) in counters.all where v != 0 {
            out += encodeUInt64(k.raw)
            out += encodeUInt64(UInt64(bitPattern: v))
        }
        return out
    }

    static func decodePending(_ b: [UInt8]) -> (position: UInt64, counters: CounterTable)? {
        guard b.count >= 8, (b.count - 8) % 16 == 0 else { return nil }
        var counters = CounterTable()
        var i = 8
        while i < b.count {
            counters.add(CounterKey(raw: decodeUInt64(Array(b[i..<(i + 8)]))),
                         Int64(bitPattern: decodeUInt64(Array(b[(i + 8)..<(i + 16)]))))
            i += 16
        }
        return (decodeUInt64(Array(b[0..<8])), counters)
    }

    /// The first 16 bytes of a key as two big-endian integers, zero-padded: ordering by them agrees
    /// with LMDB's order except between keys that share them.
    static func keyWords(_ bytes: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
        guard let p = bytes.baseAddress else { return (0, 0) }
        // Whole words where the key has them (loaded big-endian), else byte by byte.
        func word(_ from: Int) -> UInt64 {
            if from + 8 <= bytes.count { return UInt64(bigEndian: p.loadUnaligned(fromByteOffset: from, as: UInt64.self)) }
            var w: UInt64 = 0
            for k in 0..<8 where from + k < bytes.count { w |= UInt64(bytes[from + k]) << UInt64(56 - 8 * k) }
            return w
        }
        return (word(0), word(8))
    }

    /// The indexes of `keys` in LMDB's key order: by their first 16 bytes as two integers (one or
    /// two comparisons for most pairs), then byte by byte.
    static func sortedIndexes(_ keys: [String]) -> [Int] {
        sortedIndexes(count: keys.count) { i, body in
            var key = keys[i]
            key.withUTF8 { body(UnsafeRawBufferPointer($0)) }
        }
    }

    /// The indexes of `table`'s entries to store (`include`), ordered as above.
    static func sortedIndexes<Value>(_ table: StringTable<Value>, include: (Int) -> Bool) -> [Int] {
        sortedIndexes(count: table.count, withKey: { i, body in table.withKeyBytes(at: i, body) }, include: include)
    }

    /// The indexes `0..<count` of the entries to store (`include`), ordered by their keys as above;
    /// `withKey(i, body)` calls `body` with the bytes of key `i`.
    static func sortedIndexes(count: Int, withKey: (Int, (UnsafeRawBufferPointer) -> Void) -> Void,
                              include: (Int) -> Bool = { _ in true }) -> [Int] {
        var order: [(a: UInt64, b: UInt64, index: Int)] = []
        order.reserveCapacity(count)
        for i in 0..<count where include(i) {
            var words: (UInt64, UInt64) = (0, 0)
            withKey(i) { words = keyWords($0) }
            order.append((words.0, words.1, i))
        }
        var first: [UInt8] = []
        order.sort { x, y in
            if x.a != y.a { return x.a < y.a }
            if x.b != y.b { return x.b < y.b }
            // Byte order, then the shorter first: LMDB's order. No allocation: long keys that share
            // their first 16 bytes (`intake-2023-06-…`) are common, and this runs n log n times.
            first.removeAll(keepingCapacity: true)
            withKey(x.index) { first.append(contentsOf: $0) }
            var less = false
            withKey(y.index) { less = first.lexicographicallyPrecedes($0) }
            return less
        }
        return order.map(\.index)
    }

}

/// Decides, for keys given in ascending order, which can be appended to a tree: those after its
/// last key (once one is, all that follow are).
struct LastKey {
    private var last: [UInt8]?
    private var past = false
    private let txn: WriteTransaction
    private let db: Database
    private var loaded = false

    init(txn: WriteTransaction, db: Database) {
        self.txn = txn
        self.db = db
    }

    mutating func flags(for key: UnsafeRawBufferPointer) throws -> PutFlags {
        if past { return .append }
        if !loaded {
            last = try txn.withLast(db) { k, _ in Array(k) }
            loaded = true
        }
        guard let last else {
            past = true
            return .append
        }
        let n = min(last.count, key.count)
        let c = last.withUnsafeBytes { l in memcmp(l.baseAddress!, key.baseAddress!, n) }
        if c < 0 || (c == 0 && last.count < key.count) {
            past = true
            return .append
        }
        return []
    }
}

/// A checkpoint (a frozen overlay and the counters at `position`) cut into `chunks` pieces, each
/// written with one commit, so that no transaction holds more than a chunk's share of the
/// indexes' pages in memory and no append waits for a whole checkpoint (STORAGE.md).
///
/// A checkpoint of one chunk writes everything in one commit. Otherwise the first chunk stores
/// `meta.pending` (the position and the counters) and all the duration samples, and nothing else:
/// the samples of an interval can take 2.5 MiB of pages (the one that closes the pilot's cases),
/// and LMDB keeps as many pages as its largest commit changed, for good. Each chunk after it writes
/// the next of the runs of the cases and of the ids in key order (`keys(of:)`: the ids in equal
/// counts, the cases in about equal pages), so each B-tree page is still written about once per
/// checkpoint. The last chunk also writes the counters and moves `meta.projected` to `position`.
/// Until then a reader replays from the previous checkpoint and skips what a chunk already stored
/// (`Ledger.currentState`).
final class CheckpointPlan: Sendable {
    let overlay: Overlay
    let counters: CounterTable
    let position: UInt64
    let chunks: Int
    /// The chunks that write cases and ids: the last `keyChunks` of `chunks`.
    private let keyChunks: Int
    /// The cases' and the ids' indexes in key order, sorted by the writer of the first chunk that
    /// writes cases and ids.
    private let orders = Mutex<(cases: [Int], ids: [Int], caseBounds: [Int])?>(nil)

    /// The start of the run the ids go to (the position after the previous checkpoint; `IDIndex`).
    let runStart: UInt64
    /// The run's filter and, for the checkpoint of a clean shutdown, the writer's filter of all
    /// ids (after `position`'s 8 bytes), as bytes, stored by the last chunk so that the next open
    /// need not scan the index (`IDIndex`). Taken now: holding the filter itself would make the
    /// writer's next insert copy it.
    let idFilters: (all: [UInt8]?, run: [UInt8])

    /// The shape of `cases` when the plan was made (entries, leaf pages), which weighs the cases'
    /// chunks; nil: chunks of equal counts.
    let casesShape: (entries: Int, leafPages: Int)?

    /// A plan for `overlay` in chunks of at most about `chunkKeys` cases and ids, and at most
    /// `maxChunks` chunks (then larger ones).
    init(_ overlay: Overlay, counters: CounterTable, position: UInt64, runStart: UInt64,
         idFilters: (all: IDFilter?, run: IDFilter), chunkKeys: Int, maxChunks: Int = .max,
         casesShape: (entries: Int, leafPages: Int)? = nil) {
        self.overlay = overlay
        self.counters = counters
        self.position = position
        self.runStart = runStart
        self.idFilters = (idFilters.all.map { Ledger.allIDsFilterValue($0, at: position) }, idFilters.run.serialized())
        self.casesShape = casesShape
        let keys = max(chunkKeys, 1)
        let wanted = (max(overlay.cases.count, overlay.ids.count) + keys - 1) / keys
        if wanted <= 1 || maxChunks <= 1 {
            keyChunks = 1
            chunks = 1
        } else {
            keyChunks = min(wanted, maxChunks - 1)
            chunks = keyChunks + 1
        }
    }

    /// The cases and the ids that chunk `chunk` writes: indexes into the overlay's tables, in key
    /// order (none for the first of several chunks). The ids in runs of equal counts; the cases by
    /// `caseBounds`.
    func keys(of chunk: Int) -> (cases: ArraySlice<Int>, ids: ArraySlice<Int>) {
        let k = chunk - (chunks - keyChunks)
        guard k >= 0 else { return ([], []) }
        let o = sortedOrders()
        let idBounds = evenBounds(o.ids.count)
        return (o.cases[o.caseBounds[k]..<o.caseBounds[k + 1]], o.ids[idBounds[k]..<idBounds[k + 1]])
    }

    /// The cases' and the ids' indexes in key order, and where each chunk's cases start
    /// (`keyChunks + 1` bounds into the cases' order).
    private func sortedOrders() -> (cases: [Int], ids: [Int], caseBounds: [Int]) {
        orders.withLock { o in
            if let o { return o }
            let cases = overlay.cases, ids = overlay.ids
            let caseOrder = Ledger.sortedIndexes(cases) { cases[value: $0].dirty }
            let sorted = (caseOrder, Ledger.sortedIndexes(ids) { ids[value: $0] != 0 }, caseBounds(caseOrder))
            o = sorted
            return sorted
        }
    }

    /// Bounds that give each chunk about the same number of pages of `cases` to write rather than
    /// the same number of cases. A new case is appended: about 1 / (entries per leaf page) of a
    /// page. A stored one is rewritten in its page, and the stored cases of a checkpoint are spread
    /// over the tree (they sort before the new ones when ids grow with time), so together they
    /// touch about `leafPages × (1 − (1 − d / entries)^(entries per page))` pages for `d` of them.
    /// Cut by count, the first chunks held all the stored cases: at 4M events (1.3M cases) the
    /// largest commit changed 3,367 pages, which LMDB keeps allocated for the next ones.
    private func caseBounds(_ order: [Int]) -> [Int] {
        let n = order.count
        guard keyChunks > 1, let shape = casesShape, shape.entries > 0, shape.leafPages > 0 else { return evenBounds(n) }
        let stored = order.reduce(0) { $0 + (overlay.cases[value: $1].isNew ? 0 : 1) }
        guard stored > 0, stored < n else { return evenBounds(n) }
        let perPage = Double(shape.entries) / Double(shape.leafPages)
        let newWeight = 1 / perPage
        let touched = Double(shape.leafPages) * (1 - pow(1 - min(1, Double(stored) / Double(shape.entries)), perPage))
        let storedWeight = min(1, max(newWeight, touched / Double(stored)))
        let total = Double(stored) * storedWeight + Double(n - stored) * newWeight
        var bounds = [0]
        var sum = 0.0
        for (k, i) in order.enumerated() {
            sum += overlay.cases[value: i].isNew ? newWeight : storedWeight
            while bounds.count < keyChunks, sum >= total * Double(bounds.count) / Double(keyChunks) { bounds.append(k + 1) }
        }
        while bounds.count <= keyChunks { bounds.append(n) }
        bounds[keyChunks] = n
        return bounds
    }

    /// Where each of `keyChunks` runs of equal counts of `n` entries starts, and `n`.
    private func evenBounds(_ n: Int) -> [Int] { (0...keyChunks).map { n * $0 / keyChunks } }
}
