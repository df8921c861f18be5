/// The report as one self-contained HTML page: inline CSS and SVG, no script, no external URL.
/// Readable on a laptop and a phone; suppressed cells are shown as such.
public enum ReportHTML {
    public static func render(_ r: Report) -> String {
        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Safe Mobility pilot report</title>
        <style>
        body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
        main{max-width:1100px;margin:0 auto;padding:16px}
        h1{font-size:1.5em;margin:.4em 0}h2{font-size:1.15em;margin:1.4em 0 .5em;border-bottom:2px solid #d7dde4;padding-bottom:.2em}
        .meta{color:#52606d;font-size:.9em;word-break:break-all}.meta code{background:#e9edf1;padding:1px 4px;border-radius:3px}
        .wrap{overflow-x:auto;-webkit-overflow-scrolling:touch}
        table{border-collapse:collapse;background:#fff;margin:.3em 0;font-variant-numeric:tabular-nums}
        th,td{padding:4px 10px;border-bottom:1px solid #e3e7ec;text-align:right;white-space:nowrap}
        th:first-child,td:first-child{text-align:left}th{background:#eef1f4;font-weight:600}
        td.s{color:#8a96a3;font-style:italic}.bar{display:inline-block;height:10px;background:#2f6db5;border-radius:2px;vertical-align:middle}
        .cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;border:1px solid #e3e7ec;border-radius:6px;padding:10px 14px;min-width:140px}
        .card b{display:block;font-size:1.5em}svg{background:#fff;border:1px solid #e3e7ec;border-radius:6px;max-width:100%;height:auto}
        .legend span{display:inline-block;margin-right:14px;font-size:.9em}.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
        footer{color:#52606d;font-size:.85em;margin:2em 0}
        </style></head><body><main>
        <h1>Safe Mobility Offices: pilot report</h1>

        """
        h += "<p class=\"meta\">As of <b>\(esc(r.asOf?.description ?? "all events"))</b>; pilot window \(esc(r.window.start)) to \(esc(r.window.end)) (end exclusive).<br>"
        h += "Computed from log position <code>\(r.position)</code>, head hash <code>\(esc(r.headHash))</code>."
        if r.minCell > 1 { h += "<br>Counts from 1 to \(r.minCell - 1) in the splits are suppressed and shown as <i>suppressed</i>." }
        h += "</p>\n"

        h += "<div class=\"cards\">"
        for (label, value) in [("Registrations (cases)", r.funnel[.requested].cases), ("Interviewed (cases)", r.funnel[.interviewed].cases),
                               ("Referred (persons)", r.funnel[.referred].persons), ("Arrived (persons)", r.funnel[.arrived].persons)] {
            h += "<div class=\"card\">\(esc(label))<b>\(fmt(value))</b></div>"
        }
        h += "</div>\n<h2>Funnel</h2>\n<div class=\"wrap\"><table><tr><th>Stage</th><th>Cases</th><th>Persons</th><th></th></tr>\n"
        let maxCases = Double(max(1, r.funnel[.requested].cases ?? 1))
        for (stage, c) in zip(r.funnel.stages, r.funnel.cells) {
            let width = Int(200 * Double(c.cases ?? 0) / maxCases)
            h += "<tr><td>\(esc(stage.name.replacingAll("_", with: " ")))</td>\(td(c.cases))\(td(c.persons))<td><span class=\"bar\" style=\"width:\(width)px\"></span></td></tr>\n"
        }
        h += "</table></div>\n"

        h += "<h2>Weekly events in the pilot window</h2>\n" + weeklyChart(r)

        h += "<h2>Referrals by pathway</h2>\n" + split(r.byPathway, stages: Stage.referralStages, label: "Pathway")
        if !r.pathwaysByOffice.isEmpty {
            h += "<h2>Persons referred, by pathway and office country</h2>\n" + crossTable(r.pathwaysByOffice)
        }
        let caseStages: [Stage] = [.requested, .eligible, .interviewed, .referred, .approved, .arrived]
        h += "<h2>By office country</h2>\n" + split(r.byOfficeCountry, stages: caseStages, label: "Office")
        h += "<h2>By nationality</h2>\n" + split(r.byNationality, stages: caseStages, label: "Nationality")

        h += "<h2>Durations</h2>\n<div class=\"wrap\"><table><tr><th>Measure</th><th>Count</th><th>Median (days)</th><th>90th percentile (days)</th></tr>\n"
        for (m, d) in zip(Measure.allCases, r.durations) {
            h += "<tr><td>\(esc(m.name.replacingAll("_", with: " ")))</td>\(td(d.count))<td>\(days(d.p50))</td><td>\(days(d.p90))</td></tr>\n"
        }
        h += "</table></div>\n<h2>Cases by current state</h2>\n<div class=\"wrap\"><table><tr><th>State</th><th>Cases</th></tr>\n"
        for (s, n) in zip(CaseStatus.allCases, r.states) { h += "<tr><td>\(esc(s.name))</td>\(td(n))</tr>\n" }
        h += "</table></div>\n"
        h += "<footer>Cases count applications (households); persons count household members, or the persons of each referral for referral stages. Definitions: docs/DOMAIN.md.</footer>\n</main></body></html>\n"
        return h
    }

    static func split(_ splits: [Report.Split], stages: [Stage], label: String) -> String {
        guard !splits.isEmpty else { return "<p>None yet.</p>\n" }
        var h = "<div class=\"wrap\"><table><tr><th>\(label)</th>"
        for s in stages { h += "<th>\(esc(s.name.replacingAll("_", with: " "))) cases</th><th>persons</th>" }
        h += "</tr>\n"
        for split in splits {
            h += "<tr><td>\(esc(split.key))</td>"
            for s in stages { h += td(split.stages[s].cases) + td(split.stages[s].persons) }
            h += "</tr>\n"
        }
        return h + "</table></div>\n"
    }

    /// Rows: pathways; columns: office countries; cells: persons referred (and arrived).
    static func crossTable(_ byOffice: [Report.OfficePathways]) -> String {
        var pathways: [String] = []
        for o in byOffice { for p in o.pathways where !pathways.contains(p.key) { pathways.append(p.key) } }
        pathways.sort()
        var h = "<div class=\"wrap\"><table><tr><th>Pathway</th>"
        for o in byOffice { h += "<th>\(esc(o.office)) referred</th><th>\(esc(o.office)) arrived</th>" }
        h += "</tr>\n"
        for p in pathways {
            h += "<tr><td>\(esc(p))</td>"
            for o in byOffice {
                let stages = o.pathways.first { $0.key == p }?.stages
                h += td(stages.map { $0[.referred].persons } ?? 0) + td(stages.map { $0[.arrived].persons } ?? 0)
            }
            h += "</tr>\n"
        }
        return h + "</table></div>\n"
    }

    static func weeklyChart(_ r: Report) -> String {
        guard !r.weekly.isEmpty else { return "<p>No weeks.</p>\n" }
        let series: [(EventType, String, String)] = [(.appointmentRequested, "Registrations", "#2f6db5"), (.interviewed, "Interviews", "#e08a1e"),
                                                     (.referred, "Referrals", "#2a9d5b"), (.arrived, "Arrivals", "#b53a3a")]
        let values = series.map { s in r.weekly.map { $0.counts[Int(s.0.index)] } }
        let weeks = r.weekly.map(\.week)
        let maxV = Double(max(1, values.flatMap { $0 }.max() ?? 1))
        let w = 760.0, hgt = 260.0, left = 50.0, bottom = 30.0, top = 10.0
        let step = (w - left - 10) / Double(max(1, weeks.count - 1))
        func x(_ i: Int) -> Double { left + Double(i) * step }
        func y(_ v: Int64) -> Double { top + (hgt - top - bottom) * (1 - Double(v) / maxV) }
        var svg = "<svg viewBox=\"0 0 \(Int(w)) \(Int(hgt))\" role=\"img\" aria-label=\"Weekly events\" xmlns=\"http://www.w3.org/2000/svg\">"
        for t in 0...4 {
            let v = Int64(maxV * Double(t) / 4)
            svg += "<line x1=\"\(left)\" x2=\"\(w - 10)\" y1=\"\(r1(y(v)))\" y2=\"\(r1(y(v)))\" stroke=\"#e3e7ec\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(r1(y(v) + 4))\" font-size=\"11\" text-anchor=\"end\" fill=\"#52606d\">\(v)</text>"
        }
        for (i, wk) in weeks.enumerated() where i % 4 == 0 {
            svg += "<text x=\"\(r1(x(i)))\" y=\"\(hgt - 10)\" font-size=\"11\" text-anchor=\"middle\" fill=\"#52606d\">\(esc(String(wk.suffix(3))))</text>"
        }
        for (k, s) in series.enumerated() {
            let pts = values[k].enumerated().map { "\(r1(x($0.offset))),\(r1(y($0.element)))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(s.2)\" stroke-width=\"2\" points=\"\(pts)\"/>"
        }
        svg += "</svg>"
        var legend = "<div class=\"legend\">"
        for s in series { legend += "<span><i style=\"background:\(s.2)\"></i>\(s.1)</span>" }
        return svg + legend + " (ISO weeks \(esc(weeks.first ?? "")) to \(esc(weeks.last ?? "")))</div>\n"
    }

    static func r1(_ v: Double) -> String { String(Double(Int(v * 10)) / 10) }

    static func fmt(_ v: Int64?) -> String {
        guard let n = v else { return "suppressed" }
        var s = String(n)
        var out = ""
        while s.count > 3 { out = "," + s.suffix(3) + out; s = String(s.dropLast(3)) }
        return s + out
    }

    static func td(_ v: Int64?) -> String { v == nil ? "<td class=\"s\">suppressed</td>" : "<td>\(fmt(v))</td>" }

    static func days(_ v: Int64?) -> String {
        guard let n = v else { return "–" }
        return String(Double(Int(Double(n) / 86400 * 10)) / 10)
    }

    static func esc(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
