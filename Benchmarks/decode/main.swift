// DecodeBench: the CPU cost of `Request.decode` for append lines, in ns per event (with `--generic`,
// of `Request.decodeGeneric`, the JSON parser and validator without the append fast path).
//
// Reads NDJSON envelopes (one per line) on stdin, groups them into append lines of `--batch`
// events, decodes every line `--runs` times and prints the median ns per event. Not a product:
// `swift build -c release --product DecodeBench`, then
// `.build/release/DecodeBench --events 100000 < history.ndjson`.
@_spi(Testing) import LedgerCore

func run() {
    var batch = 1_000
    var maxEvents = 100_000
    var runs = 9
    var generic = false
    var args = CommandLine.arguments.dropFirst()
    while let a = args.popFirst() {
        switch a {
        case "--batch": batch = Int(args.popFirst() ?? "") ?? batch
        case "--events": maxEvents = Int(args.popFirst() ?? "") ?? maxEvents
        case "--runs": runs = Int(args.popFirst() ?? "") ?? runs
        case "--generic": generic = true
        default: fatalError("usage: DecodeBench [--batch N] [--events N] [--runs N] [--generic] < envelopes.ndjson")
        }
    }

    var lines: [[UInt8]] = []
    var current: [UInt8] = []
    var inCurrent = 0
    var total = 0
    var totalBytes = 0
    func flush() {
        guard inCurrent > 0 else { return }
        current.append(contentsOf: "]}".utf8)
        lines.append(current)
        current = []
        inCurrent = 0
    }
    while total < maxEvents, let envelope = readLine(strippingNewline: true) {
        if envelope.isEmpty { continue }
        current.append(contentsOf: (inCurrent == 0 ? "{\"op\":\"append\",\"events\":[" : ",").utf8)
        current.append(contentsOf: envelope.utf8)
        totalBytes += envelope.utf8.count
        inCurrent += 1
        total += 1
        if inCurrent == batch { flush() }
    }
    flush()

    var samples: [Double] = []
    var checksum = 0
    for _ in 0..<runs {
        let start = ContinuousClock.now
        for line in lines {
            let request = line.withUnsafeBytes { buf in Result { () throws(LedgerError) in
                try generic ? Request.decodeGeneric(buf) : Request.decode(buf)
            } }
            switch request {
            case .success(.append(let events)): checksum &+= events.count &+ events[events.count / 2].canonical.count
            case .success: fatalError("not an append")
            case .failure(let e): fatalError("rejected: \(e)")
            }
        }
        let elapsed = ContinuousClock.now - start
        let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        samples.append(ns / Double(total))
    }
    samples.sort()
    let median = samples[samples.count / 2]
    print("events \(total) in \(lines.count) lines of \(batch), \(totalBytes / max(total, 1)) bytes/event avg, \(runs) runs")
    print("ns/event median \(Int(median)) min \(Int(samples.first!)) max \(Int(samples.last!)) (checksum \(checksum))")
}

run()
