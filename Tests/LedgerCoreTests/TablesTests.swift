import LedgerCore
import Testing

@Suite("Tables")
struct TablesTests {
    /// The id filter never forgets a hash, across the filters it adds as it grows, and says "maybe"
    /// for few others.
    @Test func idFilterHasNoFalseNegatives() {
        var filter = IDFilter(expected: 1 << 16)  // grows past it: 4 filters for 400,000 ids
        let inserted = (0..<400_000).map { keyHash("9b1c\($0 &* 2_654_435_761)-id", seed: 7) }
        for h in inserted { filter.insert(hash: h) }
        #expect(inserted.allSatisfy { filter.mayContain(hash: $0) })
        let others = (0..<100_000).map { keyHash("other-\($0)", seed: 7) }
        let maybe = others.filter { filter.mayContain(hash: $0) }.count
        #expect(maybe < 100_000 * 4 / 100, "\(maybe) false positives in 100,000 (4 filters)")
        #expect(filter.count == 400_000)
    }

    /// `keyHash` is stored (the `ids` index is keyed by it): its values for known inputs must never
    /// change under the name `keyhash-1`. If this fails, the function changed: give it a new name
    /// and an upgrade of existing ledgers, do not edit the expected values.
    @Test func keyHashIsStable() {
        #expect(keyHashName == "keyhash-1")
        // Computed independently (a Python transcription of the algorithm), not by this code.
        let golden: [(String, UInt64, UInt64)] = [
            ("", 0, 0xca00_9717_f87d_8879),
            ("C-000123", 0, 0x7bb1_6614_1b39_42e4),
            ("3f2504e0-4f89-41d3-9a0c-0305e82c3301", 0x1234_5678_9abc_def0, 0xe53e_c99e_fba7_cd49),
        ]
        for (text, seed, expected) in golden {
            #expect(keyHash(text, seed: seed) == expected, "keyHash(\"\(text)\", seed: \(seed)) = 0x\(String(keyHash(text, seed: seed), radix: 16))")
        }
        #expect(keyHashCheck(seed: 42) == 0xc13b_f9eb_c456_3130)
        #expect(keyHash("C-000123", seed: 1) != keyHash("C-000123", seed: 2), "the seed changes the hash")
        let bytes = Array("C-000123".utf8)
        #expect(bytes.withUnsafeBytes { keyHash($0) } == keyHash("C-000123"), "bytes and strings hash alike")
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

    /// A lookup by a precomputed `keyHash` finds what a lookup by the key finds.
    @Test func lookupsByHashAgreeWithLookupsByKey() {
        var table = StringTable<String>(capacity: 16)
        let keys = (0..<5_000).map { $0 % 3 == 0 ? "case-with-a-long-heap-allocated-id-\($0)" : "C-\($0)" }
        for key in keys {
            let i = table.index(of: key, hash: keyHash(key)) { key.uppercased() }
            #expect(table.index(of: key) == i)
        }
        #expect(table.count == 5_000)
        for key in keys {
            #expect(table.index(of: key, hash: keyHash(key)).map { table[value: $0] } == key.uppercased())
        }
        #expect(table.index(of: "C-5000", hash: keyHash("C-5000")) == nil)
    }
}
