import ArgumentParser
import LedgerCore
import LedgerStore
#if canImport(Glibc)
import Glibc
#endif

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild every projection from the log.",
        discussion: """
            Recomputes the case states, the report's counters and duration samples from the events, the \
            same way ledgerd keeps them while ingesting, writes them in place of the stored ones, and says \
            whether the result differs from what was kept while ingesting (exit 1 if it did). A crash on the \
            way leaves projections that the next start completes. Takes the data directory's lock: stop \
            ledgerd first. The window is the one stored in the ledger.
            """)

    @OptionGroup var data: DataDirOptions

    func run() throws {
        try reporting {
            let lock: DirectoryLock
            do { lock = try DirectoryLock(directory: data.dataDir) } catch {
                throw Failure("\(error); replay rewrites the projections, so it needs the daemon stopped")
            }
            defer { withExtendedLifetime(lock) {} }
            let ledger: Ledger
            do { ledger = try Ledger(directory: data.dataDir, options: Ledger.Options()) } catch {
                throw Failure("\(error)")
            }
            let before = try ledger.projections()
            let progress = Progress("replay")
            let started = Progress.now()
            try ledger.rebuildProjections { done, total in progress.update(done, of: total) }
            let seconds = Progress.now() - started
            progress.finish()
            let after = try ledger.projections()
            let n = after.head.position
            print("replay: \(n) events in \(String(format2: seconds)) s (\(Int(Double(n) / max(seconds, 1e-9))) events/s); projections at position \(n), head \(after.head.hashHex)")
            if before == after {
                print("replay: identical to the projections kept while ingesting")
            } else {
                print("replay: the rebuilt projections DIFFER from the ones that were stored (now replaced); run `ledgerctl verify` and keep the log for analysis")
                throw ExitCode(1)
            }
        }
    }
}

struct Upgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upgrade a data directory of an earlier format, keeping the old one.",
        discussion: """
            Writes the ledger again in this program's format beside the old one (DIR.upgrading): every \
            event copied as it is (positions, recorded_at and hashes unchanged), the id index and the \
            projections rebuilt, the result verified. Then DIR is renamed DIR.format4 (kept as it was) and \
            the new ledger takes its place. Takes the data directory's lock: stop ledgerd first. Needs free \
            disk space about the size of data.mdb.
            """)

    @OptionGroup var data: DataDirOptions

    func run() throws {
        try reporting {
            let format: UInt64?
            do { format = try Ledger.storedFormat(directory: data.dataDir) } catch { throw Failure("\(error)") }
            guard let format else { throw Failure("\(data.dataDir) holds no ledger; check --data-dir") }
            if format == Ledger.currentFormat {
                print("upgrade: \(data.dataDir) is already of format \(format); nothing to do")
                return
            }
            var lock: DirectoryLock? = nil
            do { lock = try DirectoryLock(directory: data.dataDir) } catch {
                throw Failure("\(error); the upgrade rewrites the ledger, so it needs the daemon stopped")
            }
            var progress: Progress?
            var stage = ""
            let result: (events: UInt64, kept: String)
            do {
                result = try Ledger.upgrade(directory: data.dataDir) { what, done, total in
                    if what != stage {
                        progress?.finish()
                        stage = what
                        progress = Progress("upgrade: \(what)")
                    }
                    progress?.update(done, of: total)
                }
            } catch {
                throw Failure("\(error)")
            }
            progress?.finish()
            lock = nil
            _ = lock
            print("upgrade: \(data.dataDir) is now of format \(Ledger.currentFormat), \(result.events) events, verified")
            print("upgrade: the old ledger is kept in \(result.kept); remove it once the new one serves as it should")
        }
    }
}

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the pilot report and its CSV files for analysts.",
        discussion: """
            Writes OUT/report.json, OUT/funnel.csv (dimension,key,stage,cases,persons), OUT/weekly.csv \
            (week,type,count), OUT/outside_window.csv, OUT/durations.csv \
            (measure,count,p50_seconds,p90_seconds), OUT/states.csv, OUT/pathway_by_office.csv \
            (office_country,pathway,stage,cases,persons), with --html OUT/report.html, and \
            OUT/manifest.json with the log position and head hash the report was computed from and the \
            SHA-256 of every file. Without --as-of the report comes from the stored projections; with it, \
            from a replay of the log keeping the events whose `at` is at or before the cut. Reads the data \
            directory directly; safe while ledgerd runs.
            """)

    @OptionGroup var data: DataDirOptions
    @Option(name: .long, help: ArgumentHelp("The directory to write into (created when missing).", valueName: "dir"))
    var out: String
    @Option(name: .customLong("as-of"), help: ArgumentHelp("Only events whose `at` is at or before this RFC 3339 time, or a date (end of that day, UTC).", valueName: "time"))
    var asOf: String?
    @Option(name: .customLong("min-cell"), help: ArgumentHelp("Suppress counts from 1 to K-1 in the splits by office country, nationality and pathway.", valueName: "K"))
    var minCell: Int = 0
    @Flag(name: .long, help: "Also write report.html, a self-contained page.")
    var html = false

    func validate() throws {
        if minCell < 0 { throw ValidationError("--min-cell must be 0 or more") }
        if let asOf, Dump.parseCut(asOf) == nil {
            throw ValidationError("--as-of must be an RFC 3339 time such as 2023-12-15T00:00:00Z, or a date such as 2023-12-15")
        }
    }

    /// A time, or a date meaning the last second of that day (UTC).
    static func parseCut(_ text: String) -> Timestamp? {
        if let t = Timestamp(rfc3339: text) { return t }
        return Timestamp(rfc3339: text + "T23:59:59Z")
    }

    func run() throws {
        try reporting {
            let ledger = try data.open()
            let cut = asOf.flatMap(Dump.parseCut)
            let progress = Progress(cut.map { "replay to \($0)" } ?? "report")
            let report = try ledger.report(asOf: cut) { done, total in progress.update(done, of: total) }
            progress.finish()
            let files = try LedgerStore.Dump.write(report.suppressed(minCell: minCell), to: out, html: html,
                                                   generator: "ledgerctl \(Ledgerctl.configuration.version)")
            print("dump: \(files.count) files in \(out) at position \(report.position)\(cut.map { ", as of \($0)" } ?? "")\(minCell > 1 ? ", cells under \(minCell) suppressed" : "")")
            for f in files { print("  \(out)/\(f)") }
        }
    }
}

extension String {
    /// Two decimals.
    init(format2 v: Double) {
        let n = Int((v * 100).rounded())
        let frac = n % 100
        self = "\(n / 100)." + (frac < 10 ? "0\(frac)" : "\(frac)")
    }
}
