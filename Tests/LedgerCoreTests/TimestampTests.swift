import LedgerCore
import Testing

@Suite("RFC 3339 times")
struct TimestampTests {
    @Test("normalises to UTC", arguments: [
        ("2023-07-03T14:05:00Z", "2023-07-03T14:05:00Z"),
        ("2023-07-03t14:05:00z", "2023-07-03T14:05:00Z"),
        ("2023-07-03T09:05:00-05:00", "2023-07-03T14:05:00Z"),
        ("2023-07-04T01:35:00+11:30", "2023-07-03T14:05:00Z"),
        ("2023-12-31T23:30:00-01:00", "2024-01-01T00:30:00Z"),
        ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"),
        ("2023-07-03T14:05:00.250Z", "2023-07-03T14:05:00.25Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
        ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59Z"),
    ])
    func normalises(input: String, expected: String) throws {
        let t = try #require(Timestamp(rfc3339: input))
        #expect(t.description == expected)
    }

    @Test("a fraction loses its trailing zeros, and a zero fraction is dropped", arguments: [
        ("2023-07-03T14:05:00.5Z", "2023-07-03T14:05:00.5Z"),
        ("2023-07-03T14:05:00.50Z", "2023-07-03T14:05:00.5Z"),
        ("2023-07-03T14:05:00.500000000Z", "2023-07-03T14:05:00.5Z"),
        ("2023-07-03T14:05:00.000Z", "2023-07-03T14:05:00Z"),
        ("2023-07-03T14:05:00.0Z", "2023-07-03T14:05:00Z"),
        ("2023-07-03T14:05:00.000000000Z", "2023-07-03T14:05:00Z"),
        ("2023-07-03T14:05:00.050Z", "2023-07-03T14:05:00.05Z"),
        ("2023-07-03T14:05:00.123456789Z", "2023-07-03T14:05:00.123456789Z"),
        ("2023-07-03T14:05:00.001Z", "2023-07-03T14:05:00.001Z"),
        ("2023-07-03T09:05:00.500-05:00", "2023-07-03T14:05:00.5Z"),
        ("2023-07-04T01:35:00.00+11:30", "2023-07-03T14:05:00Z"),
        ("2023-12-31T23:59:59.990-00:00", "2023-12-31T23:59:59.99Z"),
    ])
    func normalisesFractions(input: String, expected: String) throws {
        let t = try #require(Timestamp(rfc3339: input))
        #expect(t.description == expected)
        var bytes: [UInt8] = []
        t.write(into: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
        // The instant is unchanged: the same seconds and nanoseconds as the spelling without zeros.
        let plain = try #require(Timestamp(rfc3339: expected))
        #expect(t.instant == plain.instant)
        #expect(t.fraction == plain.fraction)
    }

    @Test("rejects", arguments: [
        "2023-07-03", "2023-07-03T14:05:00", "2023-07-03 14:05:00Z", "2023-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z", "2023-04-31T00:00:00Z", "2023-07-03T24:00:00Z", "2023-07-03T14:60:00Z",
        "2023-07-03T14:05:60Z", "2023-07-03T14:05:00.Z", "2023-07-03T14:05:00+5:00", "2023-07-03T14:05:00+05",
        "2023-07-03T14:05:00Zjunk", "+2023-07-03T14:05:00Z", "2023-07-03T14:05:00.1234567890Z", "",
    ])
    func rejects(input: String) {
        #expect(Timestamp(rfc3339: input) == nil)
    }

    @Test func ordersInstants() throws {
        let a = try #require(Timestamp(rfc3339: "2023-07-03T14:05:00.5Z"))
        let b = try #require(Timestamp(rfc3339: "2023-07-03T14:05:00.50Z"))
        let c = try #require(Timestamp(rfc3339: "2023-07-03T09:05:01-05:00"))
        #expect(a == b)
        #expect(a < c)
        #expect(Timestamp(seconds: 0).civil == (1970, 1, 1))
    }

    @Test func civilRoundTrip() {
        for days in stride(from: -800_000, through: 2_900_000, by: 997) {
            let (y, m, d) = Timestamp.civilFromDays(days)
            #expect(Timestamp.daysFromCivil(year: y, month: m, day: d) == days)
        }
    }
}

@Suite("Fast writers agree with the plain ones")
struct FastWriterTests {
    @Test func timeBytesEqualDescription() {
        var rng = SplitMix64(seed: 3)
        for _ in 0..<5000 {
            let t = Timestamp(seconds: Int64(rng.next() % 253_402_300_799) - 62_167_219_200 / 2,
                              fraction: rng.next() % 3 == 0 ? String(rng.next() % 1000) : "")
            var b: [UInt8] = []
            t.write(into: &b)
            #expect(String(decoding: b, as: UTF8.self) == t.description)
        }
    }

    @Test func integersAsDecimal() {
        for n: Int64 in [0, 1, -1, 9, 10, 99, 100, 1_234_567_890, Int64.max, Int64.min, -42] {
            var w = CanonicalJSON()
            w.writeInt(n)
            #expect(String(decoding: w.bytes, as: UTF8.self) == String(n))
        }
        var w = CanonicalJSON()
        w.writeInt(UInt64.max)
        #expect(String(decoding: w.bytes, as: UTF8.self) == String(UInt64.max))
    }
}
