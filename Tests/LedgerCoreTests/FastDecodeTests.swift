@_spi(Testing) import LedgerCore
import Testing

/// Differential tests of the append fast path (`AppendFastPath`) against the generic decoder
/// (`Request.decodeGeneric`): the same events (every field, canonical bytes included) or the same
/// error code and index, for generated events of every type and for seeded mutations of them.
@Suite("Append fast path equals the generic decoder")
struct FastDecodeTests {
    // MARK: generating valid append lines

    struct Gen {
        var rng: SplitMix64
        /// Probability (out of 100) of each unusual shape: white space, escapes, key order, odd times.
        var oddity: UInt64

        mutating func below(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        mutating func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }
        mutating func pick<T>(_ a: [T]) -> T { a[below(a.count)] }

        mutating func ws() -> String {
            guard chance(oddity / 2) else { return "" }
            return pick([" ", "\n", "\t", "\r\n  ", "  "])
        }

        /// A JSON string literal for `s`, sometimes with needless escapes.
        mutating func quote(_ s: String) -> String {
            var out = "\""
            for scalar in s.unicodeScalars {
                switch scalar.value {
                case 0x22: out += "\\\""
                case 0x5C: out += "\\\\"
                case 0..<0x20: out += "\\u" + hex4(scalar.value)
                default:
                    if chance(oddity / 8) {
                        if scalar.value == 0x2F && chance(50) {
                            out += "\\/"
                        } else if scalar.value <= 0xFFFF {
                            out += "\\u" + hex4(scalar.value)
                        } else {
                            let v = scalar.value - 0x10000
                            out += "\\u" + hex4(0xD800 + (v >> 10)) + "\\u" + hex4(0xDC00 + (v & 0x3FF))
                        }
                    } else {
                        out.unicodeScalars.append(scalar)
                    }
                }
            }
            return out + "\""
        }

        func hex4(_ v: UInt32) -> String {
            let digits = Array("0123456789abcdef")
            return String([digits[Int(v >> 12 & 15)], digits[Int(v >> 8 & 15)], digits[Int(v >> 4 & 15)], digits[Int(v & 15)]])
        }

        mutating func printable(_ count: Int) -> String {
            let plain = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:.")
            let odd = Array(" !\"#$%&'()*+,/;<=>?@[\\]^`{|}~")
            return String((0..<count).map { _ in chance(oddity / 4) ? pick(odd) : pick(plain) })
        }

        mutating func label(max: Int) -> String {
            let pieces = ["a", "B", "7", " ", "-", "á", "é", "Bogotá", "北京", "😀", "e\u{301}", "ß", "Ω", "\u{212B}", "/", "\"", "\\",
                          "\u{1F1E8}\u{1F1F4}", "e\u{301}\u{302}", "\u{E9}"]
            // Up to `max` scalars (the label's length), sometimes far fewer grapheme clusters.
            var s = ""
            let n = 1 + below(max)
            while s.unicodeScalars.count < n {
                let piece = chance(100 - oddity) ? pick(["a", "B", "7", "R", "-", " "]) : pick(pieces)
                if (s + piece).unicodeScalars.count <= max { s += piece } else { break }
            }
            return s.isEmpty ? "R" : s
        }

        mutating func time() -> String {
            let year = chance(2) ? pick([0, 1, 9999]) : 1970 + below(60)
            let month = 1 + below(12)
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
            let day = 1 + below(month == 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].contains(month) ? 30 : 31)
            func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
            func four(_ v: Int) -> String { String(repeating: "0", count: 4 - String(v).count) + String(v) }
            var s = four(year) + "-" + two(month) + "-" + two(day) + (chance(oddity / 4) ? "t" : "T")
            s += two(below(24)) + ":" + two(below(60)) + ":" + two(below(60))
            if chance(oddity / 4) {
                // 1 to 9 digits, often ending in zeros (one instant, several spellings).
                var digits = String((0..<(1 + below(9))).map { _ in pick(Array("0123456789")) })
                if chance(40) { digits = String(digits.prefix(1 + below(digits.count))) + String(repeating: "0", count: below(9)) }
                s += "." + digits.prefix(9)
            }
            if chance(oddity / 2) {
                // An offset; near the ends of the four-digit years it may leave the range (rejected).
                let sign = chance(50) ? "+" : "-"
                s += sign + two(below(24)) + ":" + two(chance(50) ? 0 : below(60))
            } else {
                s += chance(oddity / 4) ? "z" : "Z"
            }
            return s
        }

        /// A time with one field at or past its limits (valid or not), for mutations.
        mutating func edgeTime() -> String {
            func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
            var year = "2023", month = "07", day = "03", t = "T", hour = "14", minute = "05", second = "00"
            var fraction = "", zone = "Z"
            switch below(12) {
            case 0: year = pick(["0000", "0001", "9999", "2024", "2100", "2000", "1900"]); month = "02"; day = pick(["28", "29", "30"])
            case 1: month = two(pick([0, 1, 12, 13]))
            case 2: day = two(pick([0, 1, 30, 31, 32])); month = two(pick([2, 4, 6, 9, 11, 12]))
            case 3: hour = two(pick([0, 23, 24, 99]))
            case 4: minute = two(pick([0, 59, 60]))
            case 5: second = two(pick([0, 59, 60]))
            case 6: zone = pick(["+", "-"]) + two(pick([0, 14, 23, 24])) + ":" + two(pick([0, 30, 59, 60]))
            case 7: zone = pick(["z", "", "ZZ", "+0000", "+00:0", "-00:00:00", "+00:00Z", "+00;00"])
            case 8: t = pick(["t", " ", "TT", "x"])
            case 9:
                fraction = chance(50) ? "." + String(repeating: "7", count: below(11))
                    : pick([".0", ".000", ".000000000", ".0000000000", ".50", ".500000000", ".5000000000", ".05", ".10"])
            case 10:
                // The ends of the range of four-digit years, pushed past them (or not) by an offset.
                if chance(50) {
                    year = "0000"; month = "01"; day = "01"; hour = "00"; minute = "00"; second = "00"
                    zone = pick(["+00:01", "-00:01", "+00:00", "Z"])
                } else {
                    year = "9999"; month = "12"; day = "31"; hour = "23"; minute = "59"; second = "59"
                    zone = pick(["+00:01", "-00:01", "-00:00", "Z"])
                }
            default: year = pick(["20233", "202", "2O23", "-2023"])
            }
            return year + "-" + month + "-" + day + t + hour + ":" + minute + ":" + second + fraction + zone
        }

        mutating func value(_ field: EventSchema.Field) -> String {
            switch field.kind {
            case .code(let codes): return quote(pick(codes))
            case .alpha3: return quote(String((0..<3).map { _ in pick(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ")) }))
            case .integer(let range):
                return String(Int64(below(Int(range.upperBound - range.lowerBound + 1))) + range.lowerBound)
            case .label(let max): return quote(label(max: max))
            case .pseudonym: return quote("k1:" + printable(below(40) + (chance(2) ? 86 : 0)))
            case .time: return quote(time())
            case .codeList(let codes):
                var chosen: [String] = []
                for c in codes where chance(30) { chosen.append(c) }
                if chance(50) { chosen.shuffle(using: &rng) }
                return "[" + ws() + chosen.map { quote($0) }.joined(separator: ws() + "," + ws()) + ws() + "]"
            }
        }

        mutating func object(_ members: [(String, String)]) -> String {
            var m = members
            if chance(oddity) { m.shuffle(using: &rng) }
            return "{" + ws() + m.map { quote($0.0) + ws() + ":" + ws() + $0.1 }.joined(separator: ws() + "," + ws()) + ws() + "}"
        }

        mutating func event(_ type: EventType, _ n: Int) -> String {
            var data: [(String, String)] = []
            for f in EventSchema.fields(of: type) where f.required || chance(60) {
                data.append((f.name, value(f)))
            }
            var members: [(String, String)] = [
                ("id", quote(chance(oddity / 4) ? printable(1 + below(chance(3) ? 128 : 30)) : "ev-\(n)")),
                ("type", quote(type.rawValue)),
                ("case", quote(chance(oddity / 4) ? printable(1 + below(64)) : "C-\(n % 97)")),
                ("at", quote(time())),
                ("data", object(data)),
            ]
            if chance(40) {
                let v: Int64 = chance(5) ? Int64.max - Int64(below(3)) : Int64(below(chance(50) ? 10 : 1_000_000))
                members.insert(("expected_version", String(v)), at: 4)
            }
            if chance(oddity / 4) {
                // The canonical order, as an export would hold it.
                members.sort { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
                return "{" + members.map { quote($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
            }
            return object(members)
        }

        mutating func appendLine(events count: Int) -> [UInt8] {
            let events = (0..<count).map { k in event(pick(EventType.allCases), k + below(1000)) }
            let body = "[" + ws() + events.joined(separator: ws() + "," + ws()) + ws() + "]"
            return Array((ws() + #"{"op":"append","events":"# + body + "}" + ws()).utf8)
        }
    }

    // MARK: comparing

    static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): return Array(x.utf8) == Array(y.utf8)
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case (.object(let x), .object(let y)): return same(x, y)
        default: return a == b
        }
    }

    static func same(_ a: JSONObject, _ b: JSONObject) -> Bool {
        a.members.count == b.members.count && zip(a.members, b.members).allSatisfy {
            Array($0.key.utf8) == Array($1.key.utf8) && same($0.value, $1.value)
        }
    }

    static func same(_ a: Event, _ b: Event) -> Bool {
        Array(a.id.utf8) == Array(b.id.utf8) && a.type == b.type && Array(a.caseID.utf8) == Array(b.caseID.utf8)
            && a.at.seconds == b.at.seconds && Array(a.at.fraction.utf8) == Array(b.at.fraction.utf8)
            && a.expectedVersion == b.expectedVersion && same(a.data, b.data) && a.canonical == b.canonical && a.facts == b.facts
    }

    struct Outcome {
        var fastTook = false
        var accepted = false
    }

    /// Decodes `line` both ways and records a test issue when they differ.
    @discardableResult
    static func compare(_ line: [UInt8]) -> Outcome {
        line.withUnsafeBytes { buf in
            var outcome = Outcome()
            let reference = Result { () throws(LedgerError) in try Request.decodeGeneric(buf) }
            let fast = AppendFastPath.decode(buf)
            // `decode` is the fast path's events, else the generic decoder's answer.
            let decoded = fast.map { Result.success(.append($0)) } ?? reference
            outcome.fastTook = fast != nil
            let text = String(decoding: line.prefix(400), as: UTF8.self)
            switch (reference, decoded) {
            case (.failure(let r), .failure(let d)):
                #expect(r.code == d.code && r.index == d.index, "\(r) vs \(d): \(text)")
                #expect(fast == nil, "fast path accepted what the generic decoder rejects: \(r): \(text)")
            case (.success(.append(let r)), .success(.append(let d))):
                outcome.accepted = true
                #expect(r.count == d.count && zip(r, d).allSatisfy { same($0, $1) }, "events differ: \(text)")
                if let fast {
                    #expect(r.count == fast.count && zip(r, fast).allSatisfy { same($0, $1) }, "fast events differ: \(text)")
                }
            case (.success(let r), .success(let d)):
                #expect(fast == nil)
                #expect("\(r)" == "\(d)", "\(text)")
            default:
                Issue.record("one decoder accepted, the other rejected: \(reference) vs \(decoded): \(text)")
            }
            return outcome
        }
    }

    // MARK: tests

    @Test("3,000 plain generated events of every type take the fast path and match")
    func plainEvents() {
        var gen = Gen(rng: SplitMix64(seed: 0xFA57), oddity: 0)
        var fast = 0
        var lines = 0
        var seenTypes = Set<EventType>()
        for k in 0..<300 {
            let line = gen.appendLine(events: 1 + k % 20)
            let outcome = Self.compare(line)
            #expect(outcome.accepted)
            if outcome.fastTook { fast += 1 }
            lines += 1
            if case .append(let events)? = try? line.withUnsafeBytes({ try Request.decode($0) }) {
                for e in events { seenTypes.insert(e.type) }
            }
        }
        #expect(seenTypes.count == EventType.allCases.count)
        // Plain lines are the fast path's shape: all of them should take it (time ranges aside).
        #expect(fast >= lines * 95 / 100, "only \(fast) of \(lines) plain lines took the fast path")
    }

    @Test("4,000 generated events with odd but valid shapes match")
    func oddEvents() {
        var gen = Gen(rng: SplitMix64(seed: 0x0DD), oddity: 40)
        var accepted = 0
        for k in 0..<1_000 {
            if Self.compare(gen.appendLine(events: 1 + k % 7)).accepted { accepted += 1 }
        }
        #expect(accepted > 800, "only \(accepted) odd lines decoded")
    }

    static let numbers = ["-0", "00", "01", "1.0", "1e2", "1E+2", "-1", "0", "21", "20", "99999999999999999999",
                          "9223372036854775807", "9223372036854775808", "-9223372036854775808", "123456789012345678",
                          "1234567890123456789", "true", "null", "\"3\"", "[]", "{}"]
    static let fragments: [[UInt8]] = [
        " ", "\n", "\t", "\r", "\\", "\\u0041", "\\u00e9", "\\ud83d\\ude00", "\\ud800", "\\/", "\\\"", "é", "😀",
        "\u{7F}", "\u{1}", ",", ":", "{", "}", "[", "]", "\"", "\"id\":\"x\",", "\"extra\":1,", "\"data\":{},",
        "\"reasons\":[\"AGE\",\"AGE\"],", "2023-02-29T00:00:00Z", "+24:00", ".123", "Z",
        ".50", ".000", ".0", "0", "\u{E9}", "e\u{301}", "\u{301}", "\\u0301", "\u{212A}", "\\u212a", "\u{1F1E8}\u{1F1F4}",
        "\"\\u00e9\":1,\"e\\u0301\":2,", "\"\u{E9}\":1,\"e\u{301}\":2,",
    ].map { Array($0.utf8) } + [[0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xE2, 0x84, 0xAA], [0xF0, 0x9F]]

    /// Mutations aimed at the fast path's decisions, on top of `FuzzTests.mutate`'s byte-level ones.
    static func mutate(_ input: [UInt8], _ rng: inout SplitMix64, corpus: [[UInt8]]) -> [UInt8] {
        var b = input
        func at() -> Int { b.isEmpty ? 0 : Int(rng.next() % UInt64(b.count)) }
        /// The first index from a random start (wrapping round) where `match` holds.
        func find(_ match: (UInt8) -> Bool) -> Int? {
            guard !b.isEmpty else { return nil }
            let start = at()
            for k in 0..<b.count where match(b[(start + k) % b.count]) { return (start + k) % b.count }
            return nil
        }
        /// Two successive commas from a random start.
        func commaPair() -> (Int, Int)? {
            guard let first = find({ $0 == 0x2C }) else { return nil }
            guard let second = b[(first + 1)...].firstIndex(of: 0x2C) else { return nil }
            return (first, second)
        }
        switch rng.next() % 11 {
        case 0:
            return FuzzTests.mutate(input, &rng, corpus: corpus)
        case 10:
            // A label replaced by a look-alike of another label, or by one at its length limit
            // counted in scalars (far fewer grapheme clusters).
            guard let r = findString(b, rng.next() % 2 == 0 ? Self.referralKey : Self.officeKey) else { return b }
            var end = r
            while end < b.count, b[end] != 0x22 || b[end - 1] == 0x5C { end += 1 }
            b.replaceSubrange(r..<end, with: Array(lookAlikeLabels[Int(rng.next() % UInt64(lookAlikeLabels.count))].utf8))
        case 9:
            // A time replaced by one at or past the limits of its fields.
            guard let r = findString(b, rng.next() % 3 == 0 ? Self.scheduledKey : Self.atKey) else { return b }
            var end = r
            while end < b.count, b[end] != 0x22 { end += 1 }
            var gen = Gen(rng: SplitMix64(seed: rng.next()), oddity: 0)
            b.replaceSubrange(r..<end, with: Array(gen.edgeTime().utf8))
        case 1:
            // A number (or a value where one is) replaced.
            guard let colon = find({ $0 == 0x3A }), colon + 1 < b.count, b[colon + 1] >= 0x30 && b[colon + 1] <= 0x39 || b[colon + 1] == 0x22
            else { return b }
            let start = colon + 1
            var end = start
            if b[start] == 0x22 {
                end += 1
                while end < b.count, b[end] != 0x22 { end += 1 }
                end = min(end + 1, b.count)
            }
            while end < b.count, b[end] >= 0x30 && b[end] <= 0x39 { end += 1 }
            b.replaceSubrange(start..<end, with: Array(numbers[Int(rng.next() % UInt64(numbers.count))].utf8))
        case 2:
            // A fragment inserted anywhere, most often inside a string.
            let p = rng.next() % 3 != 0 ? (find({ $0 == 0x22 }).map { $0 + 1 } ?? 0) : at()
            b.insert(contentsOf: fragments[Int(rng.next() % UInt64(fragments.count))], at: min(p, b.count))
        case 3:
            // A byte of a string replaced by an escape of the same character.
            guard let p = find({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) }) else { return b }
            let hex = Array("0123456789abcdef".utf8)
            b.replaceSubrange(p...p, with: [0x5C, 0x75, 0x30, 0x30, hex[Int(b[p] >> 4)], hex[Int(b[p] & 15)]])
        case 4:
            // A member removed: from a comma to the next comma.
            guard let (from, to) = commaPair() else { return b }
            b.removeSubrange(from..<to)
        case 5:
            // A member duplicated.
            guard let (from, to) = commaPair() else { return b }
            b.insert(contentsOf: Array(b[from..<to]), at: to)
        case 6:
            // A string's closing quote or a structural byte deleted or doubled.
            guard let p = find({ $0 == 0x22 || $0 == 0x7B || $0 == 0x7D || $0 == 0x5B || $0 == 0x5D || $0 == 0x3A }) else { return b }
            if rng.next() % 2 == 0 { b.remove(at: p) } else { b.insert(b[p], at: p) }
        case 7:
            // The envelope of the request changed.
            let variants = [#"{"events":["#, #"{"op":"append","op":"append","events":["#, #"{"op":"append","events":[],"x":["#,
                            #"{"op":"status","events":["#, #"{ "op" : "append" , "events" : [ "#, #"{"op":"append","events":"#,
                            #"{"op":"Append","events":["#]
            let prefix = Array(#"{"op":"append","events":["#.utf8)
            guard b.starts(with: prefix) else { return b }
            b.replaceSubrange(0..<prefix.count, with: Array(variants[Int(rng.next() % UInt64(variants.count))].utf8))
        default:
            // A value turned into another event type's or a type name changed.
            let types = EventType.allCases.map(\.rawValue) + ["Teleported", "appointmentRequested", "Arrive"]
            guard let r = findString(b, Self.typeKey) else { return b }
            var end = r
            while end < b.count, b[end] != 0x22 { end += 1 }
            b.replaceSubrange(r..<end, with: Array(types[Int(rng.next() % UInt64(types.count))].utf8))
        }
        return b
    }

    /// Labels that Swift's `==` equates with others, and labels at and past 32 scalars.
    static let lookAlikeLabels: [String] = [
        "R1", "\u{E9}", "e\u{301}", #"\u00e9"#, #"e\u0301"#, "\u{212A}1", "K1", #"\u212a1"#, "R\u{301}\u{323}", "R\u{323}\u{301}",
        "e" + String(repeating: "\u{301}", count: 31), "e" + String(repeating: "\u{301}", count: 32),
        String(repeating: "\u{1F1E8}\u{1F1F4}", count: 16), String(repeating: "\u{1F1E8}\u{1F1F4}", count: 16) + "x",
        String(repeating: "e\u{301}", count: 16), String(repeating: "e\u{301}", count: 16) + "x",
        String(repeating: "\u{1F600}", count: 32), String(repeating: "a", count: 32) + "\u{301}",
        // One grapheme cluster of 261 bytes: more than the one-byte length of the stored facts.
        "e" + String(repeating: "\u{301}", count: 130),
    ]

    static let typeKey = Array(#""type":""#.utf8)
    static let referralKey = Array(#""referral":""#.utf8)
    static let officeKey = Array(#""office":""#.utf8)
    static let atKey = Array(#""at":""#.utf8)
    static let scheduledKey = Array(#""scheduled_for":""#.utf8)

    static func findString(_ b: [UInt8], _ needle: [UInt8]) -> Int? {
        guard b.count >= needle.count else { return nil }
        var i = 0
        while i <= b.count - needle.count {
            if b[i] == needle[0], b[i..<(i + needle.count)].elementsEqual(needle) { return i + needle.count }
            i += 1
        }
        return nil
    }

    @Test("30,000 seeded mutations give the same events or the same error and index")
    func mutations() {
        var gen = Gen(rng: SplitMix64(seed: 0x3117), oddity: 15)
        let corpus = (0..<200).map { k in gen.appendLine(events: 1 + k % 3) } + FuzzTests.corpus
        var rng = SplitMix64(seed: 0xD1FF)
        var accepted = 0
        var fast = 0
        for i in 0..<30_000 {
            var input = Self.mutate(corpus[i % corpus.count], &rng, corpus: corpus)
            if rng.next() % 4 == 0 { input = Self.mutate(input, &rng, corpus: corpus) }
            let outcome = Self.compare(input)
            if outcome.accepted { accepted += 1 }
            if outcome.fastTook { fast += 1 }
            // The case machine and the facts' encoding too (look-alike labels, long ones).
            input.withUnsafeBytes { FuzzChecks.check($0) }
        }
        // The mutations must reach the events' validation, not only fail at the first byte.
        #expect(accepted > 3_000, "only \(accepted) mutated lines decoded")
        #expect(fast > 2_000, "only \(fast) mutated lines took the fast path")
    }

    @Test func batchLimits() {
        let event = #"{"id":"m","type":"AppointmentMissed","case":"C-1","at":"2023-07-03T14:05:00Z","data":{}}"#
        for count in [0, 1, Event.maxBatch, Event.maxBatch + 1] {
            let line = #"{"op":"append","events":["# + Array(repeating: event, count: count).joined(separator: ",") + "]}"
            let outcome = Self.compare(Array(line.utf8))
            #expect(outcome.accepted == (1...Event.maxBatch).contains(count))
        }
    }

    @Test("an unusual event is decoded by the generic code on its own; the others stay on the fast path")
    func perEventFallback() throws {
        let line = #"{"op":"append","events":[{"id":"a","type":"AppointmentMissed","case":"C-1","at":"2023-07-03T14:05:00Z","data":{}},"#
            + #"{"id":"\u0062","type":"AppointmentMissed","case":"C-1","at":"2023-07-03T14:05:00.25+01:00","expected_version":-0,"data":{}}]}"#
        let events = try #require(Array(line.utf8).withUnsafeBytes { AppendFastPath.decode($0) })
        #expect(events.map(\.id) == ["a", "b"])
        #expect(String(decoding: events[1].canonical, as: UTF8.self)
            == #"{"at":"2023-07-03T13:05:00.25Z","case":"C-1","data":{},"expected_version":0,"id":"b","type":"AppointmentMissed"}"#)
        Self.compare(Array(line.utf8))
    }

    static func decoded(_ line: String) -> Result<[Event], LedgerError> {
        Array(line.utf8).withUnsafeBytes { b in
            Result { () throws(LedgerError) in
                guard case .append(let events) = try Request.decode(b) else { throw LedgerError(.malformed, "not an append") }
                return events
            }
        }
    }

    @Test("spellings of one instant's fraction give one canonical `at`, on both paths")
    func fractionSpellings() throws {
        let spellings = ["14:05:00.5Z", "14:05:00.50Z", "14:05:00.500000000Z", "09:05:00.5-05:00", "14:05:00.500+00:00"]
        var canonical: Set<[UInt8]> = []
        for time in spellings {
            // An event of the fast path's shape, and one that the generic code decodes (an escape).
            for id in ["f1", #"f\u0031"#] {
                let line = #"{"op":"append","events":[{"id":"\#(id)","type":"AppointmentMissed","case":"C-1","at":"2023-07-03T\#(time)","data":{}}]}"#
                Self.compare(Array(line.utf8))
                canonical.insert(try Self.decoded(line).get()[0].canonical)
            }
        }
        #expect(canonical.map { String(decoding: $0, as: UTF8.self) }
            == [#"{"at":"2023-07-03T14:05:00.5Z","case":"C-1","data":{},"id":"f1","type":"AppointmentMissed"}"#])
        for time in ["14:05:00.000Z", "14:05:00.0Z", "09:05:00.00-05:00"] {
            let line = #"{"op":"append","events":[{"id":"f1","type":"AppointmentMissed","case":"C-1","at":"2023-07-03T\#(time)","data":{}}]}"#
            Self.compare(Array(line.utf8))
            #expect(String(decoding: try Self.decoded(line).get()[0].canonical, as: UTF8.self)
                == #"{"at":"2023-07-03T14:05:00Z","case":"C-1","data":{},"id":"f1","type":"AppointmentMissed"}"#)
        }
    }

    @Test("look-alike keys and labels are told apart by their bytes, on both paths")
    func lookAlikeKeysAndLabels() throws {
        let head = #"{"op":"append","events":[{"id":"u1","type":"Referred","case":"C-1","at":"2023-07-03T14:05:00Z","data":"#
        // Two data keys that are canonically equivalent but not the same bytes: unknown fields
        // (invalid_event), not a duplicate key (malformed).
        for keys in [#""\u00e9":1,"e\u0301":2"#, "\"\u{E9}\":1,\"e\u{301}\":2", #""\u212a":1,"K":2"#] {
            let line = head + #"{"referral":"R1","pathway":"USRAP","persons":1,"# + keys + "}}]}"
            Self.compare(Array(line.utf8))
            #expect(throws: LedgerError.self) { try Self.decoded(line).get() }
            if case .failure(let e) = Self.decoded(line) { #expect(e.code == .invalidEvent, "\(e.message)") }
        }
        // Envelope keys likewise: an unknown field, whichever way it is written.
        let envelope = #"{"op":"append","events":[{"id":"u1","type":"AppointmentMissed","case":"C-1","at":"2023-07-03T14:05:00Z","data":{},"\u00e9":1,"e\u0301":2}]}"#
        Self.compare(Array(envelope.utf8))
        if case .failure(let e) = Self.decoded(envelope) { #expect(e.code == .invalidEvent, "\(e.message)") }
        // Labels are kept byte for byte, escaped or not, and their facts are those bytes.
        for (label, bytes) in [(#"e\u0301"#, [0x65, 0xCC, 0x81]), ("e\u{301}", [0x65, 0xCC, 0x81]), (#"\u00e9"#, [0xC3, 0xA9]),
                               ("\u{E9}", [0xC3, 0xA9]), ("\u{212A}", [0xE2, 0x84, 0xAA])] as [(String, [UInt8])] {
            let line = head + #"{"referral":"\#(label)","pathway":"USRAP","persons":1}}]}"#
            Self.compare(Array(line.utf8))
            let e = try Self.decoded(line).get()[0]
            #expect(Array(e.facts.referral.utf8) == bytes)
            #expect(FastDecodeTests.findString(e.canonical, Array(#""referral":""#.utf8)).map { Array(e.canonical[$0..<($0 + bytes.count + 1)]) }
                == bytes + [0x22])
        }
    }

    @Test("the real pilot shape takes the fast path and keeps its canonical bytes")
    func pilotShape() throws {
        let e = #"{"id":"sm-1-0000001","type":"AppointmentRequested","case":"C-0000001","at":"2023-06-12T00:00:10Z","data":{"office_country":"CO","nationality":"VEN","household_size":4,"applicant":"k1:aaaee949ec98d234","channel":"web"}}"#
        let line = Array((#"{"op":"append","events":["# + e + "]}").utf8)
        let events = try #require(line.withUnsafeBytes { AppendFastPath.decode($0) })
        #expect(String(decoding: events[0].canonical, as: UTF8.self)
            == #"{"at":"2023-06-12T00:00:10Z","case":"C-0000001","data":{"applicant":"k1:aaaee949ec98d234","channel":"web","household_size":4,"nationality":"VEN","office_country":"CO"},"id":"sm-1-0000001","type":"AppointmentRequested"}"#)
        Self.compare(line)
    }
}
