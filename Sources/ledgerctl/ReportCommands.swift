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
            Recomputes the case states, the case index, the report's counters and duration samples from \
            the events, in one write transaction (a crash leaves the old projections, marked for rebuild), \
            and says whether the result differs from what was kept while ingesting (exit 1 if it did). \
            Takes the data directory's lock: stop ledgerd first. The window is the one stored in the ledger.
            """)

    @OptionGroup var data: DataDirOptions

    func run() throws {
        try reporting {
            let lock: DirectoryLock
            do { lock = try DirectoryLock(directory: data.dataDir) } catch {
                throw Failure("\(error); replay rewrites the projections, so it needs the daemon stopped")
            }
            defer { withExtendedLifetime(lock) {} }
            let progress = Progress("replay")
            var options = Ledger.Options()
            options.rebuildProgress = { done, total in progress.update(done, of: total) }
            let ledger: Ledger
            do { ledger = try Ledger(directory: data.dataDir, options: options) } catch {
                throw Failure("\(error)")
            }
            let before = try ledger.currentProjections()
            let started = Progress.now()
            try ledger.rebuildProjections { done, total in progress.update(done, of: total) }
            let seconds = Progress.now() - started
            progress.finish()
            let after = try ledger.currentProjections()
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
            let result: (report: JSONObject, pathwaysByOffice: JSONObject)
            if let cut {
                let progress = Progress("replay to \(cut)")
                let r = try ledger.replayReport(asOf: cut) { done, total in progress.update(done, of: total) }
                progress.finish()
                result = (r.report, PilotReport.pathwaysByOffice(counters: r.replay.counters.nonZero))
            } else {
                result = try ledger.reportWithExtras()
            }
            let report = result.report
            let files = try LedgerStore.Dump.write(PilotReport.suppress(report, minCell: minCell),
                                                   pathwaysByOffice: PilotReport.suppressAll(result.pathwaysByOffice, minCell: minCell),
                                                   to: out, minCell: minCell, html: html,
                                                   generator: "ledgerctl \(Ledgerctl.configuration.version)")
            let position: Int64 = report["position"].flatMap { if case .int(let n) = $0 { n } else { nil } } ?? 0
            print("dump: \(files.count) files in \(out) at position \(position)\(cut.map { ", as of \($0)" } ?? "")\(minCell > 1 ? ", cells under \(minCell) suppressed" : "")")
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
