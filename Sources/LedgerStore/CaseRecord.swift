import LedgerCore

/// The value of a `cases` entry: the case's state (`CaseState`'s own encoding) followed by the
/// position of the case's latest event (a varint). Each event's facts hold the position of its case's previous event, so the case's
/// events are found by walking back from the latest: the record stays the same size however many
/// events the case has.
struct CaseRecord: Equatable, Sendable {
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
        guard let state = CaseState.decode(&r), let last = r.varint(), r.atEnd else { return nil }
        return CaseRecord(state: state, last: last)
    }
}
