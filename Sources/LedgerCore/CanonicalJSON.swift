/// Writes JSON in the canonical form of RFC 8785 (JCS): object keys sorted by their UTF-16 code
/// units, no white space, strings with the minimal escapes of ECMAScript's `JSON.stringify`.
///
/// Numbers: the ledger only stores integers (`.int`), which JCS writes in plain decimal. A `.number`
/// (fraction, exponent or beyond Int64) has no canonical form here: the caller must reject it first;
/// `write` traps on one to make such a bug loud.
public struct CanonicalJSON {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    /// The canonical bytes of `value`.
    public static func encode(_ value: JSONValue) -> [UInt8] {
        var w = CanonicalJSON()
        w.write(value)
        return w.bytes
    }

    public mutating func write(_ value: JSONValue) {
        switch value {
        case .null: raw("null")
        case .bool(let b): raw(b ? "true" : "false")
        case .int(let n): writeInt(n)
        case .number(let text): preconditionFailure("non-integer number \(text) has no canonical form in the ledger")
        case .string(let s): writeString(s)
        case .array(let items):
            bytes.append(UInt8(ascii: "["))
            for (k, item) in items.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                write(item)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let object):
            bytes.append(UInt8(ascii: "{"))
            for (k, m) in CanonicalJSON.sortedMembers(object).enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                writeString(m.key)
                bytes.append(UInt8(ascii: ":"))
                write(m.value)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// Members sorted by key as RFC 8785 requires (UTF-16 code units, not scalars or bytes).
    public static func sortedMembers(_ object: JSONObject) -> [(key: String, value: JSONValue)] {
        object.members.sorted { a, b in keyPrecedes(a.key, b.key) }
    }

    /// RFC 8785 key order. For ASCII keys (all of the ledger's) UTF-8 bytes sort as UTF-16 code
    /// units do, and comparing bytes is much cheaper.
    @inline(__always)
    static func keyPrecedes(_ a: String, _ b: String) -> Bool {
        if a.utf8.allSatisfy({ $0 < 0x80 }) && b.utf8.allSatisfy({ $0 < 0x80 }) {
            return a.utf8.lexicographicallyPrecedes(b.utf8)
        }
        return a.utf16.lexicographicallyPrecedes(b.utf16)
    }

    public mutating func raw(_ s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    public mutating func raw(_ s: [UInt8]) { bytes.append(contentsOf: s) }

    public mutating func writeKey(_ s: StaticString) {
        bytes.append(UInt8(ascii: "\""))
        raw(s)
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    public mutating func writeInt(_ n: Int64) {
        if n < 0 {
            bytes.append(UInt8(ascii: "-"))
            CanonicalJSON.appendDecimal(UInt64(0) &- UInt64(bitPattern: n), to: &bytes)
        } else {
            CanonicalJSON.appendDecimal(UInt64(n), to: &bytes)
        }
    }

    public mutating func writeInt(_ n: Int) { writeInt(Int64(n)) }

    public mutating func writeInt(_ n: UInt64) { CanonicalJSON.appendDecimal(n, to: &bytes) }

    /// Appends `v` in decimal, without a String or an array in between.
    public static func appendDecimal(_ v: UInt64, to out: inout [UInt8]) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // up to 20 digits, least significant first
        var n = 0
        var x = v
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[n] = UInt8(48 + x % 10)
                x /= 10
                n += 1
            } while x > 0
            while n > 0 {
                n -= 1
                out.append(d[n])
            }
        }
    }

    /// A time as a JSON string in the ledger's normal form.
    public mutating func writeTime(_ t: Timestamp) {
        bytes.append(UInt8(ascii: "\""))
        t.write(into: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func writeString(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        // Fast path: nothing to escape (the common case) is copied in one go.
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) {
            bytes.append(contentsOf: s.utf8)
            bytes.append(UInt8(ascii: "\""))
            return
        }
        for b in s.utf8 {
            switch b {
            case 0x22: bytes.append(0x5C); bytes.append(0x22)
            case 0x5C: bytes.append(0x5C); bytes.append(0x5C)
            case 0x08: bytes.append(0x5C); bytes.append(UInt8(ascii: "b"))
            case 0x09: bytes.append(0x5C); bytes.append(UInt8(ascii: "t"))
            case 0x0A: bytes.append(0x5C); bytes.append(UInt8(ascii: "n"))
            case 0x0C: bytes.append(0x5C); bytes.append(UInt8(ascii: "f"))
            case 0x0D: bytes.append(0x5C); bytes.append(UInt8(ascii: "r"))
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0xF)]])
            default: bytes.append(b)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
