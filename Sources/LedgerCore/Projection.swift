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

/// One counter of the report's projections, packed into 64 bits: dimension ‖ slot ‖ metric ‖ key
/// code, so that hashing and comparing a key costs one integer operation.
///
/// `all`, `officeCountry`, `nationality`: slot is a `Stage`, metric cases or persons.
/// `pathway`: slot a referral `Stage`; `officePathway` the same per office country. `weekly`: slot
/// an `EventType` index, metric count. `outside`: slot an `EventType` index. `states`: slot a
/// `CaseStatus`. The key code per dimension: 0 for `all`, `outside` and `states`; the index into
/// `Codes.officeCountries` or `Codes.pathways`; the `Alpha3` nationality; `office << 8 | pathway`;
/// the ISO week as `year * 100 + week`.
public struct CounterKey: Hashable, Sendable, Comparable {
    public enum Dimension: UInt8, Sendable {
        case all, officeCountry, nationality, pathway, weekly, outside, states
        /// key `OFFICE|PATHWAY`, slot a referral `Stage`: the pathway split by office country.
        case officePathway
    }

    public enum Metric: UInt8, Sendable {
        case cases, persons, count
    }

    public let raw: UInt64

    @inline(__always)
    public init(_ dimension: Dimension, _ code: UInt32, _ slot: UInt8, _ metric: Metric) {
        raw = UInt64(dimension.rawValue) << 56 | UInt64(slot) << 48 | UInt64(metric.rawValue) << 40 | UInt64(code)
    }

    public init(raw: UInt64) { self.raw = raw }

    public var dimension: Dimension { Dimension(rawValue: UInt8(raw >> 56)) ?? .all }
    public var slot: UInt8 { UInt8(truncatingIfNeeded: raw >> 48) }
    public var metric: Metric { Metric(rawValue: UInt8(truncatingIfNeeded: raw >> 40)) ?? .count }
    public var code: UInt32 { UInt32(truncatingIfNeeded: raw) }

    /// The key as the report writes it ("" for the dimensions without keys).
    public var key: String { CounterKey.name(dimension, code) }

    public static func name(_ dimension: Dimension, _ code: UInt32) -> String {
        switch dimension {
        case .all, .outside, .states: ""
        case .officeCountry: officeName(code)
        case .nationality: Alpha3.unpack(code)
        case .pathway: pathwayName(code)
        case .officePathway: officeName(code >> 8) + "|" + pathwayName(code & 0xFF)
        case .weekly: ISOWeek.name(code: Int(code))
        }
    }

    static func officeName(_ code: UInt32) -> String {
        Int(code) < Codes.officeCountries.count ? Codes.officeCountries[Int(code)] : "?\(code)"
    }

    static func pathwayName(_ code: UInt32) -> String {
        Int(code) < Codes.pathways.count ? Codes.pathways[Int(code)] : "?\(code)"
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(raw) }

    /// Bytes for the `projections` database: `raw`, big-endian.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(8)
        appendBigEndian(raw, 8, &out)
        return out
    }

    public init?(encoded b: [UInt8]) {
        guard b.count == 8 else { return nil }
        var v: UInt64 = 0
        for x in b { v = v << 8 | UInt64(x) }
        guard Dimension(rawValue: UInt8(v >> 56)) != nil, Metric(rawValue: UInt8(truncatingIfNeeded: v >> 40)) != nil else { return nil }
        raw = v
    }

    public static func < (a: CounterKey, b: CounterKey) -> Bool { a.raw < b.raw }
}

/// The changes one event makes to the projections: counter increments (in the order made; a
/// key may repeat) and new duration samples (whole seconds).
public struct ProjectionDelta: Sendable {
    public var increments: [(key: CounterKey, by: Int64)] = []
    public var durations: [(measure: Measure, seconds: Int64)] = []

    public init() {
        increments.reserveCapacity(24)
    }

    mutating func add(_ key: CounterKey, _ n: Int64) {
        increments.append((key, n))
    }

    /// Adds the increments to `counters`. A counter that drops back to zero stays, as 0 (see
    /// `CounterTable.nonZero`).
    public func apply(to counters: inout CounterTable) {
        for (k, v) in increments { counters.add(k, v) }
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
    /// The ISO week code of each day of the window (when it spans at most 40,000 days), so the
    /// case machine does not compute a calendar date per event.
    let weekByDay: [Int32]

    public init?(start: String, end: String) {
        guard let s = ReportWindow.day(start), let e = ReportWindow.day(end), e > s else { return nil }
        self.start = start
        self.end = end
        startDay = s
        endDay = e
        weekByDay = e - s <= 40_000 ? (s..<e).map { Int32(ISOWeek.code(day: $0)) } : []
    }

    public static func == (a: ReportWindow, b: ReportWindow) -> Bool { a.start == b.start && a.end == b.end }

    /// `ISOWeek.code(day:)` of a day inside the window.
    @inline(__always)
    func weekCode(day: Int) -> Int {
        let k = day - startDay
        return k >= 0 && k < weekByDay.count ? Int(weekByDay[k]) : ISOWeek.code(day: day)
    }

    static func day(_ text: String) -> Int? {
        Timestamp(rfc3339: text + "T00:00:00Z").map(\.dayNumber)
    }

    public func contains(_ t: Timestamp) -> Bool { contains(day: t.dayNumber) }

    public func contains(day d: Int) -> Bool { d >= startDay && d < endDay }

    /// The ISO weeks from the week of `start` to the week of the day before `end`, as
    /// `ISOWeek.code`s.
    public var weekCodes: [Int] {
        var out: [Int] = []
        var d = startDay
        while d < endDay {
            let w = ISOWeek.code(day: d)
            if out.last != w { out.append(w) }
            d += 1
        }
        return out
    }

    /// The same weeks as `YYYY-Www`.
    public var weeks: [String] { weekCodes.map { ISOWeek.name(code: $0) } }
}

/// ISO 8601 week numbering.
public enum ISOWeek {
    /// `YYYY-Www` of the day `day` (days since 1970-01-01).
    public static func of(day: Int) -> String { name(code: code(day: day)) }

    public static func of(_ t: Timestamp) -> String { of(day: t.dayNumber) }

    /// The week of `day` as `year * 100 + week` (`202324` for 2023-W24).
    public static func code(day: Int) -> Int {
        // 1970-01-01 was a Thursday; ISO weekday 1 is Monday.
        let weekday = ((day + 3) % 7 + 7) % 7 + 1
        let thursday = day - weekday + 4
        let (year, _, _) = Timestamp.civilFromDays(thursday)
        let jan1 = Timestamp.daysFromCivil(year: year, month: 1, day: 1)
        return year * 100 + (thursday - jan1) / 7 + 1
    }

    /// `YYYY-Www` of a `code(day:)`.
    public static func name(code: Int) -> String {
        let week = code % 100
        return "\(code / 100)-W" + (week < 10 ? "0\(week)" : "\(week)")
    }
}

extension Timestamp {
    /// Whole seconds from `self` to `later` (the fraction's remainder dropped).
    public func wholeSeconds(to later: Timestamp) -> Int64 {
        later.seconds - seconds - (later.fractionNanos < fractionNanos ? 1 : 0)
    }
}
