import LedgerCore
import LMDBKit

/// The named databases of a ledger (format 5) and how their keys and values are encoded.
/// docs/STORAGE.md describes the same, for people.
///
/// | database | key | value |
/// | --- | --- | --- |
/// | `meta` | a name (below) | see `Layout.MetaKey` |
/// | `events` | position, big-endian, appended | hash (32) ‖ facts length (1) ‖ facts ‖ C_N (`StoredEvent`) |
/// | `cases` | case id | `CaseRecord`: the case's state and its latest position |
/// | `ids` | run start ‖ id hash, big-endian | the positions of the run's events with that id hash, 8 bytes each |
/// | `counters` | `CounterKey.raw`, big-endian | the count, big-endian two's complement |
/// | `durations` | position ‖ measure ‖ seconds (sign bit flipped), big-endian | empty |
struct Layout: Sendable {
    let meta: Database
    let events: Database
    let cases: Database
    let ids: Database
    let counters: Database
    let durations: Database

    static let names = ["meta", "events", "cases", "ids", "counters", "durations"]

    /// The format this program writes and reads. Format 4 (ids keyed by the id's text, counters in
    /// `projections`, a `filters` database) is read only by `ledgerctl upgrade`.
    static let format: UInt64 = 5

    /// How the projections are computed; a ledger whose projections were made by another version
    /// has them rebuilt at open (by a writer).
    static let projectionVersion: UInt64 = 5

    /// Opens the databases; `create` makes the missing ones.
    init(_ env: Environment, create: Bool) throws(LMDBError) {
        meta = try env.openDatabase("meta", create: create)
        events = try env.openDatabase("events", create: create)
        cases = try env.openDatabase("cases", create: create)
        ids = try env.openDatabase("ids", create: create)
        counters = try env.openDatabase("counters", create: create)
        durations = try env.openDatabase("durations", create: create)
    }

    /// The keys of `meta`.
    enum MetaKey: String {
        /// `format` as a big-endian `UInt64`.
        case format
        /// The last position (big-endian `UInt64`) ‖ its 32-byte chain hash; written with every commit.
        case head
        /// The report window, `2023-06-12/2023-12-12`.
        case window
        /// The position that `cases`, `counters` and `durations` reflect: written with them by a
        /// checkpoint, in one transaction.
        case projected
        /// The position that `ids` reflects (equal to `projected` but during a rebuild, which
        /// keeps the index and recomputes the projections).
        case indexed
        /// `projectionVersion` of the stored projections.
        case projectionVersion = "projection_version"
        /// `keyHashName` ‖ 0 ‖ seed (8) ‖ `keyHashCheck(seed)` (8): how `ids` keys are hashed.
        case idHash = "id_hash"

        var key: [UInt8] { Array(rawValue.utf8) }
    }

    // MARK: Integers

    static func encode(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }

    static func decodeUInt64(_ b: UnsafeRawBufferPointer) -> UInt64? {
        guard b.count == 8 else { return nil }
        return UInt64(bigEndian: b.loadUnaligned(as: UInt64.self))
    }

    static func decodeUInt64(_ b: [UInt8]) -> UInt64? { b.withUnsafeBytes { decodeUInt64($0) } }

    /// The first 8 bytes of `b` as a big-endian integer (0 when shorter).
    static func prefixUInt64(_ b: UnsafeRawBufferPointer) -> UInt64 {
        b.count >= 8 ? UInt64(bigEndian: b.loadUnaligned(as: UInt64.self)) : 0
    }

    // MARK: Meta values

    static func encodeHead(_ h: Head) -> [UInt8] { encode(h.position) + h.hash }

    static func decodeHead(_ b: [UInt8]) -> Head? {
        guard b.count == 40, let p = decodeUInt64(Array(b[0..<8])) else { return nil }
        return Head(position: p, hash: Array(b[8..<40]))
    }

    static func encodeWindow(_ w: ReportWindow) -> [UInt8] { Array("\(w.start)/\(w.end)".utf8) }

    static func decodeWindow(_ b: [UInt8]) -> ReportWindow? {
        let parts = String(decoding: b, as: UTF8.self).split(separator: "/")
        guard parts.count == 2 else { return nil }
        return ReportWindow(start: String(parts[0]), end: String(parts[1]))
    }

    static func encodeIDHash(seed: UInt64) -> [UInt8] {
        Array(keyHashName.utf8) + [0] + encode(seed) + encode(keyHashCheck(seed: seed))
    }

    /// The seed of a stored `id_hash`, when it names this program's `keyHash` and its check value is
    /// what `keyHash` computes here; nil otherwise.
    static func decodeIDHash(_ b: [UInt8]) -> UInt64? {
        let name = Array(keyHashName.utf8)
        guard b.count == name.count + 17, b.starts(with: name), b[name.count] == 0,
              let seed = decodeUInt64(Array(b[(name.count + 1)..<(name.count + 9)])),
              decodeUInt64(Array(b[(name.count + 9)...])) == keyHashCheck(seed: seed) else { return nil }
        return seed
    }

    // MARK: Keys

    /// `ids` key: run start ‖ id hash.
    static func idKey(run: UInt64, hash: UInt64) -> (UInt64, UInt64) { (run.bigEndian, hash.bigEndian) }

    /// `durations` key: position ‖ measure ‖ seconds with the sign bit flipped, so that keys sort
    /// by position (a checkpoint appends its samples).
    static func durationKey(_ s: DurationSample) -> [UInt8] {
        encode(s.position) + [s.measure.rawValue] + encode(UInt64(bitPattern: s.seconds) ^ (1 << 63))
    }

    static func decodeDurationKey(_ k: UnsafeRawBufferPointer) -> DurationSample? {
        guard k.count == 17, let m = Measure(rawValue: k[8]) else { return nil }
        let seconds = UInt64(bigEndian: k.loadUnaligned(fromByteOffset: 9, as: UInt64.self)) ^ (1 << 63)
        return DurationSample(measure: m, seconds: Int64(bitPattern: seconds), position: prefixUInt64(k))
    }
}

/// The last position and its chain hash (position 0 and 32 zero bytes for an empty ledger).
public struct Head: Sendable, Equatable {
    public let position: UInt64
    public let hash: [UInt8]
    public static let empty = Head(position: 0, hash: [UInt8](repeating: 0, count: 32))
    public var hashHex: String { Hex.string(hash) }
    public init(position: UInt64, hash: [UInt8]) {
        self.position = position
        self.hash = hash
    }
}

/// One duration sample: made by the event at `position`.
struct DurationSample: Sendable, Equatable {
    var measure: Measure
    var seconds: Int64
    var position: UInt64

    /// LMDB's order of their keys (`Layout.durationKey`).
    static func < (a: DurationSample, b: DurationSample) -> Bool {
        (a.position, a.measure.rawValue, UInt64(bitPattern: a.seconds) ^ (1 << 63))
            < (b.position, b.measure.rawValue, UInt64(bitPattern: b.seconds) ^ (1 << 63))
    }
}
