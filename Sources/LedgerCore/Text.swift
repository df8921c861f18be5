extension String {
    /// Whether both strings hold the same UTF-8 bytes.
    ///
    /// Swift's `==` and `hashValue` use Unicode canonical equivalence: `"\u{E9}" == "e\u{301}"` and
    /// `"\u{212A}" == "K"` are true. The ledger stores, hashes and compares bytes, so text that came
    /// from a request (JSON keys, codes, labels, ids) must be compared with this, never with `==`.
    /// About as fast as `==` on ASCII text (`StringTable` calls it on every hit).
    @inlinable @inline(__always)
    public func hasSameBytes(as other: String) -> Bool {
        let a = utf8, b = other.utf8
        let n = a.count
        guard n == b.count else { return false }
        // Native strings lend their bytes without a copy (small ones from the stack); others are walked.
        let same = a.withContiguousStorageIfAvailable { x in
            b.withContiguousStorageIfAvailable { y in String.sameBytes(x.baseAddress, y.baseAddress, n) }
        }
        if let same = same ?? nil { return same }
        return a.elementsEqual(b)
    }

    /// Whether the `n` bytes at `p` and `q` are equal: eight at a time, then the last eight again
    /// (overlapping), so no read falls outside either.
    @inlinable @inline(__always)
    static func sameBytes(_ p: UnsafePointer<UInt8>?, _ q: UnsafePointer<UInt8>?, _ n: Int) -> Bool {
        guard n > 0, let p, let q else { return true }
        if p == q { return true }
        let x = UnsafeRawPointer(p), y = UnsafeRawPointer(q)
        if n >= 8 {
            var k = 0
            while k + 8 < n {
                if x.loadUnaligned(fromByteOffset: k, as: UInt64.self) != y.loadUnaligned(fromByteOffset: k, as: UInt64.self) {
                    return false
                }
                k += 8
            }
            return x.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) == y.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
        }
        for k in 0..<n where p[k] != q[k] { return false }
        return true
    }

    /// Whether every byte is ASCII. For ASCII strings `==` is byte equality, and no other string
    /// has the bytes of an ASCII one.
    var isASCII: Bool { utf8.allSatisfy { $0 < 0x80 } }
}
