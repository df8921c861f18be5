// AppendBench: the writer's CPU cost per event, without the socket: `Ledger.append` in groups, in
// process, on a new ledger in a temporary directory. Not a product:
// `swift build -c release --product AppendBench`, then
// `.build/release/AppendBench --events 1000000 --group 8000 < history.ndjson` (prints ns per event
// for the whole append, and the time in checkpoints). Under `valgrind --tool=callgrind` the counts
// are stable on a noisy machine.
import Foundation
import LedgerCore
import LedgerStore

func run() throws {
    var group = 8_000
    var request = 1_000
    var maxEvents = 1_000_000
    var args = CommandLine.arguments.dropFirst()
    while let a = args.popFirst() {
        switch a {
        case "--group": group = Int(args.popFirst() ?? "") ?? group
        case "--request": request = Int(args.popFirst() ?? "") ?? request
        case "--events": maxEvents = Int(args.popFirst() ?? "") ?? maxEvents
        default: fatalError("usage: AppendBench [--group N] [--request N] [--events N] < envelopes.ndjson")
        }
    }
    var events: [Event] = []
    while events.count < maxEvents, let line = readLine(strippingNewline: true) {
        if line.isEmpty { continue }
        events.append(try Event.validate(json: Array(line.utf8)))
    }
    let dir = NSTemporaryDirectory() + "append-bench-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var options = Ledger.Options()
    options.create = true
    let ledger = try Ledger(directory: dir, options: options)
    var appendNanos: UInt64 = 0
    var checkpointNanos: UInt64 = 0
    var i = 0
    while i < events.count {
        var requests: [[Event]] = []
        var n = 0
        while n < group && i < events.count {
            let k = min(request, events.count - i)
            requests.append(Array(events[i..<(i + k)]))
            i += k
            n += k
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        for r in ledger.append(requests) { _ = try r.get() }
        let t1 = DispatchTime.now().uptimeNanoseconds
        if ledger.checkpointDue { try ledger.checkpoint() }
        appendNanos += t1 - t0
        checkpointNanos += DispatchTime.now().uptimeNanoseconds - t1
    }
    print("AppendBench: \(events.count) events, append \(appendNanos / UInt64(events.count)) ns/event, checkpoints \(checkpointNanos / 1_000_000) ms")
}

do { try run() } catch { print("AppendBench: \(error)"); exit(1) }
