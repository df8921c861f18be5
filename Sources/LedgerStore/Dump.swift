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
    public static func write(_ report: Report, to directory: String, html: Bool, generator: String) throws -> [String] {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError(.io, "cannot create the output directory \(directory): \(error.localizedDescription)")
        }
        var files = ReportFiles.render(report)
        if html { files.append(("report.html", Array(ReportHTML.render(report).utf8))) }
        var hashes: [(key: String, value: JSONValue)] = []
        for f in files {
            try save(f.bytes, directory + "/" + f.name)
            hashes.append((f.name, .string(Hex.string(Array(SHA256.hash(data: f.bytes))))))
        }
        let json = report.json
        let manifest = JSONObject([
            ("position", json["position"] ?? .null),
            ("head_hash", json["head_hash"] ?? .null),
            ("as_of", json["as_of"] ?? .null),
            ("window", json["window"] ?? .null),
            ("min_cell", report.minCell > 1 ? .int(Int64(report.minCell)) : .null),
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
            throw StoreError(.io, "cannot write \(tmp)")
        }
        guard rename(tmp, path) == 0 else {
            throw StoreError(.io, "cannot rename \(tmp) to \(path)")
        }
    }
}
