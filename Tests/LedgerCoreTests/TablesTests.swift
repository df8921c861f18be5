import LedgerCore
import Testing

@Suite("Tables")
struct TablesTests {
    /// The id filter never forgets an id, across the filters it adds as it grows, and says "maybe"
    /// for few others.
    @Test func idFilterHasNoFalseNegatives() {
        var filter = IDFilter(expected: 1 << 16)  // grows past it: 4 filters for 400,000 ids
        let inserted = (0..<400_000).map { "9b1c\($0 &* 2_654_435_761)-id" }
        for id in inserted { filter.insert(id) }
        #expect(inserted.allSatisfy { filter.mayContain($0) })
        let bytes = Array("9b1c1-id".utf8)
        bytes.withUnsafeBytes { filter.insert(hash: keyHash($0)) }
        #expect(filter.mayContain("9b1c1-id"), "bytes and strings hash alike")
        let others = (0..<100_000).map { "other-\($0)" }
        let maybe = others.filter { filter.mayContain($0) }.count
        #expect(maybe < 100_000 * 4 / 100, "\(maybe) false positives in 100,000 (4 filters)")
        #expect(filter.count == 400_001)
    }

    /// A filter read back from its bytes answers as the filter did; bytes that are not one are
    /// refused.
    @Test func idFilterSerializes() {
        var filter = IDFilter(expected: 1 << 16)  // 3 filters for 200,000 ids
        let inserted = (0..<200_000).map { "uuid-\($0 &* 2_654_435_761)" }
        for id in inserted { filter.insert(id) }
        let bytes = filter.serialized()
        let back = bytes.withUnsafeBytes { IDFilter(serialized: $0) }
        guard let back else { Issue.record("the filter did not read back"); return }
        #expect(back.count == filter.count)
        #expect(inserted.allSatisfy { back.mayContain($0) })
        let others = (0..<20_000).map { "other-\($0)" }
        #expect(others.map { back.mayContain($0) } == others.map { filter.mayContain($0) })
        #expect(back.serialized() == bytes)
        for bad in [Array(bytes.dropLast()), bytes + [0], [2] + bytes.dropFirst(), Array(bytes.prefix(40)), []] {
            #expect(bad.withUnsafeBytes { IDFilter(serialized: $0) } == nil)
            #expect(bad.withUnsafeBytes { IDFilter.mayContain(hash: keyHash(inserted[0]), serialized: $0) } == nil)
        }
        // Read in place (a stored run's filter, in LMDB's map), at an odd address: the same answers.
        let shifted = [0x55] + bytes
        shifted.withUnsafeBytes { all in
            let b = UnsafeRawBufferPointer(rebasing: all[1...])
            #expect(inserted.allSatisfy { IDFilter.mayContain(hash: keyHash($0), serialized: b) == true })
            #expect(others.map { IDFilter.mayContain(hash: keyHash($0), serialized: b) } == others.map { filter.mayContain($0) })
            #expect(others.contains { IDFilter.mayContain(hash: keyHash($0), serialized: b) == false }, "a filter that says no")
        }
    }

    /// Keys that are different bytes are different keys, in a table that spans several segments.
    @Test func stringTableAcrossSegments() {
        var table = StringTable<Int>(capacity: 16)
        for i in 0..<10_000 { _ = table.index(of: "C-\(i)") { i } }
        #expect(table.count == 10_000)
        for i in stride(from: 0, to: 10_000, by: 7) {
            guard let k = table.index(of: "C-\(i)") else { Issue.record("C-\(i) missing"); continue }
            #expect(table[value: k] == i && table.key(at: k) == "C-\(i)")
            table[value: k] += 1
        }
        #expect(table[value: table.index(of: "C-7")!] == 8)
        #expect(table.index(of: "C-10000") == nil)
        #expect(table.keys.count == 10_000 && table.values.count == 10_000)
    }

    /// A lookup by a precomputed `keyHash` finds what a lookup by the key finds, and reading the
    /// slots and entries ahead (`touch`, `touchEntry`) changes nothing.
    @Test func lookupsByHashAgreeWithLookupsByKey() {
        var table = StringTable<String>(capacity: 16)
        var filter = IDFilter(expected: 1 << 16)
        let keys = (0..<5_000).map { $0 % 3 == 0 ? "case-with-a-long-heap-allocated-id-\($0)" : "C-\($0)" }
        for key in keys {
            let h = keyHash(key)
            _ = table.touch(h) ^ table.touchEntry(h) ^ filter.touch(h)
            #expect(!filter.mayContain(hash: h) || filter.mayContain(key))
            let i = table.index(of: key, hash: h) { key.uppercased() }
            #expect(table.index(of: key) == i)
            filter.insert(hash: h)
        }
        #expect(table.count == 5_000)
        for key in keys {
            let h = keyHash(key)
            _ = table.touch(h) ^ table.touchEntry(h)
            #expect(table.index(of: key, hash: h).map { table[value: $0] } == key.uppercased())
            #expect(filter.mayContain(key) && filter.mayContain(hash: h))
        }
        #expect(table.index(of: "C-5000", hash: keyHash("C-5000")) == nil)
    }
}
