import Foundation
import LedgerCore
import Testing

/// The seeded fuzzer that runs in every `scripts/test`: mutations of the checked-in corpus
/// (Tests/FuzzCorpus) through the same checks as the libFuzzer target of `scripts/fuzz`.
@Suite("Seeded fuzzing of the request decoder and the case machine")
struct FuzzTests {
    static var corpus: [[UInt8]] {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()
        url.deleteLastPathComponent()
        let data = FileManager.default.contents(atPath: url.path + "/FuzzCorpus/requests.ndjson") ?? Data()
        return [UInt8](data).split(separator: 0x0A).map(Array.init)
    }

    static let dictionary: [[UInt8]] = [
        "\"", "{", "}", "[", "]", ",", ":", "\\u0000", "\\ud800", "-", "0", "1e308", "99999999999999999999",
        "null", "true", "\"op\"", "\"append\"", "\"events\"", "\"data\"", "\"expected_version\"", "\"at\"",
        "2023-02-29T00:00:00Z", "+14:00", "\u{00}", "\u{FF}", "\u{C3}", "\n", "\"Referred\"", "\"DecisionRecorded\"",
        "\"persons\"", "\"referral\"", "\"hold\"", "\"approved\"",
        // Look-alike text (canonically equivalent, other bytes) and spellings of one fraction.
        "\u{E9}", "e\u{301}", "\u{301}", "\\u00e9", "e\\u0301", "\u{212A}", "\"\u{E9}\":1,\"e\u{301}\":2,", ".50", ".000", "0",
    ].map { Array($0.utf8) }

    static func mutate(_ input: [UInt8], _ rng: inout SplitMix64, corpus: [[UInt8]]) -> [UInt8] {
        var b = input
        for _ in 0..<Int(1 + rng.next() % 4) {
            let at = b.isEmpty ? 0 : Int(rng.next() % UInt64(b.count))
            switch rng.next() % 7 {
            case 0 where !b.isEmpty: b[at] = UInt8(truncatingIfNeeded: rng.next())
            case 1 where !b.isEmpty: b.remove(at: at)
            case 2: b.insert(contentsOf: dictionary[Int(rng.next() % UInt64(dictionary.count))], at: at)
            case 3 where !b.isEmpty:
                let end = min(b.count, at + Int(rng.next() % 16))
                b.removeSubrange(at..<end)
            case 4:
                let other = corpus[Int(rng.next() % UInt64(corpus.count))]
                let cut = other.isEmpty ? 0 : Int(rng.next() % UInt64(other.count))
                b = Array(b[..<at]) + Array(other[cut...])
            case 5 where !b.isEmpty:
                let end = min(b.count, at + Int(rng.next() % 32))
                b.insert(contentsOf: b[at..<end], at: at)
            default:
                // Flip a digit to stress numbers and dates.
                if let d = b.indices.dropFirst(at).first(where: { b[$0] >= 0x30 && b[$0] <= 0x39 }) {
                    b[d] = UInt8(0x30 + rng.next() % 10)
                }
            }
        }
        return b
    }

    @Test func corpusPassesTheChecks() {
        #expect(Self.corpus.count >= 20)
        for line in Self.corpus { line.withUnsafeBytes { FuzzChecks.check($0) } }
    }

    @Test("20,000 mutated inputs keep every property")
    func mutations() {
        let corpus = Self.corpus
        var rng = SplitMix64(seed: 0x5EED)
        var accepted = 0
        for i in 0..<20_000 {
            let input = Self.mutate(corpus[i % corpus.count], &rng, corpus: corpus)
            input.withUnsafeBytes { FuzzChecks.check($0) }
            if (try? input.withUnsafeBytes { try Request.decode($0) }) != nil { accepted += 1 }
            // Our parser never accepts what Foundation's strict parser rejects, numbers beyond a
            // Double aside (RFC 8259 §9 lets a parser limit their range; Foundation does, we keep
            // their text as `.number`).
            if let value = try? JSONParser.parse(input), !Self.hasNumberBeyondDouble(value) {
                #expect((try? JSONSerialization.jsonObject(with: Data(input), options: [.fragmentsAllowed])) != nil,
                        "accepted by ours only: \(String(decoding: input, as: UTF8.self))")
            }
        }
        // The mutations must still reach deep into the decoder, not only fail at the first byte.
        #expect(accepted > 200, "only \(accepted) mutated inputs decoded")
    }

    static func hasNumberBeyondDouble(_ value: JSONValue) -> Bool {
        switch value {
        case .number(let text): Double(text).map { !$0.isFinite } ?? true
        case .array(let items): items.contains(where: hasNumberBeyondDouble)
        case .object(let o): o.members.contains { hasNumberBeyondDouble($0.value) }
        default: false
        }
    }
}
