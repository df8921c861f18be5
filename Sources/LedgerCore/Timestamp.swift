/// An instant parsed from RFC 3339, held in UTC.
///
/// `seconds` counts from 1970-01-01T00:00:00Z. A parsed fraction of a second is kept as the digits
/// written without their trailing zeros (`"5"` for `.5`, `.50` and `.500000000`; none for `.000`),
/// so the normalised text neither invents precision nor tells apart two spellings of one instant.
/// Ordering and equality compare the instant.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let seconds: Int64
    /// Decimal digits of the fraction of a second, without the dot; empty when none. Parsed times
    /// have no trailing zero here.
    public let fraction: String

    /// A time from its parts; `fraction` (decimal digits) is written out as given, trailing zeros
    /// included (`recorded_at` keeps its three digits of milliseconds this way).
    public init(seconds: Int64, fraction: String = "") {
        self.seconds = seconds
        self.fraction = fraction
    }

    /// Parses RFC 3339 `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`; `t` and `z` may be lowercase, and
    /// `frac` is 1 to 9 digits, kept without its trailing zeros. Returns nil for anything else,
    /// including out-of-range fields and leap seconds.
    public init?(rfc3339 text: String) {
        let b = Array(text.utf8)
        guard b.count >= 20 else { return nil }
        func num(_ from: Int, _ n: Int) -> Int? {
            guard from + n <= b.count else { return nil }
            var v = 0
            for k in from..<(from + n) {
                let c = b[k]
                guard c >= 0x30 && c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            return v
        }
        guard let year = num(0, 4), b[4] == UInt8(ascii: "-"), let month = num(5, 2), b[7] == UInt8(ascii: "-"),
              let day = num(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"),
              let hour = num(11, 2), b[13] == UInt8(ascii: ":"), let minute = num(14, 2),
              b[16] == UInt8(ascii: ":"), let second = num(17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= Timestamp.daysInMonth(year: year, month: month),
              hour <= 23, minute <= 59, second <= 59
        else { return nil }
        var k = 19
        var fraction = ""
        if k < b.count, b[k] == UInt8(ascii: ".") {
            k += 1
            let start = k
            while k < b.count, b[k] >= 0x30, b[k] <= 0x39 { k += 1 }
            guard k > start, k - start <= 9 else { return nil }
            var end = k
            while end > start, b[end - 1] == UInt8(ascii: "0") { end -= 1 }
            if end > start { fraction = String(decoding: b[start..<end], as: UTF8.self) }
        }
        guard k < b.count else { return nil }
        var offset = 0
        if b[k] == UInt8(ascii: "Z") || b[k] == UInt8(ascii: "z") {
            k += 1
        } else if b[k] == UInt8(ascii: "+") || b[k] == UInt8(ascii: "-") {
            let sign = b[k] == UInt8(ascii: "-") ? -1 : 1
            guard let oh = num(k + 1, 2), k + 3 < b.count, b[k + 3] == UInt8(ascii: ":"), let om = num(k + 4, 2),
                  oh <= 23, om <= 59
            else { return nil }
            offset = sign * (oh * 3600 + om * 60)
            k += 6
        } else {
            return nil
        }
        guard k == b.count else { return nil }
        let days = Timestamp.daysFromCivil(year: year, month: month, day: day)
        let secs = Int64(days) * 86400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offset)
        // The normalised form must still be a four-digit year.
        guard secs >= Timestamp.minSeconds, secs <= Timestamp.maxSeconds else { return nil }
        self.seconds = secs
        self.fraction = fraction
    }

    static let minSeconds: Int64 = -62_167_219_200  // 0000-01-01T00:00:00Z
    static let maxSeconds: Int64 = 253_402_300_799  // 9999-12-31T23:59:59Z

    /// Appends `description`'s UTF-8 bytes without building a String.
    public func write(into out: inout [UInt8]) {
        let (y, m, d) = civil
        let s = Int(((seconds % 86400) + 86400) % 86400)
        func two(_ v: Int) { out.append(UInt8(48 + v / 10)); out.append(UInt8(48 + v % 10)) }
        out.append(UInt8(48 + y / 1000 % 10)); out.append(UInt8(48 + y / 100 % 10)); two(y % 100)
        out.append(UInt8(ascii: "-")); two(m); out.append(UInt8(ascii: "-")); two(d)
        out.append(UInt8(ascii: "T")); two(s / 3600); out.append(UInt8(ascii: ":")); two(s / 60 % 60)
        out.append(UInt8(ascii: ":")); two(s % 60)
        if !fraction.isEmpty {
            out.append(UInt8(ascii: "."))
            out.append(contentsOf: fraction.utf8)
        }
        out.append(UInt8(ascii: "Z"))
    }

    /// `YYYY-MM-DDTHH:MM:SS[.frac]Z`.
    public var description: String {
        let (y, m, d) = civil
        let s = Int(((seconds % 86400) + 86400) % 86400)
        var out = pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T"
        out += pad(s / 3600, 2) + ":" + pad(s / 60 % 60, 2) + ":" + pad(s % 60, 2)
        if !fraction.isEmpty { out += "." + fraction }
        return out + "Z"
    }

    /// The UTC calendar date.
    public var civil: (year: Int, month: Int, day: Int) {
        let days = Int(seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400)
        return Timestamp.civilFromDays(days)
    }

    /// Days since 1970-01-01 of the UTC date.
    public var dayNumber: Int { Int(seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400) }

    public static func < (a: Timestamp, b: Timestamp) -> Bool {
        if a.seconds != b.seconds { return a.seconds < b.seconds }
        return a.fractionNanos < b.fractionNanos
    }

    public static func == (a: Timestamp, b: Timestamp) -> Bool {
        a.seconds == b.seconds && a.fractionNanos == b.fractionNanos
    }

    public func hash(into h: inout Hasher) {
        h.combine(seconds)
        h.combine(fractionNanos)
    }

    var fractionNanos: Int {
        var v = 0
        var n = 0
        for c in fraction.utf8 { v = v * 10 + Int(c - 0x30); n += 1 }
        while n < 9 { v *= 10; n += 1 }
        return v
    }

    private func pad(_ v: Int, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    static func isLeap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm).
    public static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    public static func civilFromDays(_ z0: Int) -> (year: Int, month: Int, day: Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
