import LedgerCore

/// The value of a `cases` entry: the case's state (`CaseState`'s own encoding) followed by the
/// positions of the case's events, in order, as big-endian `UInt64`s.
///
/// Keeping the positions here instead of in an index of their own means a checkpoint rewrites one
/// record per changed case instead of touching a second B-tree.
struct CaseRecord: Equatable {
    var state: CaseState
    var positions: [UInt64]

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    /// Appends the encoding to `out`.
    func encode(into out: inout [UInt8]) {
        var w = ByteWriter(bytes: consume out)
        w.bytes.reserveCapacity(w.bytes.count + 64 + state.referrals.count * 40 + positions.count * 8)
        state.encode(into: &w)
        for p in positions { w.u64(p) }
        out = w.bytes
    }

    /// Reads `encoded()`'s form; nil when the bytes are not one.
    static func decode(_ b: UnsafeRawBufferPointer) -> CaseRecord? {
        var r = ByteReader(b)
        guard let state = CaseState.decode(&r), (b.count - r.offset) % 8 == 0 else { return nil }
        var positions: [UInt64] = []
        positions.reserveCapacity((b.count - r.offset) / 8)
        while let p = r.u64() { positions.append(p) }
        return CaseRecord(state: state, positions: positions)
    }

    static func decode(_ b: [UInt8]) -> CaseRecord? { b.withUnsafeBytes { decode($0) } }
}
