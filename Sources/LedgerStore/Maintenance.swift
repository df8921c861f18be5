import Foundation
import LedgerCore
import LMDBKit
import Synchronization

extension Ledger {
    /// Writes a consistent, compacted copy of the ledger into `directory` (created mode 0700; it
    /// must not hold a ledger yet) while writers go on. The copy opens as a ledger.
    /// - Throws: `StoreError` naming the directory.
    public func backup(to directory: String) throws(StoreError) {
        if mkdir(directory, 0o700) != 0 {
            guard errno == EEXIST else {
                throw StoreError(.io, "cannot create the backup directory \(directory): \(String(cString: strerror(errno)))")
            }
            var st = stat()
            if stat(directory + "/data.mdb", &st) == 0 {
                throw StoreError(.io, "\(directory) already holds a ledger; choose an empty or new directory")
            }
        }
        do {
            try environment.copy(to: directory, compact: true)
        } catch {
            throw StoreError(.io, "the backup into \(directory) failed", directory: self.directory, underlying: error)
        }
        chmod(directory + "/data.mdb", 0o600)
    }

    /// For a ledger opened read-only: takes in what the writer committed since it was opened (or
    /// last refreshed).
    public func refresh() throws(StoreError) {
        guard !isWriter else { return }
        do {
            var state = try loadState(writer: false)
            adopt(&state)
            writer.withLock { $0 = state }
        } catch {
            throw StoreError.wrap(error, "reading the ledger", directory: directory)
        }
    }

    /// The format of the ledger in `directory` (`meta.format`), without opening it as a ledger; nil
    /// when it has none.
    public static func storedFormat(directory: String) throws(StoreError) -> UInt64? {
        do {
            var o = Environment.Options()
            o.readOnly = true
            let env = try Environment(path: directory, options: o)
            let meta = try env.openDatabase("meta", create: false)
            return try env.read { txn in try txn.get(meta, key: Layout.MetaKey.format.key).flatMap(Layout.decodeUInt64) }
        } catch let e as LMDBError where e.isNotFound {
            return nil
        } catch {
            throw StoreError.wrap(error, "reading the ledger's format", directory: directory)
        }
    }

    /// The format this program writes.
    public static var currentFormat: UInt64 { Layout.format }

    /// Upgrades the ledger of format 4 in `directory` (whose lock the caller holds) to this
    /// program's format. The new ledger is written beside it, in `directory.upgrading`: every event
    /// copied as it is (positions, `recorded_at`, hashes), then the id index and the projections
    /// rebuilt from them. Then the old directory is renamed `directory.format4` (kept, with its
    /// files unchanged) and the new one takes its place. A crash before the renames leaves the old
    /// ledger in place; the next upgrade starts again.
    /// - Parameter progress: what is being done, events done and the head.
    /// - Returns: the events copied and where the old ledger was kept.
    public static func upgrade(directory: String, progress: (String, UInt64, UInt64) -> Void = { _, _, _ in }) throws(StoreError) -> (events: UInt64, kept: String) {
        let staging = directory + ".upgrading"
        var kept = directory + ".format4"
        var n = 2
        while FileManager.default.fileExists(atPath: kept) {
            kept = directory + ".format4.\(n)"
            n += 1
        }
        do {
            var o = Environment.Options()
            o.readOnly = true
            let old = try Environment(path: directory, options: o)
            let oldMeta = try old.openDatabase("meta", create: false)
            let oldEvents = try old.openDatabase("events", create: false)
            let (format, head, window) = try old.read { txn in
                (try txn.get(oldMeta, key: Layout.MetaKey.format.key).flatMap(Layout.decodeUInt64),
                 try txn.get(oldMeta, key: Layout.MetaKey.head.key).flatMap(Layout.decodeHead) ?? .empty,
                 try txn.get(oldMeta, key: Layout.MetaKey.window.key).flatMap(Layout.decodeWindow) ?? .pilot)
            }
            guard let format, [3, 4].contains(format) else {
                if format == Layout.format { throw StoreError(.wrongFormat, "the ledger in \(directory) is already of format \(Layout.format); nothing to upgrade", directory: directory) }
                throw StoreError(.wrongFormat, "the ledger in \(directory) is of format \(format.map(String.init) ?? "none"); this program upgrades formats 3 and 4", directory: directory)
            }
            if FileManager.default.fileExists(atPath: staging) { try FileManager.default.removeItem(atPath: staging) }
            var options = Options()
            options.create = true
            options.window = window
            options.initialMapSize = max(old.info().mapSize, 1 << 30)
            let new = try Ledger(directory: staging, options: options)
            try new.copyEvents(from: old, events: oldEvents, head: head) { progress("copying events", $0, head.position) }
            try new.rebuildProjections { progress("rebuilding the id index and the projections", $0, $1) }
            let check = try new.verify { progress("verifying", $0, $1) }
            if let problem = check.problem {
                throw StoreError(.corrupt, "the upgraded ledger does not verify at position \(problem.position): \(problem.message); the old ledger is untouched in \(directory)",
                                 directory: staging, position: problem.position)
            }
        } catch {
            throw StoreError.wrap(error, "the upgrade", directory: directory)
        }
        guard rename(directory, kept) == 0 else {
            throw StoreError(.io, "cannot rename \(directory) to \(kept): \(String(cString: strerror(errno))); the upgraded ledger is in \(staging)", directory: directory)
        }
        guard rename(staging, directory) == 0 else {
            throw StoreError(.io, "cannot rename \(staging) to \(directory): \(String(cString: strerror(errno))); the old ledger is in \(kept), the upgraded one in \(staging)", directory: directory)
        }
        let lock = kept + "/ledgerd.lock"
        if FileManager.default.fileExists(atPath: lock) { try? FileManager.default.copyItem(atPath: lock, toPath: directory + "/ledgerd.lock") }
        return ((try? storedHeadPosition(directory)) ?? 0, kept)
    }

    private static func storedHeadPosition(_ directory: String) throws -> UInt64 {
        var o = Options()
        o.readOnly = true
        return try Ledger(directory: directory, options: o).head.position
    }

    /// Copies the values of `events` of another environment, position by position, into this empty
    /// ledger's log, and sets its head to `head`.
    private func copyEvents(from old: Environment, events oldEvents: Database, head: Head, progress: (UInt64) -> Void) throws {
        var next: UInt64 = 1
        while next <= head.position {
            var values: [(UInt64, [UInt8])] = []
            try old.read { txn in
                try txn.scan(oldEvents, from: next) { key, value in
                    guard let p = Layout.decodeUInt64(key), p <= head.position else { return false }
                    guard p == next + UInt64(values.count) else {
                        throw StoreError(.corrupt, "the old ledger's log jumps to position \(p); run `ledgerctl verify` with the old program", position: p)
                    }
                    values.append((p, Array(value)))
                    return values.count < 65_536
                }
            }
            guard let last = values.last else {
                throw StoreError(.corrupt, "the old ledger's log ends at position \(next - 1) but its head says \(head.position)", position: next)
            }
            try withMapGrowth("copying events") {
                try environment.write { txn in
                    try txn.withCursor(layout.events) { cursor in
                        for (p, v) in values {
                            try withUnsafeBytes(of: p.bigEndian) { k in try v.withUnsafeBytes { try cursor.put(key: k, value: $0, flags: .append) } }
                        }
                    }
                    try txn.put(layout.meta, key: Layout.MetaKey.head.key, value: Layout.encodeHead(Head(position: last.0, hash: Array(last.1.prefix(32)))))
                }
            }
            next = last.0 + 1
            progress(last.0)
        }
        writer.withLock { $0.stale = true }
    }
}
