/// Open-addressing hash tables for the hot paths of appending and replaying, where Swift's
/// `Dictionary` (SipHash per lookup, a resize that rehashes every key) costs more than the case
/// machine itself. Both grow by doubling at half load and never remove a key.

/// A 64-bit hash of bytes, `keyhash-1`: eight bytes at a time (a multiply and a shift each, the last
/// eight possibly overlapping the ones before), the length and `seed` in the initial state, and a
/// final mix so that both the low bits (a table's slot) and the high bits (a tag) vary.
///
/// It is stored: the `ids` index of a ledger is keyed by the hash of each event id under the
/// ledger's own seed. Changing this function changes `keyHashCheck`, which a ledger records and
/// compares at open; a change must come with a new name and an upgrade.
@inlinable @inline(__always)
public func keyHash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
    let n = bytes.count
    let k: UInt64 = 0xbf58_476d_1ce4_e5b9
    var h = (0x9e37_79b9_7f4a_7c15 ^ seed) &* UInt64(truncatingIfNeeded: n &+ 1)
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

/// The name of `keyHash`'s algorithm, as a ledger records it.
public let keyHashName = "keyhash-1"

/// `keyHash` of a fixed text under `seed`: what a ledger records beside `keyHashName`, so that a
/// program whose `keyHash` computes something else is detected before it reads the `ids` index.
public func keyHashCheck(seed: UInt64) -> UInt64 {
    let text = Array("safe-mobility-ledger keyhash check 0123456789".utf8)
    return text.withUnsafeBytes { keyHash($0, seed: seed) }
}

/// `keyHash` of the string's UTF-8 bytes.
@inlinable @inline(__always)
public func keyHash(_ s: String, seed: UInt64 = 0) -> UInt64 {
    if let h = s.utf8.withContiguousStorageIfAvailable({ keyHash(UnsafeRawBufferPointer($0), seed: seed) }) { return h }
    return Array(s.utf8).withUnsafeBytes { keyHash($0, seed: seed) }
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

/// A Bloom filter of 64-bit hashes (of event ids): `mayContain` is false only for a hash never
/// inserted, and true for about 1 % of the others.
///
/// Blocked: each hash sets 7 bits in one 512-bit block (one cache line), at 10 bits per hash of the
/// filter's capacity (as many blocks as that takes, not a power of two: the block is picked by the
/// high half of the hash times the block count). When a filter holds its capacity another, half as
/// big again, is added, so nothing is ever rehashed; a test reads one block of each. Memory: 1.25
/// bytes per hash of capacity.
public struct IDFilter: Sendable {
    struct Filter: Sendable {
        var words: [UInt64]
        var blocks: UInt64
        /// Where block 0 starts in `words`: at a 64-byte boundary, so that a block is one cache
        /// line (an array's elements start 32 bytes into its allocation).
        var offset: Int
        var capacity: Int
        var count = 0

        init(capacity: Int) {
            let blocks = max(1, (capacity * 10 + 511) / 512)
            words = Array(repeating: 0, count: blocks * 8 + 7)
            offset = words.withUnsafeBufferPointer { (8 - Int(bitPattern: $0.baseAddress!) / 8 % 8) % 8 }
            self.blocks = UInt64(blocks)
            self.capacity = capacity
        }

        /// The index in `words` of the block for hash `h`.
        @inline(__always)
        func block(_ h: UInt64) -> Int { offset + Int(truncatingIfNeeded: h.multipliedFullWidth(by: blocks).high) << 3 }

        @inline(__always)
        func test(_ h: UInt64, _ bits: UInt64) -> Bool {
            let base = block(h)
            var x = bits
            for _ in 0..<7 {
                let b = Int(x & 511)
                if words[base + (b >> 6)] & (1 << UInt64(b & 63)) == 0 { return false }
                x >>= 9
            }
            return true
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

    var filters: [Filter]

    /// A filter sized for `expected` hashes before it adds another.
    public init(expected: Int = 1 << 16) {
        filters = [Filter(capacity: max(expected, 1 << 10))]
    }

    /// Hashes inserted (a hash inserted twice counts twice).
    public var count: Int { filters.reduce(0) { $0 + $1.count } }

    /// The bytes the filter takes.
    public var bytes: Int { filters.reduce(0) { $0 + $1.words.count * 8 } }

    /// The bit-picking second hash for hash `h`.
    @inline(__always)
    static func second(_ h: UInt64) -> UInt64 {
        var g = h &* 0x9e37_79b9_7f4a_7c15
        g ^= g >> 31
        return g
    }

    public mutating func insert(hash h: UInt64) {
        if filters[filters.count - 1].count >= filters[filters.count - 1].capacity {
            filters.append(Filter(capacity: filters[filters.count - 1].capacity * 3 / 2))
        }
        filters[filters.count - 1].set(h, IDFilter.second(h))
    }

    /// False when hash `h` was never inserted.
    public func mayContain(hash h: UInt64) -> Bool {
        let g = IDFilter.second(h)
        for f in filters where f.test(h, g) { return true }
        return false
    }
}
