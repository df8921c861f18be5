import LedgerCore

/// The value of a `cases` entry: the case's state (`CaseState`'s own encoding) followed by the
/// position of the case's latest event (a varint; after a state of encoding 2, 8 bytes
/// big-endian). Each event's facts hold the position of its case's previous event, so the case's
/// events are found by walking back from the latest: the record stays the same size however many
/// events the case has.
struct CaseRecord: Equatable {
    var state: CaseState
    var last: UInt64

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    /// Appends the encoding to `out`.
    func encode(into out: inout [UInt8]) {
        var w = ByteWriter(bytes: consume out)
        state.encode(into: &w)
        w.varint(last)
        out = w.bytes
    }

    /// Reads `encoded()`'s form; nil when the bytes are not one.
    static func decode(_ b: UnsafeRawBufferPointer) -> CaseRecord? {
        var r = ByteReader(b)
        let old = r.peek() == 2
        guard let state = CaseState.decode(&r), let last = old ? r.u64() : r.varint(), r.atEnd else { return nil }
        return CaseRecord(state: state, last: last)
    }
}
