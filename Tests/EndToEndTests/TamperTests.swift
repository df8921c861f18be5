import Foundation
import LedgerClient
import LedgerCore
import LedgerTestSupport
import LMDBKit
import Testing

@Suite("ledgerctl verify on a tampered data directory", .serialized)
struct TamperTests {
    @Test func corruptedEventFailsVerifyNamingThePosition() throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data"), sock = dir.file("s.sock")
        let daemon = try DaemonProcess(dataDir: data, socketPath: sock)
        let client = try LedgerClient(path: sock)
        let events = (0..<50).map { TestEvents.json(id: "t\($0)", caseID: "C-t\($0)") }
        _ = try client.request(#"{"op":"append","events":["# + events.joined(separator: ",") + "]}")
        #expect(daemon.stop() == 0)
        #expect(try run(Executables.path("ledgerctl"), ["verify", "--data-dir", data]).status == 0)

        // Change one stored byte of event 17 (VEN -> VEM) behind the ledger's back.
        do {
            let env = try Environment(path: data)
            let db = try env.openDatabase("events", create: false)
            try env.write { txn throws in
                var v = try #require(try txn.get(db, key: 17))
                let k = try #require(v.indices.first { v[$0] == UInt8(ascii: "V") && v[$0 + 1] == UInt8(ascii: "E") && v[$0 + 2] == UInt8(ascii: "N") })
                v[k + 2] = UInt8(ascii: "M")
                try txn.put(db, key: 17, value: v)
            }
        }
        let verify = try run(Executables.path("ledgerctl"), ["verify", "--data-dir", data])
        #expect(verify.status == 1)
        #expect(verify.stdout.contains("FAILED at position 17"), "\(verify.stdout)")
    }
}
