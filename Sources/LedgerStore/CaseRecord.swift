import LedgerCore

/// The value of a `cases` entry: the case's state (CaseState's own encoding, length-prefixed)
/// followed by the positions of the case's events, in order, as big-endian `UInt64`s.
///
/// Keeping the positions here instead of in an index of their own means an append rewrites one
/// record per event instead of touching a second B-tree at a random place.
struct CaseRecord {
    var state: CaseState
    var positions: [UInt64]

    func encoded() -> [UInt8] {
        let s = state.encoded()
        var out: [UInt8] = []
        out.reserveCapacity(4 + s.count + positions.count * 8)
        let n = UInt32(s.count)
        out += [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)]
        out += s
        for p in positions { out += Ledger.encodeUInt64(p) }
        return out
    }

    /// Reads `encoded()`'s form; nil when the bytes are not one.
    static func decode(_ b: [UInt8]) -> CaseRecord? {
        guard b.count >= 4 else { return nil }
        let n = Int(b[0]) << 24 | Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
        guard b.count >= 4 + n, (b.count - 4 - n) % 8 == 0, let state = CaseState.decode(Array(b[4..<(4 + n)])) else { return nil }
        var positions: [UInt64] = []
        positions.reserveCapacity((b.count - 4 - n) / 8)
        var k = 4 + n
        while k < b.count {
            positions.append(Ledger.decodeUInt64(Array(b[k..<(k + 8)])))
            k += 8
        }
        return CaseRecord(state: state, positions: positions)
    }
}
