import Foundation
import LedgerClient
import LedgerCore
import LedgerTestSupport
import Testing

/// The HTML report rendered by a real headless browser (Debian's chromium, installed by
/// scripts/test). Screenshots are kept in .build/test-artifacts/.
@Suite("The HTML report in headless Chromium", .serialized,
       .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")))
struct HTMLReportTests {
    @Test func rendersWithoutErrorsOnLaptopAndPhone() throws {
        let dir = TemporaryDirectory()
        let root = Executables.packageRoot
        let file = dir.file("pilot.ndjson")
        #expect(try run("/usr/bin/python3", [root + "/scripts/generate-pilot-data", "--seed", "2", "--cases", "3000", "--out", file]).status == 0)
        let data = dir.file("data"), sock = dir.file("s.sock")
        let d = try DaemonProcess(dataDir: data, socketPath: sock)
        #expect(try run(Executables.path("ledgerctl"), ["import", file, "--socket", sock]).status == 0)
        #expect(d.stop() == 0)
        let out = dir.file("dump")
        #expect(try run(Executables.path("ledgerctl"), ["dump", "--data-dir", data, "--out", out, "--html", "--min-cell", "5", "--as-of", "2023-12-15"]).status == 0)
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        // Self-contained: no external resource of any kind.
        for needle in ["src=", "href=", "url(", "@import", "<script", "<link"] {
            #expect(!html.contains(needle), "the page refers to something outside itself: \(needle)")
        }
        let artifacts = root + "/.build/test-artifacts"
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        let profile = dir.file("chromium-profile")
        let common = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                      "--user-data-dir=\(profile)", "--enable-logging=stderr", "--v=0"]
        for (name, size) in [("report-laptop.png", "1366,2400"), ("report-phone.png", "390,2400")] {
            let png = artifacts + "/" + name
            try? FileManager.default.removeItem(atPath: png)
            let shot = try run("/usr/bin/chromium", common + ["--window-size=\(size)", "--screenshot=\(png)", "file://\(out)/report.html"], timeout: 120)
            #expect(shot.status == 0, "\(shot.stderr.suffix(2000))")
            let bytes = try #require(FileManager.default.contents(atPath: png))
            #expect(bytes.count > 20_000)
            #expect(Array(bytes.prefix(4)) == [0x89, 0x50, 0x4E, 0x47])  // PNG
            // Console errors of the page (not Chromium's own dbus noise) would show as CONSOLE lines.
            #expect(!shot.stderr.contains("CONSOLE"), "\(shot.stderr)")
            print("HTML report screenshot: \(png) (\(bytes.count) bytes)")
        }
        // The rendered DOM holds the figures.
        let dom = try run("/usr/bin/chromium", common + ["--dump-dom", "file://\(out)/report.html"], timeout: 120)
        #expect(dom.status == 0)
        #expect(dom.stdout.contains("Funnel"))
        #expect(dom.stdout.contains("<svg"))
        #expect(dom.stdout.contains("Persons referred, by pathway and office country"))
        #expect(dom.stdout.contains("suppressed"))
        guard case .object(let manifest) = try JSONParser.parse([UInt8](try #require(FileManager.default.contents(atPath: out + "/manifest.json")))),
              case .string(let hash)? = manifest["head_hash"] else { Issue.record("no manifest"); return }
        #expect(dom.stdout.contains(hash))
    }
}
