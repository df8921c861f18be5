/// The case lifecycle of CONTRACT §3: which event is allowed in which state, what state follows,
/// and what the event adds to the report's projections.
///
/// `apply` is the one place both the inline projections and every replay go through, so a replay
/// always gives the same report as ingestion.
public enum CaseMachine {
    /// Applies `event` to the case's state (nil for a case with no events yet).
    /// - Parameters:
    ///   - delta: receives the event's effect on the projections.
    /// - Returns: the case's new state.
    /// - Throws: `LedgerError` with `version_conflict`, `invalid_transition` or `invalid_event`
    ///   (a value that is out of range only given the case, such as `persons` over the household).
    public static func apply(_ event: Event, to before: CaseState?, window: ReportWindow,
                             delta: inout ProjectionDelta) throws(LedgerError) -> CaseState {
        let version = before?.version ?? 0
        if let expected = event.expectedVersion, UInt64(expected) != version {
            throw LedgerError(.versionConflict, "case \(event.caseID) has \(version) events, the event expected \(expected); read the case and retry")
        }
        var s: CaseState
        if let before {
            guard event.type != .appointmentRequested else {
                throw LedgerError(.invalidTransition, "case \(event.caseID) already exists (it is `\(before.status.name)`); AppointmentRequested starts a new case")
            }
            guard event.at >= before.lastAt else {
                throw LedgerError(.invalidTransition, "case \(event.caseID)'s previous event is at \(before.lastAt); \(event.type.rawValue) at \(event.at) may not be earlier")
            }
            s = before
        } else {
            guard event.type == .appointmentRequested else {
                throw LedgerError(.invalidTransition, "case \(event.caseID) does not exist; its first event must be AppointmentRequested, not \(event.type.rawValue)")
            }
            s = CaseState(status: .requested, version: 0, lastAt: event.at,
                          householdSize: UInt8(event.data.int("household_size") ?? 1),
                          officeCountry: event.data.string("office_country") ?? "",
                          nationality: event.data.string("nationality") ?? "",
                          requestedAt: event.at, firstInterviewAt: nil, referredOnce: false, stages: 0,
                          pathwayStages: 0, referrals: [])
        }
        var effects = Effects(delta: delta)
        try transition(event, &s, &effects)
        s.version += 1
        s.lastAt = event.at

        // Case states now, and the event's week.
        if let before { effects.delta.add(CounterKey(.states, "", before.status.rawValue, .count), -1) }
        effects.delta.add(CounterKey(.states, "", s.status.rawValue, .count), 1)
        let typeSlot = UInt8(EventType.allCases.firstIndex(of: event.type)!)
        if window.contains(event.at) {
            effects.delta.add(CounterKey(.weekly, ISOWeek.of(event.at), typeSlot, .count), 1)
        } else {
            effects.delta.add(CounterKey(.outside, "", typeSlot, .count), 1)
        }
        delta = effects.delta
        return s
    }

    /// Accumulates the projection effects of one event.
    struct Effects {
        var delta: ProjectionDelta

        /// The case reaches a case stage: counted once per case, persons = household size.
        mutating func reach(_ stage: Stage, _ s: inout CaseState) {
            guard !s.hasReached(stage) else { return }
            s.stages |= stage.bit
            let household = Int64(s.householdSize)
            for (dim, key) in dims(s) {
                delta.add(CounterKey(dim, key, UInt8(stage.rawValue), .cases), 1)
                delta.add(CounterKey(dim, key, UInt8(stage.rawValue), .persons), household)
            }
        }

        /// Referral `index` reaches a referral stage: its persons counted once per referral, the
        /// case once per stage, and once per (pathway, stage).
        mutating func reach(_ stage: Stage, referral index: Int, _ s: inout CaseState) {
            let r = s.referrals[index]
            let slot = UInt8(stage.rawValue)
            if r.stages & stage.bit == 0 {
                s.referrals[index].stages |= stage.bit
                for (dim, key) in dims(s) { delta.add(CounterKey(dim, key, slot, .persons), Int64(r.persons)) }
                delta.add(CounterKey(.pathway, r.pathwayName, slot, .persons), Int64(r.persons))
                delta.add(CounterKey(.officePathway, s.officeCountry + "|" + r.pathwayName, slot, .persons), Int64(r.persons))
            }
            if !s.hasReached(stage) {
                s.stages |= stage.bit
                for (dim, key) in dims(s) { delta.add(CounterKey(dim, key, slot, .cases), 1) }
            }
            let k = Stage.referralStages.firstIndex(of: stage)!
            let pbit: UInt64 = 1 << (UInt64(r.pathway) * 5 + UInt64(k))
            if s.pathwayStages & pbit == 0 {
                s.pathwayStages |= pbit
                delta.add(CounterKey(.pathway, r.pathwayName, slot, .cases), 1)
                delta.add(CounterKey(.officePathway, s.officeCountry + "|" + r.pathwayName, slot, .cases), 1)
            }
        }

        mutating func sample(_ measure: Measure, from: Timestamp, to: Timestamp) {
            delta.durations.append((measure, from.wholeSeconds(to: to)))
        }

        func dims(_ s: CaseState) -> [(CounterKey.Dimension, String)] {
            [(.all, ""), (.officeCountry, s.officeCountry), (.nationality, s.nationality)]
        }
    }

    private static func transition(_ e: Event, _ s: inout CaseState, _ fx: inout Effects) throws(LedgerError) {
        let name = e.type.rawValue
        func need(_ allowed: [CaseStatus]) throws(LedgerError) {
            guard allowed.contains(s.status) else {
                let list = allowed.map { "`\($0.name)`" }.joined(separator: " or ")
                throw LedgerError(.invalidTransition, "case \(e.caseID) is `\(s.status.name)`; \(name) needs it to be \(list)")
            }
        }
        func referralIndex() throws(LedgerError) -> Int {
            let id = e.data.string("referral") ?? ""
            guard let i = s.referrals.firstIndex(where: { $0.id == id }) else {
                let known = s.referrals.isEmpty ? "none" : s.referrals.map(\.id).joined(separator: ", ")
                throw LedgerError(.invalidTransition, "case \(e.caseID) has no referral \(id) (its referrals: \(known)); \(name) needs an existing referral")
            }
            return i
        }
        func needReferral(_ i: Int, _ allowed: [ReferralStatus], _ what: String) throws(LedgerError) {
            let r = s.referrals[i]
            guard allowed.contains(r.status) else {
                throw LedgerError(.invalidTransition, "case \(e.caseID) is `\(s.status.name)`; \(name) needs referral \(r.id) to be \(what), it is `\(r.status.name)`")
            }
        }

        switch e.type {
        case .appointmentRequested:
            s.status = .requested
            fx.reach(.requested, &s)
        case .eligibilityScreened:
            try need([.requested])
            if e.data.string("result") == "eligible" {
                s.status = .eligible
                fx.reach(.eligible, &s)
            } else {
                s.status = .ineligible
                fx.reach(.ineligible, &s)
            }
        case .appointmentScheduled:
            try need([.eligible, .scheduled, .missed])
            s.status = .scheduled
            fx.reach(.scheduled, &s)
        case .appointmentMissed:
            try need([.scheduled])
            s.status = .missed
            fx.reach(.missed, &s)
        case .interviewed:
            try need([.scheduled])
            s.status = .interviewed
            if s.firstInterviewAt == nil {
                s.firstInterviewAt = e.at
                fx.sample(.requestToInterview, from: s.requestedAt, to: e.at)
            }
            fx.reach(.interviewed, &s)
        case .referred:
            try need([.interviewed, .referred])
            let id = e.data.string("referral") ?? ""
            let persons = e.data.int("persons") ?? 1
            guard persons <= Int64(s.householdSize) else {
                throw LedgerError(.invalidEvent, "`data.persons` is \(persons) but case \(e.caseID)'s household has \(s.householdSize) persons")
            }
            guard s.referral(id) == nil else {
                throw LedgerError(.invalidEvent, "case \(e.caseID) already has a referral \(id); `data.referral` must be new in the case")
            }
            let pathway = UInt8(Codes.pathways.firstIndex(of: e.data.string("pathway") ?? "") ?? 0)
            s.referrals.append(Referral(id: id, pathway: pathway, persons: UInt8(persons), status: .referred,
                                        stages: 0, referredAt: e.at, decided: false))
            s.status = .referred
            if !s.referredOnce {
                s.referredOnce = true
                if let interview = s.firstInterviewAt { fx.sample(.interviewToReferral, from: interview, to: e.at) }
            }
            fx.reach(.referred, referral: s.referrals.count - 1, &s)
        case .decisionRecorded:
            try need([.referred])
            let i = try referralIndex()
            let decision = e.data.string("decision") ?? ""
            if decision == "hold" {
                try needReferral(i, [.referred], "`referred` (a hold comes before any decision)")
                s.referrals[i].status = .hold
            } else {
                try needReferral(i, [.referred, .hold], "`referred` or `hold`")
                let approved = decision == "approved"
                s.referrals[i].status = approved ? .approved : .denied
                if !s.referrals[i].decided {
                    s.referrals[i].decided = true
                    fx.sample(.referralToDecision, from: s.referrals[i].referredAt, to: e.at)
                }
                fx.reach(approved ? .approved : .denied, referral: i, &s)
            }
        case .visaIssued:
            try need([.referred])
            let i = try referralIndex()
            try needReferral(i, [.approved], "`approved`")
            s.referrals[i].status = .visaIssued
            fx.reach(.visaIssued, referral: i, &s)
        case .arrived:
            try need([.referred])
            let i = try referralIndex()
            try needReferral(i, [.visaIssued], "`visa_issued` (it has its visa)")
            s.referrals[i].status = .arrived
            fx.sample(.requestToArrival, from: s.requestedAt, to: e.at)
            fx.reach(.arrived, referral: i, &s)
        case .caseWithdrawn:
            try need(CaseStatus.allCases.filter { $0 != .withdrawn && $0 != .closed })
            s.status = .withdrawn
            fx.reach(.withdrawn, &s)
        case .caseClosed:
            try need(CaseStatus.allCases.filter { $0 != .withdrawn && $0 != .closed })
            s.status = .closed
            fx.reach(.closed, &s)
        }
    }
}
