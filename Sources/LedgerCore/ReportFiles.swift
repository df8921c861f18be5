/// The analysts' files of a dump (CONTRACT §5), rendered from a report: tidy CSV (RFC 4180, `\n`
/// line ends, a header row) and the report itself as canonical JSON.
public enum ReportFiles {
    /// `report.json`, `funnel.csv`, `weekly.csv`, `outside_window.csv`, `durations.csv`, `states.csv`
    /// and, given `pathwaysByOffice`, `pathway_by_office.csv`, with their bytes, in that order.
    /// Suppressed (null) cells are empty in CSV.
    public static func render(_ report: JSONObject, pathwaysByOffice: JSONObject? = nil) -> [(name: String, bytes: [UInt8])] {
        var json = CanonicalJSON.encode(.object(report))
        json.append(0x0A)
        return [
            ("report.json", json),
            ("funnel.csv", funnel(report)),
            ("weekly.csv", weekly(report)),
            ("outside_window.csv", typeCounts(report["outside_window"], header: "type,count")),
            ("durations.csv", durations(report)),
            ("states.csv", states(report)),
        ] + (pathwaysByOffice.map { [("pathway_by_office.csv", officePathway($0))] } ?? [])
    }

    static func officePathway(_ split: JSONObject) -> [UInt8] {
        var out = "office_country,pathway,stage,cases,persons\n"
        for (office, v) in split.members {
            guard case .object(let pathways) = v else { continue }
            for (pathway, w) in pathways.members {
                guard case .object(let stages) = w else { continue }
                for (stage, x) in stages.members {
                    guard case .object(let c) = x else { continue }
                    out += "\(office),\(pathway),\(stage),\(cell(c["cases"])),\(cell(c["persons"]))\n"
                }
            }
        }
        return Array(out.utf8)
    }

    static func cell(_ v: JSONValue?) -> String {
        switch v {
        case .int(let n)?: String(n)
        case .string(let s)?: quote(s)
        default: ""
        }
    }

    static func quote(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingAll("\"", with: "\"\"") + "\""
    }

    static func funnel(_ r: JSONObject) -> [UInt8] {
        var out = "dimension,key,stage,cases,persons\n"
        func rows(_ dimension: String, _ key: String, _ stages: JSONValue?) {
            guard case .object(let o)? = stages else { return }
            for (stage, v) in o.members {
                guard case .object(let c) = v else { continue }
                out += "\(dimension),\(quote(key)),\(stage),\(cell(c["cases"])),\(cell(c["persons"]))\n"
            }
        }
        rows("all", "all", r["funnel"])
        for (dimension, field) in [("office_country", "by_office_country"), ("nationality", "by_nationality"), ("pathway", "by_pathway")] {
            guard case .object(let keys)? = r[field] else { continue }
            for (key, stages) in keys.members { rows(dimension, key, stages) }
        }
        return Array(out.utf8)
    }

    static func weekly(_ r: JSONObject) -> [UInt8] {
        var out = "week,type,count\n"
        guard case .array(let rows)? = r["weekly"] else { return Array(out.utf8) }
        for row in rows {
            guard case .object(let o) = row, case .string(let week)? = o["week"], case .object(let counts)? = o["counts"] else { continue }
            for (type, n) in counts.members { out += "\(week),\(type),\(cell(n))\n" }
        }
        return Array(out.utf8)
    }

    static func typeCounts(_ v: JSONValue?, header: String) -> [UInt8] {
        var out = header + "\n"
        if case .object(let o)? = v { for (k, n) in o.members { out += "\(k),\(cell(n))\n" } }
        return Array(out.utf8)
    }

    static func durations(_ r: JSONObject) -> [UInt8] {
        var out = "measure,count,p50_seconds,p90_seconds\n"
        if case .object(let o)? = r["durations"] {
            for (m, v) in o.members {
                guard case .object(let d) = v else { continue }
                out += "\(m),\(cell(d["count"])),\(cell(d["p50_seconds"])),\(cell(d["p90_seconds"]))\n"
            }
        }
        return Array(out.utf8)
    }

    static func states(_ r: JSONObject) -> [UInt8] {
        Array(typeCounts(r["states"], header: "state,cases"))
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
