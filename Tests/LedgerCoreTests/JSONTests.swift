import Foundation
import LedgerCore
import Testing

@Suite("JSON parser")
struct JSONParserTests {
    @Test("accepts valid JSON", arguments: [
        (#"{"a":1,"b":[true,false,null],"c":"x"}"#, JSONValue.object(JSONObject([("a", .int(1)), ("b", .array([.bool(true), .bool(false), .null])), ("c", .string("x"))]))),
        (" [ ] ", .array([])),
        (#""\u00e9\ud83d\ude00\n\"""#, .string("é😀\n\"")),
        ("-9223372036854775808", .int(Int64.min)),
        ("9223372036854775807", .int(Int64.max)),
        ("9223372036854775808", .number("9223372036854775808")),
        ("1.5e3", .number("1.5e3")),
        ("0", .int(0)),
        ("-0", .int(0)),
    ])
    func valid(text: String, expected: JSONValue) throws {
        #expect(try JSONParser.parse(text) == expected)
    }

    @Test("rejects invalid JSON", arguments: [
        "", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "01", "1.", "-", ".5", "tru", "nul",
        "\"abc", "\"\\x\"", "\"\\ud800\"", "\"\\udc00x\"", "{\"a\":1,\"a\":2}", "[1] 2", "\"\u{01}\"",
        "{a:1}", "'a'", "NaN", "Infinity",
    ])
    func invalid(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test("keys are compared by their UTF-8 bytes, not by Unicode canonical equivalence")
    func keysCompareByBytes() throws {
        // U+00E9 and "e" + U+0301 are canonically equivalent (Swift's `==` says equal); so are
        // U+212A KELVIN SIGN and "K". Their bytes differ, so they are two keys.
        for text in [#"{"\u00e9":1,"e\u0301":2}"#, "{\"\u{E9}\":1,\"e\u{301}\":2}", #"{"K":1,"\u212a":2}"#] {
            guard case .object(let o) = try JSONParser.parse(text) else { Issue.record("not an object"); continue }
            #expect(o.members.count == 2, "\(text)")
        }
        guard case .object(let o) = try JSONParser.parse(#"{"\u00e9":1,"e\u0301":2}"#) else { return }
        #expect(o["\u{E9}"] == .int(1))
        #expect(o["e\u{301}"] == .int(2))
        guard case .object(let k) = try JSONParser.parse(#"{"K":1}"#) else { return }
        #expect(k["\u{212A}"] == nil)
        // The same bytes, once escaped and once not, are the same key.
        #expect(throws: JSONParseError.self) { try JSONParser.parse("{\"\\u00e9\":1,\"\u{E9}\":2}") }
        // Values compare by bytes too.
        #expect(JSONValue.string("\u{E9}") != .string("e\u{301}"))
        #expect(JSONObject([("\u{E9}", .int(1))]) != JSONObject([("e\u{301}", .int(1))]))
        #expect(JSONValue.object(JSONObject([("e\u{301}", .int(1)), ("\u{E9}", .int(2))])).sortedMembers
            == .object(JSONObject([("e\u{301}", .int(1)), ("\u{E9}", .int(2))])))
    }

    @Test("hasSameBytes equals comparing the UTF-8 bytes, whatever the length and the differing byte")
    func hasSameBytesComparesBytes() {
        for n in 0..<40 {
            let base = String((0..<n).map { Character(UnicodeScalar(UInt8(97 + $0 % 26))) })
            let copy = String(decoding: Array(base.utf8), as: UTF8.self)
            #expect(base.hasSameBytes(as: copy) && copy.hasSameBytes(as: base))
            #expect(!base.hasSameBytes(as: base + "a") && !(base + "a").hasSameBytes(as: base))
            for k in 0..<n {
                var bytes = Array(base.utf8)
                bytes[k] = UInt8(ascii: "A")
                #expect(!base.hasSameBytes(as: String(decoding: bytes, as: UTF8.self)), "n \(n), k \(k)")
            }
        }
        #expect(!"\u{E9}".hasSameBytes(as: "e\u{301}"))
        #expect(!"R\u{301}\u{323}".hasSameBytes(as: "R\u{323}\u{301}"))  // the same length, other order
        #expect("Bogot\u{E1} Norte, sede principal".hasSameBytes(as: String(decoding: Array("Bogot\u{E1} Norte, sede principal".utf8), as: UTF8.self)))
        #expect(Substring("xR1y").dropFirst().dropLast().description.hasSameBytes(as: "R1"))
    }

    @Test func rejectsInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0xFF, 0x22]) }
    }

    @Test func limitsNesting() throws {
        let deep = String(repeating: "[", count: 33) + String(repeating: "]", count: 33)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
        let ok = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        _ = try JSONParser.parse(ok)
        let veryDeep = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(veryDeep) }
    }

    @Test("agrees with Foundation on random documents")
    func agreesWithFoundation() throws {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<300 {
            let value = randomValue(&rng, depth: 0)
            let data = try JSONSerialization.data(withJSONObject: ["v": value], options: [.fragmentsAllowed])
            let ours = try JSONParser.parse([UInt8](data))
            let theirs = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            #expect(ours.sortedMembers == convert(theirs))
        }
    }

    private func randomValue(_ rng: inout SplitMix64, depth: Int) -> Any {
        switch rng.next() % (depth > 3 ? 3 : 5) {
        case 0: return Int(Int64(bitPattern: rng.next()) >> 20)
        case 1: return String((0..<(rng.next() % 12)).map { _ in "aZ é\"\\\n€😀/\u{7f}".randomElement(using: &rng)! })
        case 2: return NSNull()
        case 3: return (0..<(rng.next() % 4)).map { _ in randomValue(&rng, depth: depth + 1) }
        default:
            var d: [String: Any] = [:]
            for k in 0..<(rng.next() % 4) { d["k\(k)\(rng.next() % 9)"] = randomValue(&rng, depth: depth + 1) }
            return d
        }
    }

    private func convert(_ any: Any) -> JSONValue {
        switch any {
        case let d as [String: Any]:
            return .object(JSONObject(d.map { ($0.key, convert($0.value)) }.sorted { $0.0 < $1.0 }))
        case let a as [Any]: return .array(a.map(convert))
        case let s as String: return .string(s)
        case let n as NSNumber: return .int(n.int64Value)
        default: return .null
        }
    }
}


/// A small deterministic generator for property tests.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}

@Suite("Canonical JSON (RFC 8785)")
struct CanonicalJSONTests {
    func canon(_ text: String) throws -> String {
        String(decoding: CanonicalJSON.encode(try JSONParser.parse(text)), as: UTF8.self)
    }

    @Test func sortsKeysAndDropsWhitespace() throws {
        #expect(try canon(#"{ "b": 1, "a": [ 2, {"d":null, "c":true} ] }"#) == #"{"a":[2,{"c":true,"d":null}],"b":1}"#)
    }

    @Test func sortsByUTF16CodeUnits() throws {
        // U+FF61 sorts after U+1F600 in scalars but before it in UTF-16 (0xD83D < 0xFF61).
        #expect(try canon(#"{"｡":1,"😀":2,"a":3}"#) == #"{"a":3,"😀":2,"｡":1}"#)
    }

    @Test func escapesMinimally() throws {
        #expect(try canon(#""\u0041\/\u00e9\u001f\b\t\n\f\r\"\\""#) == #""A/é\u001f\b\t\n\f\r\"\\""#)
    }

    @Test func rfc8785Example() throws {
        // From RFC 8785 §3.2.3, restricted to the integers the ledger stores.
        let input = #"{"numbers":[333333333,4,2,0,-1],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#
        let expected = #"{"literals":[null,true,false],"numbers":[333333333,4,2,0,-1],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        #expect(try canon(input) == expected)
    }

    @Test func writesIntegersAtTheirLimits() {
        var w = CanonicalJSON()
        for n: Int64 in [.min, -1, 0, 7, 10, .max] {
            w.writeInt(n)
            w.raw(",")
        }
        w.writeInt(UInt64.max)
        w.raw(",")
        w.writeInt(Int(-42))
        #expect(String(decoding: w.bytes, as: UTF8.self)
            == "-9223372036854775808,-1,0,7,10,9223372036854775807,18446744073709551615,-42")
    }
}
