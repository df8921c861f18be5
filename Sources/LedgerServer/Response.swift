public import LedgerCore
public import LedgerStore

/// Response lines of the socket protocol, each ending in a newline.
public enum Response {
    /// `{"ok":false,"error":{"code":…,"message":…,"index":…}}`
    public static func error(_ e: LedgerError) -> [UInt8] {
        var w = CanonicalJSON()
        w.raw("{\"ok\":false,\"error\":{\"code\":")
        w.writeString(e.code.rawValue)
        if let index = e.index { w.raw(",\"index\":"); w.writeInt(index) }
        w.raw(",\"message\":")
        w.writeString(e.message)
        w.raw("}}\n")
        return w.bytes
    }

    /// `{"ok":true,"results":[{"position":…,"duplicate":…}, …]}`
    public static func appended(_ results: [AppendResult]) -> [UInt8] {
        var w = CanonicalJSON(capacity: 32 + results.count * 40)
        w.raw("{\"ok\":true,\"results\":[")
        for (k, r) in results.enumerated() {
            if k > 0 { w.raw(",") }
            w.raw("{\"position\":")
            w.writeInt(r.position)
            w.raw(r.duplicate ? ",\"duplicate\":true}" : ",\"duplicate\":false}")
        }
        w.raw("]}\n")
        return w.bytes
    }

    /// `{"ok":true,"events":[R, …]}`
    public static func events(_ events: [StoredEvent]) -> [UInt8] {
        var w = CanonicalJSON(capacity: 32 + events.reduce(0) { $0 + $1.canonical.count + 80 })
        w.raw("{\"ok\":true,\"events\":")
        writeRecords(events, &w)
        w.raw("}\n")
        return w.bytes
    }

    /// `[R, …]`
    static func writeRecords(_ events: [StoredEvent], _ w: inout CanonicalJSON) {
        w.raw("[")
        for (k, e) in events.enumerated() {
            if k > 0 { w.raw(",") }
            w.raw(e.record)
        }
        w.raw("]")
    }

    /// `{"ok":true,"state":…,"version":N,"referrals":[…],"events":[R, …]}`; state `new` for a case
    /// with no events.
    public static func caseHistory(state: CaseState?, events: [StoredEvent]) -> [UInt8] {
        var w = CanonicalJSON(capacity: 64 + events.reduce(0) { $0 + $1.canonical.count + 80 })
        w.raw("{\"ok\":true,\"state\":")
        w.writeString(state?.status.name ?? "new")
        w.raw(",\"version\":")
        w.writeInt(state?.version ?? 0)
        w.raw(",\"referrals\":")
        w.write(.array((state?.referrals ?? []).map { r in
            .object(JSONObject([("referral", .string(r.id)), ("pathway", .string(r.pathwayName)),
                                ("persons", .int(Int64(r.persons))), ("state", .string(r.status.name))]))
        }))
        w.raw(",\"events\":")
        writeRecords(events, &w)
        w.raw("}\n")
        return w.bytes
    }

    /// `{"event":R}` for a subscription.
    public static func subscribed(_ event: StoredEvent) -> [UInt8] {
        var w = CanonicalJSON(capacity: event.canonical.count + 96)
        w.raw("{\"event\":")
        w.raw(event.record)
        w.raw("}\n")
        return w.bytes
    }

    /// `{"ok":true, …fields}` from a JSON object.
    public static func ok(_ fields: JSONObject) -> [UInt8] {
        var object = fields
        object.members.insert(("ok", .bool(true)), at: 0)
        var w = CanonicalJSON()
        w.write(.object(object))
        w.raw("\n")
        return w.bytes
    }
}
