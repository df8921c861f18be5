/// The properties the request decoder and the case machine must keep for any input line; shared by
/// the libFuzzer target (`scripts/fuzz`) and the seeded fuzzer of the test suite.
public enum FuzzChecks {
    /// Decodes `line` as a request and, for an append, runs its events through a fresh case
    /// machine. Traps (a fuzzer finding) when a property fails:
    /// - decoding never crashes and only yields the contract's error codes;
    /// - an accepted event's canonical form validates again to the same bytes (idempotent);
    /// - the canonical form parses with the same parser to the same value, with keys sorted;
    /// - the append fast path and the generic decoder agree (same events, or the same error code
    ///   and index);
    /// - an event's facts survive their binary encoding;
    /// - the case machine never crashes and rejects only with transition, version or event codes.
    public static func check(_ line: UnsafeRawBufferPointer) {
        let request: Request
        let generic = Result { () throws(LedgerError) in try Request.decodeGeneric(line) }
        do {
            request = try Request.decode(line)
        } catch {
            precondition(ErrorCode.allCases.contains(error.code))
            precondition(!error.message.isEmpty)
            guard case .failure(let g) = generic, g.code == error.code, g.index == error.index else {
                preconditionFailure("the fast path rejected a line the generic decoder handles otherwise: \(error)")
            }
            return
        }
        if case .append(let fast) = request {
            guard case .success(.append(let slow)) = generic, slow.count == fast.count,
                  zip(slow, fast).allSatisfy({ $0.canonical == $1.canonical && $0.facts == $1.facts && $0.id == $1.id })
            else { preconditionFailure("the fast path and the generic decoder decoded an append differently") }
        }
        guard case .append(let events) = request else { return }
        precondition(!events.isEmpty && events.count <= Event.maxBatch)
        var cases: [String: CaseState] = [:]
        var delta = ProjectionDelta()
        for e in events {
            precondition(EventFacts.decode(e.facts.encoded) == e.facts, "facts do not survive their encoding")
            let again: Event
            do { again = try Event.validate(json: e.canonical) } catch {
                preconditionFailure("canonical form of an accepted event was rejected: \(error)")
            }
            precondition(again.canonical == e.canonical, "canonical form is not idempotent")
            do {
                let state = try CaseMachine.apply(e, to: cases[e.caseID], window: .pilot, delta: &delta)
                precondition(CaseState.decode(state.encoded()) == state, "a case state does not survive its encoding")
                cases[e.caseID] = state
            } catch {
                precondition([.invalidTransition, .versionConflict, .invalidEvent].contains(error.code), "\(error)")
            }
        }
    }
}
