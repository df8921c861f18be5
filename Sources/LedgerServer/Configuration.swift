import Foundation
public import LedgerCore

/// The daemon's settings. Defaults here equal those in `Config/ledgerd.toml`; the file, then the
/// environment (`LEDGERD_<KEY>`), then command-line flags override them.
public struct Configuration: Sendable, Equatable {
    public var dataDir = "var/data"
    public var socket = "var/ledgerd.sock"
    /// The longest request line in bytes; longer lines get `too_large`.
    public var maxLineBytes = 1 << 20
    /// Responses one connection may have outstanding before the daemon stops reading from it.
    public var maxPendingPerConnection = 64
    /// A subscriber whose socket stays full this long is dropped with a message.
    public var subscriberStallSeconds = 30
    /// The most events one group commit takes.
    public var maxGroupEvents = 4_096
    /// The writer's threads: 2 (one validates a group while the other writes the one before) or 1.
    public var writerThreads = 2
    /// The LMDB map size to start with, MiB; it doubles when full.
    public var initialMapSizeMiB = 1024
    /// The largest the LMDB map may grow to, GiB; past it appends get `unavailable`.
    public var maxMapSizeGiB = 1024
    /// Events after which the projections kept in memory are written to disk (a checkpoint); also
    /// the most events applied again at a start after a crash.
    public var checkpointEvents = 250_000
    /// Seconds after which events not yet in the stored projections are written (a checkpoint):
    /// when appends stop, `projections_position` reaches the head this soon.
    public var checkpointSeconds = 5
    /// SwiftNIO event-loop threads (decoding happens there).
    public var eventLoopThreads = 1
    /// Threads that serve reads (`read`, `status`) off the event loop.
    public var readThreads = 2
    /// Users (names or numeric ids) who may append, besides the user the daemon runs as.
    public var appendUsers = ["root"]
    /// Groups (names or numeric ids) whose members may append.
    public var appendGroups: [String] = []
    /// trace, debug, info, notice, warning, error or critical.
    public var logLevel = "info"
    /// `host:port` where `GET /metrics` serves Prometheus text; empty: not served.
    public var metricsAddress = ""
    /// The pilot report's window: events whose UTC date is in [start, end) count in `weekly`.
    public var windowStart = "2023-06-12"
    public var windowEnd = "2023-12-12"

    /// The report window of `windowStart` and `windowEnd`.
    /// - Throws: `Problem` when they are not dates or the end is not after the start.
    public func window() throws -> ReportWindow {
        guard let w = ReportWindow(start: windowStart, end: windowEnd) else {
            throw Problem(description: "window_start \(windowStart) and window_end \(windowEnd) must be dates YYYY-MM-DD with the end after the start")
        }
        return w
    }

    public init() {}

    /// Every key the file and the environment accept.
    public static let keys = [
        "data_dir", "socket", "max_line_bytes", "max_pending_per_connection", "subscriber_stall_seconds", "max_group_events", "writer_threads",
        "initial_map_size_mib", "max_map_size_gib", "checkpoint_events", "checkpoint_seconds",
        "event_loop_threads", "read_threads",
        "append_users", "append_groups", "log_level", "metrics_address", "window_start", "window_end",
    ]

    /// A problem in a configuration file or variable, with where it is.
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Applies the settings of a configuration file: a flat subset of TOML (`key = value` lines,
    /// `#` comments, values that are "strings", integers or ["lists", "of strings"]).
    public mutating func apply(file path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Problem(description: "cannot read the configuration file \(path)")
        }
        let text = String(decoding: data, as: UTF8.self)
        for (n, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            if let hash = Configuration.commentStart(line) { line = line[..<hash] }
            line = Substring(line.trimmingCharacters(in: .whitespaces))
            if line.isEmpty { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw Problem(description: "\(path):\(n + 1): expected `key = value`")
            }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            do { try set(key, value) } catch let p as Problem {
                throw Problem(description: "\(path):\(n + 1): \(p.description)")
            }
        }
    }

    /// Applies `LEDGERD_<KEY>` variables of `environment`.
    public mutating func apply(environment: [String: String]) throws {
        for key in Configuration.keys {
            if let value = environment["LEDGERD_" + key.uppercased()] {
                do { try set(key, value, bare: true) } catch let p as Problem {
                    throw Problem(description: "LEDGERD_\(key.uppercased()): \(p.description)")
                }
            }
        }
    }

    private static func commentStart(_ line: Substring) -> Substring.Index? {
        var inString = false
        for i in line.indices {
            if line[i] == "\"" { inString.toggle() }
            if line[i] == "#" && !inString { return i }
        }
        return nil
    }

    /// Sets `key` from its textual `value` (TOML-like; with `bare`, unquoted strings are accepted).
    public mutating func set(_ key: String, _ value: String, bare: Bool = false) throws {
        func string() throws -> String {
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { return String(value.dropFirst().dropLast()) }
            if bare { return value }
            throw Problem(description: "`\(key)` needs a quoted string, got \(value)")
        }
        func int(min: Int = 0) throws -> Int {
            guard let n = Int(value.replacingOccurrences(of: "_", with: "")), n >= min else {
                throw Problem(description: "`\(key)` needs an integer of at least \(min), got \(value)")
            }
            return n
        }
        func list() throws -> [String] {
            var v = value
            if v.hasPrefix("[") && v.hasSuffix("]") {
                v = String(v.dropFirst().dropLast())
            } else if !bare {
                throw Problem(description: "`\(key)` needs a list such as [\"root\"], got \(value)")
            }
            return try v.split(separator: ",").map { item in
                let t = item.trimmingCharacters(in: .whitespaces)
                if t.count >= 2, t.hasPrefix("\""), t.hasSuffix("\"") { return String(t.dropFirst().dropLast()) }
                if bare { return t }
                throw Problem(description: "`\(key)` items must be quoted strings, got \(t)")
            }.filter { !$0.isEmpty }
        }
        switch key {
        case "data_dir": dataDir = try string()
        case "socket": socket = try string()
        case "max_line_bytes": maxLineBytes = try int(min: 1024)
        case "max_pending_per_connection": maxPendingPerConnection = try int(min: 1)
        case "subscriber_stall_seconds": subscriberStallSeconds = try int(min: 1)
        case "max_group_events": maxGroupEvents = try int(min: 1)
        case "writer_threads":
            writerThreads = try int(min: 1)
            guard writerThreads <= 2 else { throw Problem(description: "`writer_threads` must be 1 or 2, got \(writerThreads)") }
        case "initial_map_size_mib": initialMapSizeMiB = try int(min: 1)
        case "max_map_size_gib": maxMapSizeGiB = try int(min: 1)
        case "checkpoint_events": checkpointEvents = try int(min: 1)
        case "checkpoint_seconds": checkpointSeconds = try int(min: 1)
        case "event_loop_threads": eventLoopThreads = try int(min: 1)
        case "read_threads": readThreads = try int(min: 1)
        case "append_users": appendUsers = try list()
        case "append_groups": appendGroups = try list()
        case "log_level":
            let level = try string()
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(level) else {
                throw Problem(description: "`log_level` must be one of trace, debug, info, notice, warning, error, critical")
            }
            logLevel = level
        case "metrics_address": metricsAddress = try string()
        case "window_start": windowStart = try string()
        case "window_end": windowEnd = try string()
        default:
            throw Problem(description: "unknown key `\(key)`; known keys: \(Configuration.keys.joined(separator: ", "))")
        }
    }
}
