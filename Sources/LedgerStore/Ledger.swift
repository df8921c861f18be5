public import LedgerCore
public import LMDBKit
import Crypto
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The result of one event of an append request.
public struct AppendResult: Sendable, Equatable {
    public let position: UInt64
    public let duplicate: Bool
    public init(position: UInt64, duplicate: Bool) {
        self.position = position
        self.duplicate = duplicate
    }
}

/// The last position and its chain hash (position 0 and 32 zero bytes for an empty ledger).
public struct Head: Sendable, Equatable {
    public let position: UInt64
    public let hash: [UInt8]
    public static let empty = Head(position: 0, hash: [UInt8](repeating: 0, count: 32))
    public var hashHex: String { Hex.string(hash) }
}

/// The event log on LMDB: one environment in the data directory with the named databases
/// `meta` (format, head), `events` (position → hash ‖ C_N), `ids` (event id → position) and
/// `cases` (case id → case record).
///
/// Guarantees:
/// - An append request is atomic: all its events are committed durably together, or none is.
/// - Positions start at 1 and have no gaps; the hash chain covers every event (CONTRACT §5).
/// - `append` serialises itself; reads run concurrently with it on their own snapshots.
public final class Ledger: Sendable {
    public let environment: Environment
    let meta: Database
    let events: Database
    let ids: Database
    let cases: Database
    let options: Options
    private let writer: Mutex<Head>

    /// The on-disk format this code writes and reads.
    public static let formatVersion: UInt64 = 1

    public struct Options: Sendable {
        /// The map size to start with; it doubles when full up to `maxMapSize`.
        public var initialMapSize: Int = 1 << 30
        /// The largest the map may grow to. Past it appends fail with `unavailable`.
        public var maxMapSize: Int = 1 << 40
        public var readOnly = false
        public init() {}
    }

    /// Opens the ledger in `directory`, creating it (mode 0700) when missing and not read-only.
    /// - Throws: `StoreError` naming the directory and what to do.
    public init(directory: String, options: Options = Options()) throws(StoreError) {
        self.options = options
        if !options.readOnly {
            if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                throw StoreError("cannot create the data directory \(directory): \(String(cString: strerror(errno)))")
            }
        } else {
            var st = stat()
            guard stat(directory + "/data.mdb", &st) == 0 else {
                throw StoreError("\(directory) holds no ledger (no data.mdb); check --data-dir")
            }
        }
        var envOptions = Environment.Options()
        envOptions.mapSize = options.initialMapSize
        envOptions.readOnly = options.readOnly
        do {
            environment = try Environment(path: directory, options: envOptions)
            let create = !options.readOnly
            meta = try environment.openDatabase("meta", create: create)
            events = try environment.openDatabase("events", create: create)
            ids = try environment.openDatabase("ids", create: create)
            cases = try environment.openDatabase("cases", create: create)
        } catch {
            if error.isNotFound {
                throw StoreError("\(directory) is an LMDB environment but not a ledger", underlying: error)
            }
            throw StoreError("cannot open the ledger in \(directory)", underlying: error)
        }
        let head: Head
        do {
            head = try Ledger.checkFormatAndHead(environment, meta: meta, events: events, readOnly: options.readOnly)
        } catch let e as StoreError {
            throw e
        } catch let e as LMDBError {
            throw StoreError("cannot read the ledger's head in \(directory)", underlying: e)
        } catch {
            throw StoreError("cannot read the ledger's head in \(directory): \(error)")
        }
        writer = Mutex(head)
    }

    static let formatKey = Array("format".utf8)
    static let headKey = Array("head".utf8)

    /// Reads the format and head; writes them for a new ledger; checks the head against the log.
    private static func checkFormatAndHead(_ env: Environment, meta: Database, events: Database,
                                           readOnly: Bool) throws -> Head {
        let stored: (format: UInt64?, head: Head?, last: UInt64?) = try env.read { txn in
            let format = try txn.get(meta, key: formatKey).map(decodeUInt64)
            let head = try txn.get(meta, key: headKey).flatMap(decodeHead)
            let last = try txn.withLast(events) { key, _ in decodeUInt64(Array(key)) }
            return (format, head, last)
        }
        guard let format = stored.format else {
            if readOnly { return .empty }
            try env.write { txn in
                try txn.put(meta, key: formatKey, value: encodeUInt64(formatVersion))
                try txn.put(meta, key: headKey, value: encodeHead(.empty))
            }
            return .empty
        }
        guard format == formatVersion else {
            throw StoreError("the ledger's format is version \(format), this program reads version \(formatVersion); use the matching release")
        }
        let head = stored.head ?? .empty
        // A writer must not extend an inconsistent log; a reader (verify, export) may look at it.
        guard readOnly || (stored.last ?? 0) == head.position else {
            throw StoreError("the ledger is inconsistent: its head says position \(head.position) but the log ends at \(stored.last ?? 0); run `ledgerctl verify`")
        }
        return head
    }

    /// Clears LMDB reader slots left by processes that died; returns how many.
    public func clearStaleReaders() throws -> Int {
        try environment.clearStaleReaders()
    }

    // MARK: Reading

    /// The last committed position and hash.
    public func head() throws -> Head {
        try environment.read { txn in try txn.get(meta, key: Ledger.headKey).flatMap(Ledger.decodeHead) ?? .empty }
    }

    /// At most `limit` events from position `from` on, in order.
    public func read(from: UInt64, limit: Int) throws -> [StoredEvent] {
        guard limit > 0 else { return [] }
        var out: [StoredEvent] = []
        out.reserveCapacity(min(limit, 1024))
        try environment.read { txn in
            try txn.scan(events, from: max(from, 1)) { key, value in
                guard let e = Ledger.decodeEvent(key: key, value: value) else { return false }
                out.append(e)
                return out.count < limit
            }
        }
        return out
    }

    /// The event stored at `position`, or nil.
    public func event(at position: UInt64) throws -> StoredEvent? {
        try environment.read { txn in
            try txn.get(events, key: position).flatMap { v in
                v.count >= 32 ? StoredEvent(position: position, hash: Array(v[0..<32]), canonical: Array(v[32...])) : nil
            }
        }
    }

    /// Calls `body` with every event from `from` to `to` (inclusive) in order, reading in chunks of
    /// `chunk` events per snapshot so no read transaction stays open long.
    public func forEach(from: UInt64 = 1, to: UInt64 = .max, chunk: Int = 4096,
                        _ body: (StoredEvent) throws -> Void) throws {
        var next = max(from, 1)
        while next <= to {
            let batch = try read(from: next, limit: chunk)
            for e in batch {
                if e.position > to { return }
                try body(e)
            }
            guard let last = batch.last, batch.count == chunk else { return }
            next = last.position + 1
        }
    }

    /// The number of events a case has (its version), from the store.
    public func caseVersion(_ caseID: String) throws -> UInt64 {
        try environment.read { txn in try txn.get(cases, key: Array(caseID.utf8)).map(Ledger.decodeUInt64) ?? 0 }
    }

    static func decodeEvent(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> StoredEvent? {
        guard key.count == 8, value.count >= 32 else { return nil }
        let position = decodeUInt64(Array(key))
        return StoredEvent(position: position, hash: Array(value[0..<32]), canonical: Array(value[32...]))
    }

    // MARK: Appending

    /// Appends a group of requests in one durable commit.
    ///
    /// Each request is atomic on its own: a request that fails validation gets its `LedgerError` and
    /// leaves no trace, without affecting the others. The results are returned only after the commit
    /// returned, so a success is durable. When the map is full it is grown and the group redone; when
    /// it cannot grow or the disk is full every request gets `unavailable` and nothing is stored.
    public func append(_ requests: [[Event]], recordedAt: Timestamp = .now()) -> [Result<[AppendResult], LedgerError>] {
        writer.withLock { head in
            let stamp = recordedAt.description
            while true {
                var results: [Result<[AppendResult], LedgerError>] = []
                var newHead = head
                do {
                    try environment.write { txn in
                        if requests.count == 1 {
                            do {
                                let r = try appendRequest(requests[0], txn: txn, head: &newHead, stamp: stamp)
                                results.append(.success(r))
                            } catch let e as LedgerError {
                                results.append(.failure(e))
                                throw e  // abort: nothing of this request is stored
                            }
                        } else {
                            for request in requests {
                                var h = newHead
                                do {
                                    let r = try txn.nested { child in
                                        try appendRequest(request, txn: child, head: &h, stamp: stamp)
                                    }
                                    newHead = h
                                    results.append(.success(r))
                                } catch let e as LedgerError {
                                    results.append(.failure(e))
                                }
                            }
                        }
                        if newHead != head {
                            try txn.put(meta, key: Ledger.headKey, value: Ledger.encodeHead(newHead))
                        }
                    }
                    head = newHead
                    return results
                } catch is LedgerError {
                    return results  // the single request failed; nothing was written
                } catch let e as LMDBError where e.isMapFull {
                    let info = environment.info()
                    let target = min(info.mapSize * 2, options.maxMapSize)
                    if target <= info.mapSize {
                        return unavailable(requests.count, "the ledger's map is full at \(info.mapSize >> 20) MiB (max_map_size); nothing was stored; raise max_map_size and restart, then retry")
                    }
                    do { try environment.growMap(minimum: target) } catch {
                        return unavailable(requests.count, "the ledger's map is full and could not grow (\(error)); nothing was stored; retry later")
                    }
                    continue
                } catch let e as LMDBError where e.isNoSpace {
                    return unavailable(requests.count, "the disk is full; nothing was stored; free space, then retry")
                } catch {
                    return unavailable(requests.count, "the commit failed (\(error)); nothing was stored; retry later")
                }
            }
        }
    }

    private func unavailable(_ n: Int, _ message: String) -> [Result<[AppendResult], LedgerError>] {
        Array(repeating: .failure(LedgerError(.unavailable, message)), count: n)
    }

    /// Validates and writes the events of one request against the state in `txn`.
    private func appendRequest(_ request: [Event], txn: WriteTransaction, head: inout Head,
                               stamp: String) throws -> [AppendResult] {
        var results: [AppendResult] = []
        results.reserveCapacity(request.count)
        for (index, event) in request.enumerated() {
            let idKey = Array(event.id.utf8)
            if let existing = try txn.get(ids, key: idKey).map(Ledger.decodeUInt64) {
                guard let stored = try txn.get(events, key: existing), stored.count > 32 else {
                    throw StoreError("the id index points at missing position \(existing); run `ledgerctl verify`")
                }
                let storedEvent = StoredEvent(position: existing, hash: Array(stored[0..<32]), canonical: Array(stored[32...]))
                if storedEvent.event.elementsEqual(event.canonical) {
                    results.append(AppendResult(position: existing, duplicate: true))
                    continue
                }
                throw LedgerError(.idConflict, "id \"\(event.id)\" is already at position \(existing) with other content; use a new id for a new event", index: index)
            }
            let caseKey = Array(event.caseID.utf8)
            let version = try txn.get(cases, key: caseKey).map(Ledger.decodeUInt64) ?? 0
            if let expected = event.expectedVersion, UInt64(expected) != version {
                throw LedgerError(.versionConflict, "case \(event.caseID) has \(version) events, the event expected \(expected); read the case and retry", index: index)
            }
            let position = head.position + 1
            let record = StoredEvent.canonicalRecord(event: event.canonical, position: position, recordedAt: stamp)
            var sha = SHA256()
            sha.update(data: head.hash)
            sha.update(data: record)
            let hash = Array(sha.finalize())
            try txn.put(events, key: position, value: hash + record, flags: .append)
            try txn.put(ids, key: idKey, value: Ledger.encodeUInt64(position), flags: .noOverwrite)
            try txn.put(cases, key: caseKey, value: Ledger.encodeUInt64(version + 1))
            head = Head(position: position, hash: hash)
            results.append(AppendResult(position: position, duplicate: false))
        }
        return results
    }

    // MARK: Encoding

    static func encodeUInt64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }

    static func decodeUInt64(_ b: [UInt8]) -> UInt64 {
        guard b.count >= 8 else { return 0 }
        var v: UInt64 = 0
        for k in 0..<8 { v = v << 8 | UInt64(b[k]) }
        return v
    }

    static func encodeHead(_ h: Head) -> [UInt8] { encodeUInt64(h.position) + h.hash }

    static func decodeHead(_ b: [UInt8]) -> Head? {
        guard b.count == 40 else { return nil }
        return Head(position: decodeUInt64(Array(b[0..<8])), hash: Array(b[8..<40]))
    }
}

extension Timestamp {
    /// The current time in UTC with milliseconds.
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let ms = ts.tv_nsec / 1_000_000
        let s = String(ms)
        return Timestamp(seconds: Int64(ts.tv_sec), fraction: String(repeating: "0", count: 3 - s.count) + s)
    }
}
