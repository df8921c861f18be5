import LedgerCore

/// libFuzzer entry point: one request line. Built only by `scripts/fuzz`
/// (`swift build -sanitize=fuzzer --product FuzzLedger`); see docs/DURABILITY.md.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    FuzzChecks.check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

#if !FUZZING
import Foundation

/// Without libFuzzer (a normal build): replays the lines of the files given as arguments through
/// the same checks, so a corpus or a crash input can be run under a debugger.
@main
struct CorpusReplayer {
    static func main() {
        var lines = 0
        for path in CommandLine.arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("FuzzLedger: cannot read \(path)\n".utf8))
                exit(2)
            }
            for line in [UInt8](data).split(separator: 0x0A, omittingEmptySubsequences: false) {
                Array(line).withUnsafeBytes { FuzzChecks.check($0) }
                lines += 1
            }
        }
        print("FuzzLedger: \(lines) inputs checked")
    }
}
#endif
