/// The analysts' files of a dump (CONTRACT §5), written from a `Report`: tidy CSV (RFC 4180, `\n`
/// line ends, a header row) and the report itself as canonical JSON. A suppressed (nil) cell is
/// empty in CSV and null in JSON.
public enum ReportFiles {
    /// `report.json`, `funnel.csv`, `weekly.csv`, `outside_window.csv`, `durations.csv`, `states.csv`
    /// and `pathway_by_office.csv`, with their bytes, in that order.
    public static func render(_ report: Report) -> [(name: String, bytes: [UInt8])] {
        var json = CanonicalJSON.encode(.object(report.json))
        json.append(0x0A)
        return [
            ("report.json", json),
            ("funnel.csv", funnel(report)),
            ("weekly.csv", weekly(report)),
            ("outside_window.csv", csv("type,count", zip(EventType.ordered, report.outsideWindow).map { [$0.rawValue, cell($1)] })),
            ("durations.csv", csv("measure,count,p50_seconds,p90_seconds", zip(Measure.allCases, report.durations).map {
                [$0.name, cell($1.count), cell($1.p50), cell($1.p90)]
            })),
            ("states.csv", csv("state,cases", zip(CaseStatus.allCases, report.states).map { [$0.name, cell($1)] })),
            ("pathway_by_office.csv", officePathway(report)),
        ]
    }

    static func csv(_ header: String, _ rows: [[String]]) -> [UInt8] {
        var out = header + "\n"
        for row in rows { out += row.joined(separator: ",") + "\n" }
        return Array(out.utf8)
    }

    static func cell(_ v: Int64?) -> String { v.map { String($0) } ?? "" }

    static func quote(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingAll("\"", with: "\"\"") + "\""
    }

    static func rows(_ prefix: [String], _ stages: Report.Stages) -> [[String]] {
        zip(stages.stages, stages.cells).map { prefix + [$0.name, cell($1.cases), cell($1.persons)] }
    }

    static func funnel(_ r: Report) -> [UInt8] {
        var out = rows(["all", "all"], r.funnel)
        for (dimension, splits) in [("office_country", r.byOfficeCountry), ("nationality", r.byNationality), ("pathway", r.byPathway)] {
            for s in splits { out += rows([dimension, quote(s.key)], s.stages) }
        }
        return csv("dimension,key,stage,cases,persons", out)
    }

    static func weekly(_ r: Report) -> [UInt8] {
        csv("week,type,count", r.weekly.flatMap { w in zip(EventType.ordered, w.counts).map { [w.week, $0.rawValue, cell($1)] } })
    }

    static func officePathway(_ r: Report) -> [UInt8] {
        csv("office_country,pathway,stage,cases,persons", r.pathwaysByOffice.flatMap { o in
            o.pathways.flatMap { rows([quote(o.office), quote($0.key)], $0.stages) }
        })
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
