import Crypto
import LedgerCore
import LMDBKit

/// The outcome of `Ledger.verify`.
public struct VerifyReport: Sendable {
    /// The events checked.
    public var checked: UInt64 = 0
    /// The recomputed head.
    public var head: Head = .empty
    /// The first problem found, with the position it concerns; nil when everything matched.
    public var problem: (position: UInt64, message: String)?
    public var ok: Bool { problem == nil }
}

extension Ledger {
    /// Recomputes the hash chain from position 1 and checks every stored event against it: no gap in
    /// positions, each record's own position, each stored hash, each event still valid, in canonical
    /// form and allowed by its case, the id index and the stored head; then compares the stored case
    /// states and projections with a replay of the log.
    ///
    /// Stops at the first problem and names its position. Reads in chunks, so the daemon may keep
    /// writing meanwhile; the check covers the head as of its last chunk.
    /// - Parameter progress: called now and then with the events checked so far and the head.
    public func verify(progress: (UInt64, UInt64) -> Void = { _, _ in }) throws -> VerifyReport {
        do { return try verifyChecked(progress: progress) } catch {
            throw StoreError.wrap(error, "verifying the ledger", directory: directory)
        }
    }

    private func verifyChecked(progress: (UInt64, UInt64) -> Void) throws -> VerifyReport {
        var report = VerifyReport()
        var prev = Head.empty
        var expected: UInt64 = 1
        var replay = Replay(window: window)
        var lastPositions: [String: UInt64] = [:]
        func fail(_ p: UInt64, _ m: String) -> VerifyReport {
            report.problem = (p, m)
            return report
        }
        var rounds = 0
        while true {
            rounds += 1
            let target = try storedHead()
            while true {
                // One snapshot per chunk: each event, its stored facts and whether the id index lists
                // its position under its id's hash, in the run that covers it. The index holds the
                // ids up to `indexed`; the later ones are replayed from the log.
                let (indexedTo, rows): (UInt64, [(event: StoredEvent, facts: EventFacts?, indexed: Bool)]) =
                    try environment.read { txn in
                        var rows: [(event: StoredEvent, facts: EventFacts?, indexed: Bool)] = []
                        let runs = try idRunStarts(txn)
                        try txn.scan(layout.events, from: expected) { key, value in
                            guard let position = Layout.decodeUInt64(key) else { return false }
                            guard let e = StoredEvent(position: position, value: value) else {
                                rows.append((StoredEvent(position: position, hash: [], canonical: []), nil, false))
                                return false
                            }
                            let facts = StoredEvent.facts(in: value)
                            let indexed = try facts.map { f in
                                try Ledger.run(of: position, in: runs).map {
                                    try storedPositions(run: $0, hash: keyHash(f.id, seed: idSeed), txn: txn).contains(position)
                                } ?? false
                            } ?? false
                            rows.append((e, facts, indexed))
                            return rows.count < 4096
                        }
                        return (try txn.get(layout.meta, key: Layout.MetaKey.indexed.key).flatMap(Layout.decodeUInt64) ?? 0, rows)
                    }
                if rows.isEmpty { break }
                for k in rows.indices {
                    let e = rows[k].event
                    if e.position != expected {
                        return fail(expected, "position \(expected) is missing: the log jumps from \(expected - 1) to \(e.position)")
                    }
                    guard let end = e.eventEnd else {
                        return fail(e.position, "the stored record is not shaped like {\"event\":…,\"position\":…,\"recorded_at\":…}")
                    }
                    let recordValue: JSONValue
                    do { recordValue = try JSONParser.parse(e.canonical) } catch {
                        return fail(e.position, "the stored record is not valid JSON: \(error)")
                    }
                    guard case .object(let record) = recordValue, record.keys.sorted() == ["event", "position", "recorded_at"] else {
                        return fail(e.position, "the stored record does not have exactly event, position and recorded_at")
                    }
                    guard case .int(let recordedPosition)? = record["position"], recordedPosition == Int64(e.position) else {
                        return fail(e.position, "the record at position \(e.position) says it is at position \(record["position"].map { "\($0)" } ?? "none"): events were moved")
                    }
                    guard case .string(let recordedAt)? = record["recorded_at"], Timestamp(rfc3339: recordedAt) != nil else {
                        return fail(e.position, "the record's recorded_at is not an RFC 3339 time")
                    }
                    let event: Event
                    do { event = try Event.validate(json: Array(e.canonical[9..<end])) } catch {
                        return fail(e.position, "the stored event is no longer valid: \(error)")
                    }
                    guard event.canonical.elementsEqual(e.event) else {
                        return fail(e.position, "the stored event is not in canonical form")
                    }
                    guard CanonicalJSON.encode(recordValue) == e.canonical else {
                        return fail(e.position, "the stored record is not in canonical form")
                    }
                    var sha = SHA256()
                    sha.update(data: prev.hash)
                    sha.update(data: e.canonical)
                    let hash = Array(sha.finalize())
                    guard hash == e.hash else {
                        return fail(e.position, "the hash does not match: stored \(e.hashHex), recomputed \(Hex.string(hash)); the event or one before it was changed")
                    }
                    let previous = lastPositions[event.caseID] ?? 0
                    var expectedFacts = event.facts
                    expectedFacts.previous = previous
                    guard rows[k].facts == expectedFacts else {
                        if rows[k].facts?.previous != previous {
                            return fail(e.position, "the event names position \(rows[k].facts?.previous ?? 0) as its case's previous event; the log has \(previous)")
                        }
                        return fail(e.position, "the event's stored facts (what replays read) differ from its JSON")
                    }
                    guard e.position > indexedTo || rows[k].indexed else {
                        return fail(e.position, "the id index does not list position \(e.position) under the id \"\(event.id)\", so the id could be appended again; run `ledgerctl replay`")
                    }
                    do { try replay.apply(event) } catch {
                        return fail(e.position, "the event breaks the case rules: \(error.message)")
                    }
                    lastPositions[event.caseID] = e.position
                    prev = Head(position: e.position, hash: hash)
                    expected += 1
                    report.checked += 1
                }
                progress(report.checked, max(target.position, report.checked))
            }
            report.head = prev
            let stored = try storedHead()
            if stored.position > prev.position {
                // Appended meanwhile by a running daemon? Then check on; else the log was cut.
                if rounds < 100, try event(at: prev.position + 1) != nil { continue }
                return fail(prev.position + 1, "position \(prev.position + 1) is missing: the stored head is \(stored.position) but the log ends at \(prev.position) (truncated)")
            }
            if stored.position < prev.position {
                return fail(stored.position + 1, "the stored head is position \(stored.position) but the log goes on to \(prev.position)")
            }
            if stored.hash != prev.hash {
                return fail(stored.position, "the stored head hash \(stored.hashHex) differs from the recomputed \(prev.hashHex)")
            }
            let (idCount, indexed) = try environment.read { txn in
                var n = 0
                try txn.scan(layout.ids, from: nil) { _, value in
                    n += value.count / 8
                    return true
                }
                return (n, try txn.get(layout.meta, key: Layout.MetaKey.indexed.key).flatMap(Layout.decodeUInt64) ?? 0)
            }
            if idCount != Int(indexed) {
                return fail(prev.position, "the id index holds \(idCount) positions for the \(indexed) events it covers; run `ledgerctl replay`")
            }
            try refresh()  // a reader: what the daemon committed since it opened
            if let problem = try compareProjections(with: replay, head: prev, lastPositions: lastPositions) {
                if problem.hasPrefix("the head moved"), rounds < 100 { continue }
                return fail(prev.position, "projections: \(problem)")
            }
            return report
        }
    }
}

extension Ledger {
    /// The head as stored now (the daemon may have appended since this process published its snapshot).
    func storedHead() throws -> Head {
        try environment.read { txn in try txn.get(layout.meta, key: Layout.MetaKey.head.key).flatMap(Layout.decodeHead) ?? .empty }
    }
}
