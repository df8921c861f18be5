/// The fast path of `Request.decode` for the common shape of an append request:
/// `{"op":"append","events":[E1,...]}`, read straight from the line's bytes.
///
/// Guarantees: when it returns events, they are exactly what the generic decoder (`JSONParser`,
/// `Event.validate`, `CanonicalJSON`) returns for the same line, canonical bytes included. It
/// returns nil for anything it does not prove valid, every error included; the caller must then
/// run the generic decoder, which stays the reference and names the error.
///
/// Within an event it handles strings without escapes, integers without sign, fraction or
/// exponent, and members in any order. An event that holds anything else (an escape, a number
/// such as `-0`, a time with a fraction, a non-ASCII code...) is parsed and validated by the
/// generic code on its own, so one unusual event does not send the whole request back. Around the
/// events, only `{"op":"append","events":[...]}` in that key order is taken (white space allowed).
enum AppendFastPath {
    static func decode(_ line: UnsafeRawBufferPointer) -> [Event]? {
        guard let base = line.baseAddress else { return nil }
        let tables = FastTables.shared
        var s = ByteScanner(p: base, n: line.count)
        guard s.peek() == UInt8(ascii: "{"), s.advance(), s.peek() == UInt8(ascii: "\""),
              let op = s.scanString(), s.equals(op, "op"),
              s.peek() == UInt8(ascii: ":"), s.advance(), s.peek() == UInt8(ascii: "\""),
              let append = s.scanString(), s.equals(append, "append"),
              s.peek() == UInt8(ascii: ","), s.advance(), s.peek() == UInt8(ascii: "\""),
              let eventsKey = s.scanString(), s.equals(eventsKey, "events"),
              s.peek() == UInt8(ascii: ":"), s.advance(), s.peek() == UInt8(ascii: "[")
        else { return nil }
        s.i += 1
        var events: [Event] = []
        events.reserveCapacity(min(Event.maxBatch, line.count / 100 + 1))
        var scratch = EventScratch()
        while true {
            guard s.peek() == UInt8(ascii: "{"), events.count < Event.maxBatch else { return nil }
            let start = s.i
            if let event = fastEvent(&s, &scratch, tables) {
                events.append(event)
            } else {
                // The reference code for this one event; an error sends the whole line back, so
                // that errors keep the generic decoder's precedence (syntax first, then events in order).
                guard let (value, end) = try? JSONParser.parseValue(line, at: start, depth: 2),
                      let event = try? Event.validate(value)
                else { return nil }
                s.i = end
                events.append(event)
            }
            let next = s.peek()
            s.i += 1
            if next == UInt8(ascii: ",") { continue }
            if next == UInt8(ascii: "]") { break }
            return nil
        }
        guard s.peek() == UInt8(ascii: "}") else { return nil }
        s.i += 1
        guard s.peek() == 0, s.i == s.n else { return nil }
        return events
    }

    /// One event from its `{`; nil when it is not of the simple shape or not valid.
    private static func fastEvent(_ s: inout ByteScanner, _ scratch: inout EventScratch, _ t: FastTables) -> Event? {
        let eventStart = s.i
        s.i += 1
        var seen: UInt8 = 0
        var id = Span.none, typeName = Span.none, caseID = Span.none, at = Span.none, version = Span.none
        var expectedVersion: Int64?
        scratch.members.removeAll(keepingCapacity: true)
        scratch.items.removeAll(keepingCapacity: true)
        if s.peek() == UInt8(ascii: "}") { return nil }
        while true {
            guard s.peek() == UInt8(ascii: "\""), let key = s.scanString(), s.peek() == UInt8(ascii: ":") else { return nil }
            s.i += 1
            let field: UInt8
            switch key.count {
            case 2 where s.equals(key, "id"): field = 1
            case 2 where s.equals(key, "at"): field = 2
            case 4 where s.equals(key, "type"): field = 4
            case 4 where s.equals(key, "case"): field = 8
            case 4 where s.equals(key, "data"): field = 16
            case 16 where s.equals(key, "expected_version"): field = 32
            default: return nil
            }
            guard seen & field == 0 else { return nil }
            seen |= field
            let first = s.peek()
            if field == 32 {
                guard let (n, span) = s.scanUnsigned() else { return nil }
                expectedVersion = n
                version = span
            } else if field == 16 {
                guard first == UInt8(ascii: "{"), scanData(&s, &scratch, t) else { return nil }
            } else {
                guard first == UInt8(ascii: "\""), let v = s.scanString(), v.ascii else { return nil }
                switch field {
                case 1: id = v
                case 2: at = v
                case 4: typeName = v
                default: caseID = v
                }
            }
            let next = s.peek()
            s.i += 1
            if next == UInt8(ascii: ",") { continue }
            if next == UInt8(ascii: "}") { break }
            return nil
        }
        guard seen | 32 == 63 else { return nil }
        let eventEnd = s.i

        // The envelope's fields, as `Event.validate` checks them.
        guard s.isPrintable(id, max: 128), s.isPrintable(caseID, max: 64),
              let typeIndex = t.typeIndex(s, typeName)
        else { return nil }
        let type = t.types[typeIndex]
        let atTime: Timestamp
        let atIsNormal: Bool
        if let seconds = s.simpleTime(at) {
            atTime = Timestamp(seconds: seconds)
            atIsNormal = at.count == 20 && s.byte(at.start + 10) == UInt8(ascii: "T") && s.byte(at.start + 19) == UInt8(ascii: "Z")
        } else {
            guard let parsed = Timestamp(rfc3339: s.string(at)) else { return nil }
            atTime = parsed
            atIsNormal = false
        }

        // `data` for the type, as `EventSchema.validate` checks it.
        let spec = t.specs[typeIndex]
        var present: UInt32 = 0
        for m in scratch.members {
            guard let field = spec.fields[m.key] else { return nil }
            present |= 1 << UInt32(m.key)
            switch field.kind {
            case .integer(let range):
                guard m.kind == .int, range.contains(m.int) else { return nil }
            case .codeList:
                guard m.kind == .array else { return nil }
                var mask: UInt32 = 0
                for k in 0..<m.itemCount {
                    let item = scratch.items[m.itemStart + k]
                    guard let code = field.code(s, item) else { return nil }
                    guard mask & (1 << UInt32(code)) == 0 else { return nil }
                    mask |= 1 << UInt32(code)
                }
            case .code:
                guard m.kind == .string, m.span.ascii, field.code(s, m.span) != nil else { return nil }
            case .alpha3:
                guard m.kind == .string, m.span.count == 3 else { return nil }
                for k in 0..<3 {
                    let c = s.byte(m.span.start + k)
                    guard c >= 0x41 && c <= 0x5A else { return nil }
                }
            case .label(let max):
                guard m.kind == .string else { return nil }
                if m.span.ascii {
                    guard s.isPrintable(m.span, max: max) else { return nil }
                } else {
                    guard let text = s.validString(m.span), EventSchema.isLabel(text, max: max) else { return nil }
                }
            case .pseudonym:
                guard m.kind == .string, s.isPrintable(m.span, max: 128) else { return nil }
            case .time:
                guard m.kind == .string, m.span.ascii else { return nil }
                if s.simpleTime(m.span) == nil {
                    guard Timestamp(rfc3339: s.string(m.span)) != nil else { return nil }
                }
            }
        }
        guard present & spec.required == spec.required else { return nil }

        // The values, in the order written (as the generic parser keeps them).
        var members: [(key: String, value: JSONValue)] = []
        members.reserveCapacity(scratch.members.count)
        for m in scratch.members {
            let field = spec.fields[m.key]!
            let value: JSONValue
            switch field.kind {
            case .integer: value = .int(m.int)
            case .codeList:
                var list: [JSONValue] = []
                list.reserveCapacity(m.itemCount)
                for k in 0..<m.itemCount {
                    list.append(.string(field.codes[field.code(s, scratch.items[m.itemStart + k])!]))
                }
                value = .array(list)
            case .code: value = .string(field.codes[field.code(s, m.span)!])
            case .label:
                value = .string(m.span.ascii ? s.string(m.span) : s.validString(m.span)!)
            case .alpha3, .pseudonym, .time: value = .string(s.string(m.span))
            }
            members.append((t.keyNames[m.key], value))
        }

        // The canonical form: every string is copied as written (no escapes, so it is already in
        // JCS form), members in key order; only `at` may need writing again.
        let canonical = [UInt8](unsafeUninitializedCapacity: eventEnd - eventStart) { buffer, count in
            var w = SliceWriter(out: buffer, source: s.p)
            w.raw("{\"at\":")
            if atIsNormal {
                w.quoted(at)
            } else {
                var text: [UInt8] = []
                text.reserveCapacity(32)
                atTime.write(into: &text)
                w.byte(UInt8(ascii: "\""))
                w.bytes(text)
                w.byte(UInt8(ascii: "\""))
            }
            w.raw(",\"case\":")
            w.quoted(caseID)
            w.raw(",\"data\":{")
            scratch.order.removeAll(keepingCapacity: true)
            for k in scratch.members.indices { scratch.order.append(k) }
            // Keys are numbered in JCS order; a handful of members, so insertion sort.
            for a in scratch.order.indices.dropFirst() {
                var b = a
                while b > 0, scratch.members[scratch.order[b - 1]].key > scratch.members[scratch.order[b]].key {
                    scratch.order.swapAt(b - 1, b)
                    b -= 1
                }
            }
            for (n, k) in scratch.order.enumerated() {
                let m = scratch.members[k]
                if n > 0 { w.byte(UInt8(ascii: ",")) }
                w.byte(UInt8(ascii: "\""))
                w.bytes(t.keyBytes[m.key])
                w.raw("\":")
                switch m.kind {
                case .int: w.plain(m.span)
                case .string: w.quoted(m.span)
                case .array:
                    w.byte(UInt8(ascii: "["))
                    for j in 0..<m.itemCount {
                        if j > 0 { w.byte(UInt8(ascii: ",")) }
                        w.quoted(scratch.items[m.itemStart + j])
                    }
                    w.byte(UInt8(ascii: "]"))
                }
            }
            w.byte(UInt8(ascii: "}"))
            if expectedVersion != nil {
                w.raw(",\"expected_version\":")
                w.plain(version)
            }
            w.raw(",\"id\":")
            w.quoted(id)
            w.raw(",\"type\":")
            w.quoted(typeName)
            w.byte(UInt8(ascii: "}"))
            count = w.count
        }
        return Event(id: s.string(id), type: type, caseID: s.string(caseID), at: atTime,
                     expectedVersion: expectedVersion, data: JSONObject(members), canonical: canonical)
    }

    /// `data` from its `{`, into `scratch`; false when not of the simple shape.
    private static func scanData(_ s: inout ByteScanner, _ scratch: inout EventScratch, _ t: FastTables) -> Bool {
        s.i += 1
        if s.peek() == UInt8(ascii: "}") { s.i += 1; return true }
        var seen: UInt32 = 0
        while true {
            guard s.peek() == UInt8(ascii: "\""), let keySpan = s.scanString(), let key = t.dataKey(s, keySpan),
                  seen & (1 << UInt32(key)) == 0, s.peek() == UInt8(ascii: ":")
            else { return false }
            seen |= 1 << UInt32(key)
            s.i += 1
            switch s.peek() {
            case UInt8(ascii: "\""):
                guard let v = s.scanString() else { return false }
                scratch.members.append(DataMember(key: key, kind: .string, span: v))
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                guard let (n, span) = s.scanUnsigned() else { return false }
                var m = DataMember(key: key, kind: .int, span: span)
                m.int = n
                scratch.members.append(m)
            case UInt8(ascii: "["):
                s.i += 1
                var m = DataMember(key: key, kind: .array, span: .none)
                m.itemStart = scratch.items.count
                if s.peek() == UInt8(ascii: "]") {
                    s.i += 1
                } else {
                    while true {
                        guard s.peek() == UInt8(ascii: "\""), let item = s.scanString(), item.ascii else { return false }
                        scratch.items.append(item)
                        m.itemCount += 1
                        let next = s.peek()
                        s.i += 1
                        if next == UInt8(ascii: ",") { continue }
                        if next == UInt8(ascii: "]") { break }
                        return false
                    }
                }
                scratch.members.append(m)
            default:
                return false
            }
            let next = s.peek()
            s.i += 1
            if next == UInt8(ascii: ",") { continue }
            if next == UInt8(ascii: "}") { return true }
            return false
        }
    }
}

/// A string's content (between its quotes) or a number's digits, as byte offsets into the line.
struct Span {
    var start: Int
    var end: Int
    var ascii: Bool
    var count: Int { end - start }
    static let none = Span(start: 0, end: 0, ascii: true)
}

struct DataMember {
    enum Kind { case string, int, array }
    var key: Int
    var kind: Kind
    var span: Span
    var int: Int64 = 0
    var itemStart = 0
    var itemCount = 0
}

/// Buffers reused from one event to the next of a request.
struct EventScratch {
    var members: [DataMember] = []
    var items: [Span] = []
    var order: [Int] = []
    init() {
        members.reserveCapacity(8)
        items.reserveCapacity(8)
        order.reserveCapacity(8)
    }
}

/// Reads a line's bytes without bounds checks per byte: every read is behind `i < n`.
struct ByteScanner {
    let p: UnsafeRawPointer
    let n: Int
    var i = 0

    init(p: UnsafeRawPointer, n: Int) {
        self.p = p
        self.n = n
    }

    @inline(__always) func byte(_ k: Int) -> UInt8 { p.load(fromByteOffset: k, as: UInt8.self) }

    /// Skips JSON white space; the byte there, or 0 at the end (a raw 0 is never valid there either).
    @inline(__always) mutating func peek() -> UInt8 {
        while i < n {
            let c = byte(i)
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { return c }
        }
        return 0
    }

    @inline(__always) mutating func advance() -> Bool {
        i += 1
        return true
    }

    /// At a `"`: a string without escapes or control characters, and past its closing quote.
    /// Nil otherwise (the generic parser then decides). Non-ASCII bytes are not checked here.
    @inline(__always) mutating func scanString() -> Span? {
        let start = i + 1
        var k = start
        var high: UInt8 = 0
        // Eight bytes at a time while they are plain ASCII: no quote, backslash, control or high bit.
        while k + 8 <= n {
            let w = p.loadUnaligned(fromByteOffset: k, as: UInt64.self)
            let ones: UInt64 = 0x0101_0101_0101_0101
            let highs: UInt64 = 0x8080_8080_8080_8080
            let quote = w ^ (ones &* 0x22)
            let slash = w ^ (ones &* 0x5C)
            // A byte is flagged when it is zero in `quote` or `slash`, below 0x20, or 0x80 and up.
            let special = ((quote &- ones) & ~quote) | ((slash &- ones) & ~slash) | (w &- ones &* 0x20) | w
            if special & highs != 0 { break }
            k += 8
        }
        while k < n {
            let c = byte(k)
            if c == UInt8(ascii: "\"") {
                i = k + 1
                return Span(start: start, end: k, ascii: high < 0x80)
            }
            if c == UInt8(ascii: "\\") || c < 0x20 { return nil }
            high |= c
            k += 1
        }
        return nil
    }

    /// At a digit: an integer of at most 18 digits without leading zero, sign, fraction or exponent.
    @inline(__always) mutating func scanUnsigned() -> (Int64, Span)? {
        let start = i
        var k = i
        var v: Int64 = 0
        while k < n {
            let c = byte(k)
            guard c >= 0x30 && c <= 0x39 else { break }
            v = v &* 10 &+ Int64(c &- 0x30)
            k += 1
        }
        let count = k - start
        guard count >= 1, count <= 18, count == 1 || byte(start) != UInt8(ascii: "0") else { return nil }
        if k < n {
            let c = byte(k)
            if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { return nil }
        }
        i = k
        return (v, Span(start: start, end: k, ascii: true))
    }

    @inline(__always) func equals(_ span: Span, _ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard span.count == count else { return false }
        let w = word.utf8Start
        for k in 0..<count where byte(span.start + k) != w[k] { return false }
        return true
    }

    @inline(__always) func equals(_ span: Span, _ word: [UInt8]) -> Bool {
        guard span.count == word.count else { return false }
        for k in 0..<word.count where byte(span.start + k) != word[k] { return false }
        return true
    }

    /// `Event.isPrintableASCII` on the bytes.
    @inline(__always) func isPrintable(_ span: Span, max: Int) -> Bool {
        guard span.count >= 1, span.count <= max else { return false }
        for k in span.start..<span.end {
            let c = byte(k)
            guard c >= 0x20 && c <= 0x7E else { return false }
        }
        return true
    }

    /// The span as a String; for ASCII spans only.
    func string(_ span: Span) -> String {
        String(decoding: UnsafeRawBufferPointer(start: p + span.start, count: span.count), as: UTF8.self)
    }

    /// The span as a String when it is valid UTF-8 (what the generic parser requires).
    func validString(_ span: Span) -> String? {
        String(validating: UnsafeRawBufferPointer(start: p + span.start, count: span.count), as: UTF8.self)
    }

    /// The instant of `YYYY-MM-DDTHH:MM:SS` followed by `Z` or `±HH:MM` (`t`, `z` allowed), checked as
    /// `Timestamp(rfc3339:)` checks it. Nil for any other text, valid or not (fractions, errors).
    func simpleTime(_ span: Span) -> Int64? {
        guard span.count == 20 || span.count == 25 else { return nil }
        let b = span.start
        @inline(__always) func digits(_ at: Int, _ count: Int) -> Int? {
            var v = 0
            for k in at..<(at + count) {
                let c = byte(b + k)
                guard c >= 0x30 && c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            return v
        }
        let t = byte(b + 10)
        guard let year = digits(0, 4), byte(b + 4) == UInt8(ascii: "-"), let month = digits(5, 2),
              byte(b + 7) == UInt8(ascii: "-"), let day = digits(8, 2), t == UInt8(ascii: "T") || t == UInt8(ascii: "t"),
              let hour = digits(11, 2), byte(b + 13) == UInt8(ascii: ":"), let minute = digits(14, 2),
              byte(b + 16) == UInt8(ascii: ":"), let second = digits(17, 2)
        else { return nil }
        guard month >= 1, month <= 12, day >= 1, day <= Timestamp.daysInMonth(year: year, month: month),
              hour <= 23, minute <= 59, second <= 59
        else { return nil }
        var offset = 0
        let z = byte(b + 19)
        if span.count == 20 {
            guard z == UInt8(ascii: "Z") || z == UInt8(ascii: "z") else { return nil }
        } else {
            guard z == UInt8(ascii: "+") || z == UInt8(ascii: "-"), let oh = digits(20, 2),
                  byte(b + 22) == UInt8(ascii: ":"), let om = digits(23, 2), oh <= 23, om <= 59
            else { return nil }
            offset = (z == UInt8(ascii: "-") ? -1 : 1) * (oh * 3600 + om * 60)
        }
        let days = Timestamp.daysFromCivil(year: year, month: month, day: day)
        let secs = Int64(days) * 86400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offset)
        guard secs >= Timestamp.minSeconds, secs <= Timestamp.maxSeconds else { return nil }
        return secs
    }
}

/// Writes the canonical form into a buffer sized to the event's bytes, which bound it: every part
/// is copied from the event without white space, and the normal `at` is never longer than written.
struct SliceWriter {
    let out: UnsafeMutableBufferPointer<UInt8>
    let source: UnsafeRawPointer
    var count = 0

    init(out: UnsafeMutableBufferPointer<UInt8>, source: UnsafeRawPointer) {
        self.out = out
        self.source = source
    }

    @inline(__always) mutating func copy(_ from: UnsafeRawPointer, _ n: Int) {
        precondition(count + n <= out.count, "canonical form longer than the event")
        UnsafeMutableRawPointer(out.baseAddress! + count).copyMemory(from: from, byteCount: n)
        count += n
    }

    @inline(__always) mutating func byte(_ b: UInt8) {
        precondition(count < out.count, "canonical form longer than the event")
        out[count] = b
        count += 1
    }

    @inline(__always) mutating func raw(_ s: StaticString) { copy(s.utf8Start, s.utf8CodeUnitCount) }

    @inline(__always) mutating func bytes(_ b: [UInt8]) { b.withUnsafeBytes { copy($0.baseAddress!, $0.count) } }

    /// The span's bytes as they are.
    @inline(__always) mutating func plain(_ span: Span) { copy(source + span.start, span.count) }

    /// A string span with its quotes.
    @inline(__always) mutating func quoted(_ span: Span) { copy(source + span.start - 1, span.count + 2) }
}

/// The schema of `EventSchema.fields(of:)` indexed for byte lookups.
final class FastTables: Sendable {
    static let shared = FastTables()

    struct FieldInfo: Sendable {
        let kind: EventSchema.Kind
        let codes: [String]
        let codeBytes: [[UInt8]]

        /// The index of the span's text in the field's code list.
        @inline(__always) func code(_ s: ByteScanner, _ span: Span) -> Int? {
            for (k, c) in codeBytes.enumerated() where s.equals(span, c) { return k }
            return nil
        }
    }

    struct TypeSpec: Sendable {
        /// By data key number: the field, if the type has it.
        let fields: [FieldInfo?]
        let required: UInt32
    }

    let types: [EventType]
    let typeNames: [[UInt8]]
    /// Every `data` key of every type, sorted as RFC 8785 sorts them (ASCII: by bytes).
    let keyNames: [String]
    let keyBytes: [[UInt8]]
    let specs: [TypeSpec]

    private init() {
        types = EventType.allCases
        typeNames = types.map { Array($0.rawValue.utf8) }
        var names: [String] = []
        for type in types {
            for f in EventSchema.fields(of: type) where !names.contains(f.name) { names.append(f.name) }
        }
        names.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        precondition(names.count <= 32 && names.allSatisfy { $0.utf8.allSatisfy { $0 < 0x80 } })
        keyNames = names
        keyBytes = names.map { Array($0.utf8) }
        specs = types.map { type in
            var fields = [FieldInfo?](repeating: nil, count: names.count)
            var required: UInt32 = 0
            for f in EventSchema.fields(of: type) {
                let key = names.firstIndex(of: f.name)!
                let codes: [String]
                switch f.kind {
                case .code(let list), .codeList(let list): codes = list
                default: codes = []
                }
                precondition(codes.count <= 32)
                fields[key] = FieldInfo(kind: f.kind, codes: codes, codeBytes: codes.map { Array($0.utf8) })
                if f.required { required |= 1 << UInt32(key) }
            }
            return TypeSpec(fields: fields, required: required)
        }
    }

    @inline(__always) func typeIndex(_ s: ByteScanner, _ span: Span) -> Int? {
        for (k, name) in typeNames.enumerated() where s.equals(span, name) { return k }
        return nil
    }

    @inline(__always) func dataKey(_ s: ByteScanner, _ span: Span) -> Int? {
        for (k, name) in keyBytes.enumerated() where s.equals(span, name) { return k }
        return nil
    }
}
