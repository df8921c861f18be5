import Crypto
import Foundation
public import LedgerCore

/// Writes a report's files into a directory with a manifest that traces them to the log.
public enum Dump {
    /// Writes `report` (already cut and suppressed as wanted) as the files of `ReportFiles`, plus
    /// `report.html` when `html`, and `manifest.json` with the report's position, head hash,
    /// `as_of`, `min_cell` and the SHA-256 of every file. Each file is written to a temporary name
    /// and renamed, so a reader never sees half a file.
    /// - Returns: the names written, manifest last.
    /// - Throws: `StoreError` naming the file that could not be written.
    @discardableResult
    public static func write(_ report: JSONObject, pathwaysByOffice: JSONObject? = nil, to directory: String, minCell: Int,
                             html: Bool, generator: String) throws -> [String] {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError("cannot create the output directory \(directory): \(error.localizedDescription)")
        }
        var files = ReportFiles.render(report, pathwaysByOffice: pathwaysByOffice)
        if html {
            files.append(("report.html", Array(ReportHTML.render(report, pathwaysByOffice: pathwaysByOffice, minCell: minCell).utf8)))
        }
        var hashes: [(key: String, value: JSONValue)] = []
        for f in files {
            try save(f.bytes, directory + "/" + f.name)
            hashes.append((f.name, .string(Hex.string(Array(SHA256.hash(data: f.bytes))))))
        }
        let manifest = JSONObject([
            ("position", report["position"] ?? .null),
            ("head_hash", report["head_hash"] ?? .null),
            ("as_of", report["as_of"] ?? .null),
            ("window", report["window"] ?? .null),
            ("min_cell", minCell > 1 ? .int(Int64(minCell)) : .null),
            ("generated_by", .string(generator)),
            ("generated_at", .string(Timestamp.now().description)),
            ("files", .object(JSONObject(hashes))),
        ])
        var bytes = CanonicalJSON.encode(.object(manifest))
        bytes.append(0x0A)
        try save(bytes, directory + "/manifest.json")
        return files.map(\.name) + ["manifest.json"]
    }

    static func save(_ bytes: [UInt8], _ path: String) throws {
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else {
            throw StoreError("cannot write \(tmp)")
        }
        guard rename(tmp, path) == 0 else {
            throw StoreError("cannot rename \(tmp) to \(path)")
        }
    }
}
