/// The properties the request decoder and the case machine must keep for any input line; shared by
/// the libFuzzer target (`scripts/fuzz`) and the seeded fuzzer of the test suite.
public enum FuzzChecks {
    /// Decodes `line` as a request and, for an append, runs its events through a fresh case
    /// machine. Traps (a fuzzer finding) when a property fails:
    /// - decoding never crashes and only yields the contract's error codes;
    /// - an accepted event's canonical form validates again to the same bytes (idempotent);
    /// - the canonical form parses with the same parser to the same value, with keys sorted;
    /// - the case machine never crashes and rejects only with transition, version or event codes.
    public static func check(_ line: UnsafeRawBufferPointer) {
        let request: Request
        do {
            request = try Request.decode(line)
        } catch {
            precondition(ErrorCode.allCases.contains(error.code))
            precondition(!error.message.isEmpty)
            return
        }
        guard case .append(let events) = request else { return }
        precondition(!events.isEmpty && events.count <= Event.maxBatch)
        var cases: [String: CaseState] = [:]
        var delta = ProjectionDelta()
        for e in events {
            let again: Event
            do { again = try Event.validate(json: e.canonical) } catch {
                preconditionFailure("canonical form of an accepted event was rejected: \(error)")
            }
            precondition(again.canonical == e.canonical, "canonical form is not idempotent")
            do {
                cases[e.caseID] = try CaseMachine.apply(e, to: cases[e.caseID], window: .pilot, delta: &delta)
            } catch {
                precondition([.invalidTransition, .versionConflict, .invalidEvent].contains(error.code), "\(error)")
            }
        }
    }
}
