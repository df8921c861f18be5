import Crypto
import LedgerCore

/// One event as stored: its position, its chain hash and the canonical record
/// `C = {"event":E,"position":N,"recorded_at":"…"}` that the hash covers (CONTRACT §5).
public struct StoredEvent: Sendable, Equatable {
    public let position: UInt64
    /// `hash_N = SHA-256(hash_{N-1} ‖ C_N)`, 32 bytes.
    public let hash: [UInt8]
    /// The canonical record C_N.
    public let canonical: [UInt8]

    static let eventPrefix: [UInt8] = Array("{\"event\":".utf8)
    static let positionMarker: [UInt8] = Array(",\"position\":".utf8)

    public init(position: UInt64, hash: [UInt8], canonical: [UInt8]) {
        self.position = position
        self.hash = hash
        self.canonical = canonical
    }

    /// Reads an `events` value: hash (32 bytes) ‖ length of the facts (1 byte) ‖ the event's
    /// `EventFacts` ‖ C_N. Nil when the value is not shaped like one.
    init?(position: UInt64, value v: UnsafeRawBufferPointer) {
        guard let offset = StoredEvent.canonicalOffset(v) else { return nil }
        self.init(position: position, hash: Array(v[0..<32]), canonical: Array(v[offset...]))
    }

    /// Where C_N starts in an `events` value, or nil.
    static func canonicalOffset(_ v: UnsafeRawBufferPointer) -> Int? {
        guard v.count > 33, 33 + Int(v[32]) <= v.count else { return nil }
        return 33 + Int(v[32])
    }

    /// The facts stored in an `events` value, or nil.
    static func facts(in v: UnsafeRawBufferPointer) -> EventFacts? {
        factsBytes(in: v).flatMap { EventFacts.decode($0) }
    }

    /// The bytes of the facts in an `events` value, where they are, or nil.
    static func factsBytes(in v: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard let offset = canonicalOffset(v) else { return nil }
        return UnsafeRawBufferPointer(rebasing: v[33..<offset])
    }

    /// Appends the `events` value of an accepted event to `out`: C_N is built in place after the
    /// facts, and `SHA-256(previous ‖ C_N)` written in front (`out[start..<start + 32]` after),
    /// where `previous` is the hash at `out[previousAt..<previousAt + 32]`.
    /// - Parameter casePrevious: the position of the case's previous event (0 for its first).
    static func appendValue(to out: inout [UInt8], previousAt: Int, event: borrowing Event, casePrevious: UInt64,
                            position: UInt64, recordTail: [UInt8]) {
        let start = out.count  // (no reserveCapacity here: on a growing buffer it would copy it each time)
        out.append(contentsOf: repeatElement(0, count: 33))  // the hash, then the facts' length
        event.facts.encode(into: &out, previous: casePrevious)
        out[start + 32] = UInt8(out.count - start - 33)
        let c = out.count
        out.append(contentsOf: eventPrefix)
        event.canonical.withUnsafeBytes { out.append(contentsOf: $0) }
        out.append(contentsOf: positionMarker)
        CanonicalJSON.appendDecimal(position, to: &out)
        out.append(contentsOf: recordTail)
        out.withUnsafeMutableBytes { b in
            var sha = SHA256()
            sha.update(bufferPointer: UnsafeRawBufferPointer(rebasing: b[previousAt..<(previousAt + 32)]))
            sha.update(bufferPointer: UnsafeRawBufferPointer(rebasing: b[c...]))
            sha.finalize().withUnsafeBytes { d in (b.baseAddress! + start).copyMemory(from: d.baseAddress!, byteCount: 32) }
        }
    }

    /// `,"recorded_at":"<stamp>"}`.
    static func recordTail(recordedAt: String) -> [UInt8] {
        var w = CanonicalJSON(capacity: 48)
        w.raw(",")
        w.writeKey("recorded_at")
        w.writeString(recordedAt)
        w.raw("}")
        return w.bytes
    }

    /// Where E ends inside C (E is first; the last `,"position":` follows it), or nil if C is not
    /// shaped like a record.
    var eventEnd: Int? {
        let c = canonical
        guard c.count > StoredEvent.eventPrefix.count + StoredEvent.positionMarker.count,
              c.starts(with: StoredEvent.eventPrefix) else { return nil }
        let m = StoredEvent.positionMarker
        var k = c.count - m.count
        while k >= StoredEvent.eventPrefix.count {
            if c[k] == m[0], c[k..<(k + m.count)].elementsEqual(m) { return k }
            k -= 1
        }
        return nil
    }

    /// The canonical envelope E, as accepted.
    public var event: ArraySlice<UInt8> {
        guard let end = eventEnd else { return [] }
        return canonical[StoredEvent.eventPrefix.count..<end]
    }

    /// The stored event R of the protocol: C with `"hash":"<hex>"` added, in canonical key order.
    public var record: [UInt8] {
        guard let end = eventEnd else { return canonical }
        var out = [UInt8]()
        out.reserveCapacity(canonical.count + 76)
        out.append(contentsOf: canonical[..<end])
        out.append(contentsOf: Array(",\"hash\":\"".utf8))
        out.append(contentsOf: Hex.encode(hash))
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: canonical[end...])
        return out
    }

    /// The hash as lowercase hex.
    public var hashHex: String { String(decoding: Hex.encode(hash), as: UTF8.self) }
}

/// Lowercase hexadecimal.
public enum Hex {
    static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    public static func encode<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return out
    }

    public static func string<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        String(decoding: encode(bytes), as: UTF8.self)
    }
}
