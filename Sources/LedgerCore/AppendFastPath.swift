/// The fast path of `Request.decode` for the common shape of an append request:
/// `{"op":"append","events":[E1,...]}`, read straight from the line's bytes.
///
/// Guarantees: when it returns events, they are exactly what the generic decoder (`JSONParser`,
/// `Event.validate`, `CanonicalJSON`) returns for the same line, canonical bytes included. It
/// returns nil for anything it does not prove valid, every error included; the caller must then
/// run the generic decoder, which stays the reference and names the error.
///
/// Within an event it handles strings without escapes, integers without sign, fraction or
/// exponent, and members in any order. An `at` with a fraction or an offset is written again from
/// the parsed `Timestamp`, as the generic code writes it (UTC, the fraction without trailing
/// zeros). An event that holds anything else (an escape, a number such as `-0`, a non-ASCII
/// code...) is parsed and validated by the generic code on its own, so one unusual event does not
/// send the whole request back. Around the events, only `{"op":"append","events":[...]}` in that
/// key order is taken (white space allowed).
@_spi(Testing) public enum AppendFastPath {
    @_spi(Testing) public static func decode(_ line: UnsafeRawBufferPointer) -> [Event]? {
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
        let scratch = EventScratch()
        while true {
            guard s.peek() == UInt8(ascii: "{"), events.count < Event.maxBatch else { return nil }
            let start = s.i
            if let event = fastEvent(&s, scratch, tables) {
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
    private static func fastEvent(_ s: inout ByteScanner, _ scratch: EventScratch, _ t: FastTables) -> Event? {
        let eventStart = s.i
        s.i += 1
        var seen: UInt8 = 0
        var id = Span.none, typeName = Span.none, caseID = Span.none, at = Span.none, version = Span.none
        var expectedVersion: Int64?
        var memberCount = 0
        var itemCount = 0
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
                guard first == UInt8(ascii: "{"), scanData(&s, scratch, t, &memberCount, &itemCount) else { return nil }
            } else {
                guard first == UInt8(ascii: "\""), let v = s.scanString(), v.printable else { return nil }
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

        // The envelope's fields, as `Event.validate` checks them (all printable ASCII here).
        guard id.count >= 1, id.count <= 128, caseID.count >= 1, caseID.count <= 64,
              let typeIndex = t.typeNames.find(s, typeName)
        else { return nil }
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

        // `data` for the type, as `EventSchema.validate` checks it; `code` is set to the code's index.
        let spec = t.specs[typeIndex]
        var present: UInt32 = 0
        for k in 0..<memberCount {
            let m = scratch.members + k
            let field = spec.fields[m.pointee.key]
            present |= 1 << UInt32(m.pointee.key)
            switch field.kind {
            case .absent:
                return nil
            case .integer:
                guard m.pointee.kind == .int, m.pointee.int >= field.low, m.pointee.int <= field.high else { return nil }
            case .codeList:
                guard m.pointee.kind == .array else { return nil }
                var mask: UInt32 = 0
                for j in 0..<m.pointee.itemCount {
                    let item = scratch.items + (m.pointee.itemStart + j)
                    guard item.pointee.printable, let code = field.codes.find(s, item.pointee) else { return nil }
                    guard mask & (1 << UInt32(code)) == 0 else { return nil }
                    mask |= 1 << UInt32(code)
                    item.pointee.code = code
                }
            case .code:
                guard m.pointee.kind == .string, m.pointee.span.printable, let code = field.codes.find(s, m.pointee.span)
                else { return nil }
                m.pointee.span.code = code
            case .alpha3:
                guard m.pointee.kind == .string, m.pointee.span.count == 3 else { return nil }
                for j in 0..<3 {
                    let c = s.byte(m.pointee.span.start + j)
                    guard c >= 0x41 && c <= 0x5A else { return nil }
                }
            case .label:
                guard m.pointee.kind == .string else { return nil }
                if m.pointee.span.printable {
                    // One byte per scalar.
                    guard m.pointee.span.count >= 1, m.pointee.span.count <= field.max else { return nil }
                } else {
                    // Non-ASCII (or DEL): the generic rule on the String, after the parser's UTF-8 check.
                    guard let text = s.validString(m.pointee.span), EventSchema.isLabel(text, max: field.max) else { return nil }
                }
            case .pseudonym:
                guard m.pointee.kind == .string, m.pointee.span.printable, m.pointee.span.count >= 1,
                      m.pointee.span.count <= 128
                else { return nil }
            case .time:
                guard m.pointee.kind == .string, m.pointee.span.printable else { return nil }
                if s.simpleTime(m.pointee.span) == nil {
                    guard Timestamp(rfc3339: s.string(m.pointee.span)) != nil else { return nil }
                }
            }
        }
        guard present & spec.required == spec.required else { return nil }

        // What the case machine reads (`EventFacts`), straight from the members: code indexes are
        // indexes into the `Codes` lists, which `EventSchema` names in the same order.
        let type = t.types[typeIndex]
        let caseString = s.string(caseID)
        let idString = s.string(id)
        var facts = EventFacts(type: type, caseID: caseString, at: atTime.instant, expectedVersion: expectedVersion ?? -1)
        facts.id = idString
        for k in 0..<memberCount {
            let m = scratch.members[k]
            switch t.factRoles[m.key] {
            case .householdSize: facts.householdSize = UInt8(clamping: m.int)
            case .persons: facts.persons = UInt8(clamping: m.int)
            case .office: facts.office = UInt8(m.span.code)
            case .pathway: facts.pathway = UInt8(m.span.code)
            case .decision: facts.code = UInt8(m.span.code)
            case .result: facts.code = spec.fields[m.key].codes.strings[m.span.code] == "eligible" ? 1 : 0
            case .nationality:
                facts.nationality = UInt32(s.byte(m.span.start)) << 16 | UInt32(s.byte(m.span.start + 1)) << 8
                    | UInt32(s.byte(m.span.start + 2))
            case .referral: facts.referral = m.span.printable ? s.string(m.span) : s.validString(m.span)!
            case .none: break
            }
        }

        // The canonical form: every string is copied as written (no escapes, so it is already in
        // JCS form), `data`'s members in key order; only `at` may need writing again.
        scratch.reserveBytes(eventEnd - eventStart)
        let canonical: [UInt8]
        do {
            var w = SliceWriter(out: UnsafeMutableBufferPointer(start: scratch.bytes, count: eventEnd - eventStart), source: s.p)
            w.raw("{\"at\":")
            if atIsNormal {
                w.quoted(at)
            } else {
                var text: [UInt8] = []
                text.reserveCapacity(32)
                atTime.write(into: &text)
                w.byte(UInt8(ascii: "\""))
                text.withUnsafeBytes { w.copy($0.baseAddress!, $0.count) }
                w.byte(UInt8(ascii: "\""))
            }
            w.raw(",\"case\":")
            w.quoted(caseID)
            w.raw(",\"data\":{")
            // Keys are numbered in JCS order and each is present once: walk the bits of `present`.
            for k in 0..<memberCount { scratch.slots[scratch.members[k].key] = k }
            var rest = present
            var first = true
            while rest != 0 {
                let key = rest.trailingZeroBitCount
                rest &= rest &- 1
                let m = scratch.members[scratch.slots[key]]
                if !first { w.byte(UInt8(ascii: ",")) }
                first = false
                w.key(t.keyNames, key)
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
            // Copied out at its exact size (this way of making an Array is also the cheapest).
            canonical = Array(UnsafeBufferPointer(start: scratch.bytes, count: w.count))
        }
        return Event(at: atTime, canonical: canonical, facts: facts)
    }

    /// `data` from its `{`, into `scratch`; false when not of the simple shape.
    private static func scanData(_ s: inout ByteScanner, _ scratch: EventScratch, _ t: FastTables,
                                 _ memberCount: inout Int, _ itemCount: inout Int) -> Bool {
        s.i += 1
        if s.peek() == UInt8(ascii: "}") { s.i += 1; return true }
        var seen: UInt32 = 0
        while true {
            guard s.peek() == UInt8(ascii: "\""), let keySpan = s.scanString(), let key = t.keyNames.find(s, keySpan),
                  seen & (1 << UInt32(key)) == 0, s.peek() == UInt8(ascii: ":"), memberCount < EventScratch.maxMembers
            else { return false }
            seen |= 1 << UInt32(key)
            s.i += 1
            switch s.peek() {
            case UInt8(ascii: "\""):
                guard let v = s.scanString() else { return false }
                scratch.members[memberCount] = DataMember(key: key, kind: .string, span: v)
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                guard let (n, span) = s.scanUnsigned() else { return false }
                var m = DataMember(key: key, kind: .int, span: span)
                m.int = n
                scratch.members[memberCount] = m
            case UInt8(ascii: "["):
                s.i += 1
                var m = DataMember(key: key, kind: .array, span: .none)
                m.itemStart = itemCount
                if s.peek() == UInt8(ascii: "]") {
                    s.i += 1
                } else {
                    while true {
                        guard s.peek() == UInt8(ascii: "\""), let item = s.scanString(), itemCount < EventScratch.maxItems
                        else { return false }
                        scratch.items[itemCount] = item
                        itemCount += 1
                        m.itemCount += 1
                        let next = s.peek()
                        s.i += 1
                        if next == UInt8(ascii: ",") { continue }
                        if next == UInt8(ascii: "]") { break }
                        return false
                    }
                }
                scratch.members[memberCount] = m
            default:
                return false
            }
            memberCount += 1
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
    /// Every byte is printable ASCII (0x20 to 0x7E).
    var printable: Bool
    /// For a code: its index in the field's code list, once checked.
    var code = 0
    var count: Int { end - start }
    static let none = Span(start: 0, end: 0, printable: true)

    init(start: Int, end: Int, printable: Bool) {
        self.start = start
        self.end = end
        self.printable = printable
    }
}

struct DataMember {
    enum Kind { case string, int, array }
    var key: Int
    var kind: Kind
    var span: Span
    var int: Int64 = 0
    var itemStart = 0
    var itemCount = 0

    init(key: Int, kind: Kind, span: Span) {
        self.key = key
        self.kind = kind
        self.span = span
    }
}

/// Buffers for one event's `data` and canonical form, allocated once per request. More members
/// or list items than these limits cannot be valid (duplicates or unknown fields), so the fast
/// path gives up there.
final class EventScratch {
    static let maxMembers = 8
    static let maxItems = 16
    let members = UnsafeMutablePointer<DataMember>.allocate(capacity: maxMembers)
    let items = UnsafeMutablePointer<Span>.allocate(capacity: maxItems)
    /// By data key number: the member's index (for writing members in key order).
    let slots = UnsafeMutablePointer<Int>.allocate(capacity: 32)
    private(set) var bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: 1024)
    private var byteCapacity = 1024

    func reserveBytes(_ count: Int) {
        guard count > byteCapacity else { return }
        bytes.deallocate()
        byteCapacity = max(count, byteCapacity * 2)
        bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: byteCapacity)
    }

    deinit {
        members.deallocate()
        items.deallocate()
        slots.deallocate()
        bytes.deallocate()
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
        var printable = true
        // Eight bytes at a time: find the first byte that is a quote, a backslash, below 0x20,
        // 0x7F or 0x80 and up. Each test flags the first such byte exactly (a borrow only runs
        // upwards from a flagged byte), so the lowest flag is that byte.
        while k + 8 <= n {
            let w = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: k, as: UInt64.self))
            let ones: UInt64 = 0x0101_0101_0101_0101
            let quote = w ^ (ones &* 0x22)
            let slash = w ^ (ones &* 0x5C)
            let del = w ^ (ones &* 0x7F)
            let special = ((quote &- ones) & ~quote) | ((slash &- ones) & ~slash) | ((del &- ones) & ~del)
                | (w &- ones &* 0x20) | w
            let flags = special & (ones &* 0x80)
            if flags != 0 {
                k += flags.trailingZeroBitCount >> 3
                break
            }
            k += 8
        }
        while k < n {
            let c = byte(k)
            if c == UInt8(ascii: "\"") {
                i = k + 1
                return Span(start: start, end: k, printable: printable)
            }
            if c == UInt8(ascii: "\\") || c < 0x20 { return nil }
            if c >= 0x7F { printable = false }
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
        return (v, Span(start: start, end: k, printable: true))
    }

    @inline(__always) func equals(_ span: Span, _ word: StaticString) -> Bool {
        span.count == word.utf8CodeUnitCount && same(span.start, word.utf8Start, span.count)
    }

    /// Whether the `count` bytes at `at` equal those at `other`.
    @inline(__always) func same(_ at: Int, _ other: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        let q = UnsafeRawPointer(other)
        @inline(__always) func word(_ k: Int) -> Bool {
            p.loadUnaligned(fromByteOffset: at + k, as: UInt64.self) == q.loadUnaligned(fromByteOffset: k, as: UInt64.self)
        }
        @inline(__always) func half(_ k: Int) -> Bool {
            p.loadUnaligned(fromByteOffset: at + k, as: UInt32.self) == q.loadUnaligned(fromByteOffset: k, as: UInt32.self)
        }
        // Whole words, then the last word again (overlapping): no byte loop, no read outside either.
        if count >= 8 {
            var k = 0
            while k + 8 < count {
                if !word(k) { return false }
                k += 8
            }
            return word(count - 8)
        }
        if count >= 4 { return half(0) && half(count - 4) }
        for k in 0..<count where byte(at + k) != other[k] { return false }
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
        let to = UnsafeMutableRawPointer(out.baseAddress! + count)
        // Short copies (most of them) as two overlapping loads and stores rather than a call to memcpy.
        if n >= 8 && n <= 16 {
            let head = from.loadUnaligned(as: UInt64.self)
            let tail = from.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
            to.storeBytes(of: head, as: UInt64.self)
            to.storeBytes(of: tail, toByteOffset: n - 8, as: UInt64.self)
        } else if n >= 4 && n < 8 {
            let head = from.loadUnaligned(as: UInt32.self)
            let tail = from.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
            to.storeBytes(of: head, as: UInt32.self)
            to.storeBytes(of: tail, toByteOffset: n - 4, as: UInt32.self)
        } else if n < 4 {
            for k in 0..<n { to.storeBytes(of: from.load(fromByteOffset: k, as: UInt8.self), toByteOffset: k, as: UInt8.self) }
        } else {
            to.copyMemory(from: from, byteCount: n)
        }
        count += n
    }

    @inline(__always) mutating func byte(_ b: UInt8) {
        precondition(count < out.count, "canonical form longer than the event")
        out[count] = b
        count += 1
    }

    @inline(__always) mutating func raw(_ s: StaticString) { copy(s.utf8Start, s.utf8CodeUnitCount) }

    /// `"key":` for data key number `key`.
    @inline(__always) mutating func key(_ names: NameList, _ key: Int) {
        byte(UInt8(ascii: "\""))
        copy(names.bytes + names.offsets[key], names.offsets[key + 1] - names.offsets[key])
        byte(UInt8(ascii: "\""))
        byte(UInt8(ascii: ":"))
    }

    /// The span's bytes as they are.
    @inline(__always) mutating func plain(_ span: Span) { copy(source + span.start, span.count) }

    /// A string span with its quotes.
    @inline(__always) mutating func quoted(_ span: Span) { copy(source + span.start - 1, span.count + 2) }
}

/// Names packed in one block of bytes, found by comparing bytes, with each name as a String.
///
/// `@unchecked Sendable`: built once per process for `FastTables`; its memory is never written
/// again nor freed.
struct NameList: @unchecked Sendable {
    let bytes: UnsafePointer<UInt8>
    /// `count + 1` offsets: name `k` is `bytes[offsets[k]..<offsets[k + 1]]`.
    let offsets: UnsafePointer<Int>
    let strings: UnsafePointer<String>
    let count: Int

    static let empty = NameList([])

    init(_ names: [String]) {
        let all = names.flatMap { Array($0.utf8) }
        var offsets = [0]
        for name in names { offsets.append(offsets.last! + name.utf8.count) }
        bytes = leak(all.isEmpty ? [0] : all)
        self.offsets = leak(offsets)
        strings = leak(names)
        count = names.count
    }

    /// The index of the name equal to the span's bytes.
    @inline(__always) func find(_ s: ByteScanner, _ span: Span) -> Int? {
        for k in 0..<count {
            let from = offsets[k]
            if offsets[k + 1] - from == span.count && s.same(span.start, bytes + from, span.count) { return k }
        }
        return nil
    }
}

/// A copy of `values` in memory that is never freed (for tables built once per process).
private func leak<T>(_ values: [T]) -> UnsafePointer<T> {
    let p = UnsafeMutablePointer<T>.allocate(capacity: max(values.count, 1))
    p.initialize(from: values, count: values.count)
    return UnsafePointer(p)
}

/// The schema of `EventSchema.fields(of:)` indexed for byte lookups, in plain memory so that
/// reading it costs no reference counting.
///
/// `@unchecked Sendable`: the memory behind the pointers is written once, while `shared` is
/// initialised, and never written or freed afterwards.
struct FastTables: @unchecked Sendable {
    static let shared = FastTables()

    struct Field {
        enum Kind: UInt8 { case absent, code, alpha3, integer, label, pseudonym, time, codeList }
        var kind = Kind.absent
        var low: Int64 = 0
        var high: Int64 = 0
        var max = 0
        var codes = NameList.empty
    }

    struct TypeSpec {
        /// By data key number; `.absent` when the type has no such field.
        let fields: UnsafePointer<Field>
        let required: UInt32
    }

    let types: UnsafePointer<EventType>
    let typeNames: NameList
    /// Every `data` key of every type, sorted as RFC 8785 sorts them (ASCII: by bytes), so a key's
    /// number is its rank.
    let keyNames: NameList
    /// By key number: which `EventFacts` field the key fills (`FactRole`).
    let factRoles: UnsafePointer<FactRole>
    let specs: UnsafePointer<TypeSpec>

    enum FactRole: UInt8 {
        case none, householdSize, persons, office, pathway, decision, result, nationality, referral
    }

    private init() {
        let allTypes = EventType.allCases
        types = leak(Array(allTypes))
        typeNames = NameList(allTypes.map(\.rawValue))
        var names: [String] = []
        for type in allTypes {
            for f in EventSchema.fields(of: type) where !names.contains(f.name) { names.append(f.name) }
        }
        names.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        precondition(names.count <= 32 && names.allSatisfy { $0.utf8.allSatisfy { $0 < 0x80 } })
        keyNames = NameList(names)
        factRoles = leak(names.map { name -> FactRole in
            switch name {
            case "household_size": .householdSize
            case "persons": .persons
            case "office_country": .office
            case "pathway": .pathway
            case "decision": .decision
            case "result": .result
            case "nationality": .nationality
            case "referral": .referral
            default: .none
            }
        })
        specs = leak(allTypes.map { type in
            var fields = [Field](repeating: Field(), count: names.count)
            var required: UInt32 = 0
            for f in EventSchema.fields(of: type) {
                let key = names.firstIndex(of: f.name)!
                var field = Field()
                switch f.kind {
                case .code(let list):
                    field.kind = .code
                    field.codes = NameList(list)
                case .codeList(let list):
                    precondition(list.count <= 32)
                    field.kind = .codeList
                    field.codes = NameList(list)
                case .alpha3: field.kind = .alpha3
                case .integer(let range):
                    field.kind = .integer
                    field.low = range.lowerBound
                    field.high = range.upperBound
                case .label(let max):
                    field.kind = .label
                    field.max = max
                case .pseudonym: field.kind = .pseudonym
                case .time: field.kind = .time
                }
                fields[key] = field
                if f.required { required |= 1 << UInt32(key) }
            }
            return TypeSpec(fields: leak(fields), required: required)
        })
    }
}
