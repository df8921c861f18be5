/// Open-addressing hash tables for the hot paths of appending and replaying, where Swift's
/// `Dictionary` (SipHash per lookup, a resize that rehashes every key) costs more than the case
/// machine itself. Both grow by doubling at half load and never remove a key.

/// The hash of `StringTable` and `IDFilter` keys, over their UTF-8 bytes: eight bytes at a time
/// (a multiply and a shift each, the last eight possibly overlapping the ones before), the length in
/// the seed, and a final mix so that both the low bits (the slot) and the high bits (the tag) vary.
/// Not stored anywhere: it may change between versions.
@inlinable @inline(__always)
public func keyHash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    let n = bytes.count
    let k: UInt64 = 0xbf58_476d_1ce4_e5b9
    var h = 0x9e37_79b9_7f4a_7c15 &* UInt64(truncatingIfNeeded: n &+ 1)
    if let p = bytes.baseAddress, n > 0 {
        if n >= 8 {
            var i = 0
            while i + 8 < n {
                h = (h ^ p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* k
                h ^= h >> 31
                i += 8
            }
            h = (h ^ p.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)) &* k
        } else {
            var w: UInt64 = 0
            for i in 0..<n { w |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << UInt64(8 * i) }
            h = (h ^ w) &* k
        }
        h ^= h >> 31
    }
    h ^= h >> 29
    h &*= k
    h ^= h >> 32
    return h
}

/// `keyHash` of the string's UTF-8 bytes.
@inlinable @inline(__always)
public func keyHash(_ s: String) -> UInt64 {
    if let h = s.utf8.withContiguousStorageIfAvailable({ keyHash(UnsafeRawBufferPointer($0)) }) { return h }
    return Array(s.utf8).withUnsafeBytes { keyHash($0) }
}

/// Strings (case ids, event ids) to values: keys and values in insertion order, so a value can be
/// read and changed in place by its index (`self[value: i]`). Keys are hashed and compared
/// by their UTF-8 bytes.
///
/// Entries live in segments of 4,096, each allocated whole when its first entry comes, so the
/// table grows without copying what it holds and keeps at most part of one segment unused. (A
/// single Array doubles: with 326,000 cases it held a 52 MiB buffer, a third of it empty, and
/// copied it whole at every doubling. A segment grown by appending was reallocated 12 times on its
/// way to 4,096, and the buffers it left fragmented the heap: 4 MiB more peak memory at 1M events.)
public struct StringTable<Value> {
    @usableFromInline static var shift: Int { 12 }
    @usableFromInline static var low: Int { (1 << shift) - 1 }
    @usableFromInline var keySegments: [[String]] = []
    @usableFromInline var valueSegments: [[Value]] = []
    @usableFromInline var storedCount = 0
    /// 0 when empty, else the high 32 bits of the key's hash ‖ (index + 1).
    @usableFromInline var slots: [UInt64]
    @usableFromInline var mask: Int

    @inlinable
    public init(capacity: Int = 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = Array(repeating: 0, count: n)
        mask = n - 1
    }

    @inlinable public var count: Int { storedCount }
    @inlinable public var indices: Range<Int> { 0..<storedCount }

    /// The key of entry `i`.
    @inlinable public func key(at i: Int) -> String { keySegments[i >> Self.shift][i & Self.low] }

    /// The value of entry `i`, changed in place through this subscript.
    @inlinable
    public subscript(value i: Int) -> Value {
        get { valueSegments[i >> Self.shift][i & Self.low] }
        _modify { yield &valueSegments[i >> Self.shift][i & Self.low] }
        set { valueSegments[i >> Self.shift][i & Self.low] = newValue }
    }

    /// Calls `body` with the UTF-8 bytes of entry `i`'s key, read in place: no copy of the key (a
    /// copy of a long key retains it, touching its reference count).
    @inlinable
    public func withKeyBytes<R>(at i: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try keySegments[i >> Self.shift].withUnsafeBufferPointer { keys in
            if let r = try keys[i & Self.low].utf8.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
                return r
            }
            return try Array(keys[i & Self.low].utf8).withUnsafeBytes(body)
        }
    }

    /// The keys in insertion order (a copy).
    public var keys: [String] { Array(keySegments.joined()) }
    /// The values in insertion order (a copy).
    public var values: [Value] { Array(valueSegments.joined()) }

    /// The index of `key`, or nil.
    @inlinable @inline(__always)
    public func index(of key: String) -> Int? { index(of: key, hash: keyHash(key)) }

    /// The index of `key`, whose `keyHash` is `h`, or nil.
    @inlinable @inline(__always)
    public func index(of key: String, hash h: UInt64) -> Int? {
        let tag = h >> 32
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s == 0 { return nil }
            if s >> 32 == tag {
                let k = Int(s & 0xFFFF_FFFF) - 1
                if self.key(at: k).hasSameBytes(as: key) { return k }
            }
            i = (i + 1) & mask
        }
    }

    /// The index of `key`, inserting it with `make()` when absent.
    @inlinable @inline(__always)
    public mutating func index(of key: String, orInsert make: () -> Value) -> Int {
        index(of: key, hash: keyHash(key), orInsert: make)
    }

    /// The index of `key`, whose `keyHash` is `h`, inserting it with `make()` when absent.
    @inlinable @inline(__always)
    public mutating func index(of key: String, hash h: UInt64, orInsert make: () -> Value) -> Int {
        let tag = h >> 32
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s == 0 { break }
            if s >> 32 == tag {
                let k = Int(s & 0xFFFF_FFFF) - 1
                if self.key(at: k).hasSameBytes(as: key) { return k }
            }
            i = (i + 1) & mask
        }
        let k = storedCount
        if k & Self.low == 0 {
            keySegments.append([])
            valueSegments.append([])
            keySegments[keySegments.count - 1].reserveCapacity(1 << Self.shift)
            valueSegments[valueSegments.count - 1].reserveCapacity(1 << Self.shift)
        }
        keySegments[k >> Self.shift].append(key)
        valueSegments[k >> Self.shift].append(make())
        storedCount += 1
        slots[i] = tag << 32 | UInt64(k + 1)
        if storedCount * 2 > slots.count { grow() }
        return k
    }

    /// Reads the slot where a lookup of a key whose `keyHash` is `h` starts, so that the lookup
    /// finds it in the cache. Returns it for the caller to fold into a value it keeps (a load whose
    /// result is unused may be dropped). Many touches in a row overlap their cache misses.
    @inlinable @inline(__always)
    public func touch(_ h: UInt64) -> UInt64 { slots[Int(truncatingIfNeeded: h) & mask] }

    /// After `touch(h)`: reads the entry the slot names if its tag is `h`'s, so that comparing the
    /// key and reading the value find them in the cache. Returns a word of it, as `touch` does.
    @inlinable @inline(__always)
    public func touchEntry(_ h: UInt64) -> UInt64 {
        let s = slots[Int(truncatingIfNeeded: h) & mask]
        guard s != 0, s >> 32 == h >> 32 else { return s }
        let k = Int(s & 0xFFFF_FFFF) - 1
        return UInt64(truncatingIfNeeded: withKeyBytes(at: k) { $0.count })
            &+ (MemoryLayout<Value>.size == 0 ? 0 : valueSegments[k >> Self.shift].withUnsafeBytes { b in
                // Its first and last byte: a value may span two cache lines.
                let at = (k & Self.low) * MemoryLayout<Value>.stride
                return UInt64(b.load(fromByteOffset: at, as: UInt8.self))
                    &+ UInt64(b.load(fromByteOffset: at + MemoryLayout<Value>.size - 1, as: UInt8.self))
            })
    }

    @usableFromInline
    mutating func grow() {
        let n = slots.count * 2
        var next = [UInt64](repeating: 0, count: n)
        let m = n - 1
        for k in 0..<storedCount {
            let h = withKeyBytes(at: k) { keyHash($0) }
            var i = Int(truncatingIfNeeded: h) & m
            while next[i] != 0 { i = (i + 1) & m }
            next[i] = (h >> 32) << 32 | UInt64(k + 1)
        }
        slots = next
        mask = m
    }
}

extension StringTable: Sendable where Value: Sendable {}

/// The projection counters: `CounterKey` to count, hashed by one multiplication.
public struct CounterTable: Sendable, Equatable {
    /// `raw + 1`, 0 when empty (a key's top byte is a small dimension, so + 1 cannot overflow).
    private var slots: [UInt64]
    private var counts: [Int64]
    private var mask: Int
    public private(set) var count = 0

    public init(capacity: Int = 4096) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = Array(repeating: 0, count: n)
        counts = Array(repeating: 0, count: n)
        mask = n - 1
    }

    @inline(__always)
    private func slot(_ raw: UInt64) -> Int {
        let h = (raw &+ 1) &* 0x9E37_79B9_7F4A_7C15
        return Int(truncatingIfNeeded: h >> 40) & mask
    }

    /// Adds `n` to the counter `key`.
    @inline(__always)
    public mutating func add(_ key: CounterKey, _ n: Int64) {
        let tagged = key.raw &+ 1
        var i = slot(key.raw)
        while true {
            let s = slots[i]
            if s == tagged {
                counts[i] &+= n
                return
            }
            if s == 0 { break }
            i = (i + 1) & mask
        }
        slots[i] = tagged
        counts[i] = n
        count += 1
        if count * 2 > slots.count { grow() }
    }

    /// Every counter that is not zero.
    public var nonZero: [CounterKey: Int64] {
        var out: [CounterKey: Int64] = [:]
        out.reserveCapacity(count)
        for (i, s) in slots.enumerated() where s != 0 && counts[i] != 0 {
            out[CounterKey(raw: s - 1)] = counts[i]
        }
        return out
    }

    /// Every counter ever added to, zeros included, in key order.
    public var all: [(key: CounterKey, value: Int64)] {
        var out: [(key: CounterKey, value: Int64)] = []
        out.reserveCapacity(count)
        for (i, s) in slots.enumerated() where s != 0 { out.append((CounterKey(raw: s - 1), counts[i])) }
        return out.sorted { $0.key < $1.key }
    }

    public static func == (a: CounterTable, b: CounterTable) -> Bool { a.nonZero == b.nonZero }

    private mutating func grow() {
        let old = (slots, counts)
        let n = slots.count * 2
        slots = Array(repeating: 0, count: n)
        counts = Array(repeating: 0, count: n)
        mask = n - 1
        count = 0
        for (i, s) in old.0.enumerated() where s != 0 {
            var j = slot(s - 1)
            while slots[j] != 0 { j = (j + 1) & mask }
            slots[j] = s
            counts[j] = old.1[i]
            count += 1
        }
    }
}

/// A Bloom filter of strings (event ids): `mayContain` is false only for a string never inserted,
/// and true for about 1 % of the others. The writer asks it before looking an id up in the
/// `ids` index, so a new id (nearly every one) costs no B-tree search: with random ids that
/// search touched a random page of an index as big as the log.
///
/// Blocked: each string sets 7 bits in one 512-bit block (one cache line), at 10 bits per string
/// of the filter's capacity (as many blocks as that takes, not a power of two: the block is picked
/// by the high half of the hash times the block count). When a filter holds its capacity another,
/// half as big again, is added, so nothing is ever rehashed; a lookup tests each filter (one block
/// each). Memory: 1.25 bytes per string of capacity, 1 to 1.5 times the strings held once it has
/// grown (the filters add up to 3 times the last one's capacity; doubling gave 1 to 2 times:
/// 8.75 MiB for 4,000,000 strings from 1M, against 5.9 MiB now).
public struct IDFilter: Sendable {
    @usableFromInline
    struct Filter: Sendable {
        @usableFromInline var words: [UInt64]
        @usableFromInline var blocks: UInt64
        /// Where block 0 starts in `words`: at a 64-byte boundary, so that a block is one cache
        /// line (an array's elements start 32 bytes into its allocation).
        @usableFromInline var offset: Int
        var capacity: Int
        var count = 0

        /// The blocks a filter of `capacity` strings has: 10 bits per string, at least one.
        static func blocks(forCapacity capacity: Int) -> Int { max(1, (capacity * 10 + 511) / 512) }

        init(capacity: Int) {
            let blocks = Filter.blocks(forCapacity: capacity)
            words = Array(repeating: 0, count: blocks * 8 + 7)
            offset = words.withUnsafeBufferPointer { (8 - Int(bitPattern: $0.baseAddress!) / 8 % 8) % 8 }
            self.blocks = UInt64(blocks)
            self.capacity = capacity
        }

        /// The index in `words` of the block for `keyHash` `h`.
        @inlinable @inline(__always)
        func block(_ h: UInt64) -> Int { offset + Int(truncatingIfNeeded: h.multipliedFullWidth(by: blocks).high) << 3 }

        @inline(__always)
        func test(_ h: UInt64, _ bits: UInt64) -> Bool {
            let base = block(h)
            return IDFilter.blockHas(bits) { words[base + $0] }
        }

        @inline(__always)
        mutating func set(_ h: UInt64, _ bits: UInt64) {
            let base = block(h)
            var x = bits
            for _ in 0..<7 {
                let b = Int(x & 511)
                words[base + (b >> 6)] |= 1 << UInt64(b & 63)
                x >>= 9
            }
            count += 1
        }
    }

    @usableFromInline var filters: [Filter]

    /// A filter sized for `expected` strings before it adds another.
    public init(expected: Int = 1 << 20) {
        filters = [Filter(capacity: max(expected, 1 << 16))]
    }

    /// Strings inserted (a string inserted twice counts twice).
    public var count: Int { filters.reduce(0) { $0 + $1.count } }

    /// The filter as bytes, to be stored: a version byte (1), the number of filters (u32), then
    /// for each its capacity, its count and its block count (u64 each) and its blocks (64 bytes
    /// each, the words little-endian). `init(serialized:)` reads it back.
    /// - Parameter prefix: bytes to put before it, in the same array (no second copy of a large
    ///   filter to prepend them).
    public func serialized(after prefix: [UInt8] = []) -> [UInt8] {
        var w = ByteWriter(bytes: prefix)
        w.bytes.reserveCapacity(prefix.count + 5 + filters.reduce(0) { $0 + 24 + Int($1.blocks) * 64 })
        w.u8(1)
        w.u32(UInt32(filters.count))
        for f in filters {
            w.u64(UInt64(f.capacity))
            w.u64(UInt64(f.count))
            w.u64(f.blocks)
            for word in f.words[f.offset..<(f.offset + Int(f.blocks) * 8)] {
                withUnsafeBytes(of: word.littleEndian) { w.bytes.append(contentsOf: $0) }
            }
        }
        return w.bytes
    }

    /// Reads `serialized()`'s form; nil when `bytes` are not one (cut short, another version,
    /// a block count that does not fit its capacity).
    public init?(serialized bytes: UnsafeRawBufferPointer) {
        var filters: [Filter] = []
        let whole = IDFilter.readSerialized(bytes) { capacity, count, blocks, words in
            var f = Filter(capacity: capacity)
            f.count = count
            let offset = f.offset
            f.words.withUnsafeMutableBufferPointer { out in
                for k in 0..<(blocks * 8) {
                    out[offset + k] = UInt64(littleEndian: words.loadUnaligned(fromByteOffset: k * 8, as: UInt64.self))
                }
            }
            filters.append(f)
        }
        guard whole else { return nil }
        self.filters = filters
    }

    /// Calls `body` with each filter that `serialized()` wrote into `bytes`: its capacity, its
    /// count, its block count and its blocks, where they are. False when the bytes are not such a
    /// filter (then `body` may have been called for the filters before the fault).
    private static func readSerialized(
        _ bytes: UnsafeRawBufferPointer,
        _ body: (_ capacity: Int, _ count: Int, _ blocks: Int, _ words: UnsafeRawBufferPointer) -> Void
    ) -> Bool {
        var r = ByteReader(bytes)
        guard r.u8() == 1, let n = r.u32(), n >= 1 else { return false }
        for _ in 0..<n {
            guard let capacity = r.u64(), let count = r.u64(), let blocks = r.u64(), capacity <= 1 << 40,
                  count <= capacity, blocks == Filter.blocks(forCapacity: Int(capacity)),
                  let words = r.bytes(Int(blocks) * 64)
            else { return false }
            body(Int(capacity), Int(count), Int(blocks), words)
        }
        return r.atEnd
    }

    /// Whether a block has the 7 bits that `bits` (`second(h)`) picks; `word(k)` reads its `k`-th
    /// 64-bit word.
    @inline(__always)
    static func blockHas(_ bits: UInt64, _ word: (Int) -> UInt64) -> Bool {
        var x = bits
        for _ in 0..<7 {
            let b = Int(x & 511)
            if word(b >> 6) & (1 << UInt64(b & 63)) == 0 { return false }
            x >>= 9
        }
        return true
    }

    /// The bit-picking second hash for a string whose `keyHash` is `h`.
    @inline(__always)
    static func second(_ h: UInt64) -> UInt64 {
        var g = h &* 0x9e37_79b9_7f4a_7c15
        g ^= g >> 31
        return g
    }

    public mutating func insert(_ s: String) {
        insert(hash: keyHash(s))
    }

    /// Inserts the string whose `keyHash` is `h`.
    public mutating func insert(hash h: UInt64) {
        insert(hashes: (h, IDFilter.second(h)))
    }

    private mutating func insert(hashes: (UInt64, UInt64)) {
        if filters[filters.count - 1].count >= filters[filters.count - 1].capacity {
            filters.append(Filter(capacity: filters[filters.count - 1].capacity * 3 / 2))
        }
        filters[filters.count - 1].set(hashes.0, hashes.1)
    }

    /// False when `s` was never inserted.
    public func mayContain(_ s: String) -> Bool { mayContain(hash: keyHash(s)) }

    /// False when no string whose `keyHash` is `h` was inserted.
    public func mayContain(hash h: UInt64) -> Bool {
        let g = IDFilter.second(h)
        for f in filters where f.test(h, g) { return true }
        return false
    }

    /// `mayContain(hash:)` of the filter that `serialized()` wrote into `bytes`, read where the bytes
    /// are (a stored filter in LMDB's map, not copied into memory); nil when they are not such a
    /// filter.
    public static func mayContain(hash h: UInt64, serialized bytes: UnsafeRawBufferPointer) -> Bool? {
        let g = second(h)
        var found = false
        let whole = readSerialized(bytes) { _, _, blocks, words in
            guard !found else { return }  // (the rest is read only to check it is whole)
            let base = Int(truncatingIfNeeded: h.multipliedFullWidth(by: UInt64(blocks)).high) * 8
            found = blockHas(g) { UInt64(littleEndian: words.loadUnaligned(fromByteOffset: (base + $0) * 8, as: UInt64.self)) }
        }
        return whole ? found : nil
    }

    /// Reads the blocks a test of `keyHash` `h` reads, as `StringTable.touch` does.
    @inlinable @inline(__always)
    public func touch(_ h: UInt64) -> UInt64 {
        var x: UInt64 = 0
        for k in filters.indices { x ^= filters[k].words[filters[k].block(h)] }
        return x
    }
}
