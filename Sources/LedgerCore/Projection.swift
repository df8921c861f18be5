/// A duration measure of the pilot report (CONTRACT §4).
public enum Measure: UInt8, Sendable, CaseIterable {
    case requestToInterview, interviewToReferral, referralToDecision, requestToArrival

    public var name: String {
        switch self {
        case .requestToInterview: "request_to_interview"
        case .interviewToReferral: "interview_to_referral"
        case .referralToDecision: "referral_to_decision"
        case .requestToArrival: "request_to_arrival"
        }
    }
}

/// One counter of the report's projections.
///
/// `all`, `officeCountry`, `nationality`: slot is a `Stage`, metric cases or persons.
/// `pathway`: key the pathway, slot a referral `Stage`; `officePathway` the same per office country. `weekly`: key the ISO week, slot an
/// `EventType` index, metric count. `outside`: slot an `EventType` index. `states`: slot a `CaseStatus`.
public struct CounterKey: Hashable, Sendable, Comparable {
    public enum Dimension: UInt8, Sendable {
        case all, officeCountry, nationality, pathway, weekly, outside, states
        /// key `OFFICE|PATHWAY`, slot a referral `Stage`: the pathway split by office country.
        case officePathway
    }

    public enum Metric: UInt8, Sendable {
        case cases, persons, count
    }

    public let dimension: Dimension
    public let key: String
    public let slot: UInt8
    public let metric: Metric

    /// FNV-1a of all fields, computed once: hashing a key is the hottest operation of a replay.
    private let fingerprint: UInt64

    public init(_ dimension: Dimension, _ key: String, _ slot: UInt8, _ metric: Metric) {
        self.dimension = dimension
        self.key = key
        self.slot = slot
        self.metric = metric
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in [dimension.rawValue, slot, metric.rawValue] { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        for b in key.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        fingerprint = h
    }

    public static func == (a: CounterKey, b: CounterKey) -> Bool {
        a.fingerprint == b.fingerprint && a.dimension == b.dimension && a.slot == b.slot && a.metric == b.metric && a.key == b.key
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(fingerprint) }

    /// Bytes for the `projections` database: dimension, slot, metric, then the key.
    public var encoded: [UInt8] { [dimension.rawValue, slot, metric.rawValue] + Array(key.utf8) }

    public init?(encoded b: [UInt8]) {
        guard b.count >= 3, let d = Dimension(rawValue: b[0]), let m = Metric(rawValue: b[2]) else { return nil }
        self.init(d, String(decoding: b[3...], as: UTF8.self), b[1], m)
    }

    public static func < (a: CounterKey, b: CounterKey) -> Bool { a.encoded.lexicographicallyPrecedes(b.encoded) }
}

/// The changes one event makes to the projections: counter increments (in the order made; a
/// key may repeat) and new duration samples (whole seconds).
public struct ProjectionDelta: Sendable {
    public var increments: [(key: CounterKey, by: Int64)] = []
    public var durations: [(measure: Measure, seconds: Int64)] = []

    public init() {
        increments.reserveCapacity(24)
    }

    public var isEmpty: Bool { increments.isEmpty && durations.isEmpty }

    mutating func add(_ key: CounterKey, _ n: Int64) {
        increments.append((key, n))
    }

    /// Adds the increments to `counters`, removing counters that become zero.
    public func apply(to counters: inout [CounterKey: Int64]) {
        for (k, v) in increments where v != 0 {
            let n = counters[k, default: 0] + v
            counters[k] = n == 0 ? nil : n
        }
    }
}

/// The pilot window: events whose UTC date d has start ≤ d < end count in `weekly`.
public struct ReportWindow: Sendable, Equatable {
    public let start: String
    public let end: String
    let startDay: Int
    let endDay: Int

    /// The pilot's six months from 2023-06-12.
    public static let pilot = ReportWindow(start: "2023-06-12", end: "2023-12-12")!

    /// Dates as `YYYY-MM-DD`; nil when either is not a date or end is not after start.
    public init?(start: String, end: String) {
        guard let s = ReportWindow.day(start), let e = ReportWindow.day(end), e > s else { return nil }
        self.start = start
        self.end = end
        startDay = s
        endDay = e
    }

    static func day(_ text: String) -> Int? {
        Timestamp(rfc3339: text + "T00:00:00Z").map(\.dayNumber)
    }

    public func contains(_ t: Timestamp) -> Bool {
        let d = t.dayNumber
        return d >= startDay && d < endDay
    }

    /// The ISO weeks from the week of `start` to the week of the day before `end`.
    public var weeks: [String] {
        var out: [String] = []
        var d = startDay
        while d < endDay {
            let w = ISOWeek.of(day: d)
            if out.last != w { out.append(w) }
            d += 1
        }
        return out
    }
}

/// ISO 8601 week numbering.
public enum ISOWeek {
    /// `YYYY-Www` of the day `day` (days since 1970-01-01).
    public static func of(day: Int) -> String {
        // 1970-01-01 was a Thursday; ISO weekday 1 is Monday.
        let weekday = ((day + 3) % 7 + 7) % 7 + 1
        let thursday = day - weekday + 4
        let (year, _, _) = Timestamp.civilFromDays(thursday)
        let jan1 = Timestamp.daysFromCivil(year: year, month: 1, day: 1)
        let week = (thursday - jan1) / 7 + 1
        return "\(year)-W" + (week < 10 ? "0\(week)" : "\(week)")
    }

    public static func of(_ t: Timestamp) -> String { of(day: t.dayNumber) }
}

extension Timestamp {
    /// Whole seconds from `self` to `later` (the fraction's remainder dropped).
    public func wholeSeconds(to later: Timestamp) -> Int64 {
        later.seconds - seconds - (later.fractionNanos < fractionNanos ? 1 : 0)
    }
}
