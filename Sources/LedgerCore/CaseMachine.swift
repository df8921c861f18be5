/// The case lifecycle of CONTRACT §3: which event is allowed in which state, what state follows,
/// and what the event adds to the report's projections.
///
/// `apply` is the one place both the inline projections and every replay go through, so a replay
/// always gives the same report as ingestion.
public enum CaseMachine {
    /// Applies `event` to the case's state (nil for a case with no events yet).
    public static func apply(_ event: Event, to before: CaseState?, window: ReportWindow,
                             delta: inout ProjectionDelta) throws(LedgerError) -> CaseState {
        try apply(event.facts, to: before, window: window, delta: &delta)
    }

    /// Applies the event with `facts` to the case's state (nil for a case with no events yet).
    /// - Parameters:
    ///   - delta: receives the event's effect on the projections.
    /// - Returns: the case's new state.
    /// - Throws: `LedgerError` with `version_conflict`, `invalid_transition` or `invalid_event`
    ///   (a value that is out of range only given the case, such as `persons` over the household).
    public static func apply(_ e: EventFacts, to before: CaseState?, window: ReportWindow,
                             delta: inout ProjectionDelta) throws(LedgerError) -> CaseState {
        if var s = before {
            try apply(e, existing: &s, window: window, delta: &delta)
            return s
        }
        if e.expectedVersion >= 0, e.expectedVersion != 0 {
            throw LedgerError(.versionConflict, "case \(e.caseID) has 0 events, the event expected \(e.expectedVersion); read the case and retry")
        }
        guard e.type == .appointmentRequested else {
            throw LedgerError(.invalidTransition, "case \(e.caseID) does not exist; its first event must be AppointmentRequested, not \(e.type.rawValue)")
        }
        var s = CaseState(status: .requested, version: 0, lastAt: e.at, householdSize: e.householdSize,
                          office: e.office, nationality: e.nationality, requestedAt: e.at, firstInterviewAt: nil,
                          referredOnce: false, stages: 0, pathwayStages: 0, referrals: [])
        try transition(e, &s, &delta)
        finish(e, &s, from: nil, window: window, &delta)
        return s
    }

    /// Applies the event with `facts` to an existing case's state in place (what a replay does,
    /// without copying the state). Throws before changing anything when the event is not allowed.
    public static func apply(_ e: EventFacts, existing s: inout CaseState, window: ReportWindow,
                             delta: inout ProjectionDelta) throws(LedgerError) {
        if e.expectedVersion >= 0, UInt64(e.expectedVersion) != s.version {
            throw LedgerError(.versionConflict, "case \(e.caseID) has \(s.version) events, the event expected \(e.expectedVersion); read the case and retry")
        }
        guard e.type != .appointmentRequested else {
            throw LedgerError(.invalidTransition, "case \(e.caseID) already exists (it is `\(s.status.name)`); AppointmentRequested starts a new case")
        }
        guard e.at >= s.lastAt else {
            throw LedgerError(.invalidTransition, "case \(e.caseID)'s previous event is at \(s.lastAt); \(e.type.rawValue) at \(e.at) may not be earlier")
        }
        let before = s.status
        try transition(e, &s, &delta)
        finish(e, &s, from: before, window: window, &delta)
    }

    /// The version, the last `at`, the case states now and the event's week.
    @inline(__always)
    private static func finish(_ e: EventFacts, _ s: inout CaseState, from before: CaseStatus?, window: ReportWindow,
                               _ delta: inout ProjectionDelta) {
        s.version += 1
        s.lastAt = e.at
        if let before { delta.add(CounterKey(.states, 0, before.rawValue, .count), -1) }
        delta.add(CounterKey(.states, 0, s.status.rawValue, .count), 1)
        let day = e.at.dayNumber
        if window.contains(day: day) {
            delta.add(CounterKey(.weekly, UInt32(window.weekCode(day: day)), e.type.index, .count), 1)
        } else {
            delta.add(CounterKey(.outside, 0, e.type.index, .count), 1)
        }
    }

    /// The case reaches a case stage: counted once per case, persons = household size.
    static func reach(_ stage: Stage, _ s: inout CaseState, _ delta: inout ProjectionDelta) {
        guard !s.hasReached(stage) else { return }
        s.stages |= stage.bit
        let household = Int64(s.householdSize)
        let slot = UInt8(stage.rawValue)
        forEachSplit(s) { dim, code in
            delta.add(CounterKey(dim, code, slot, .cases), 1)
            delta.add(CounterKey(dim, code, slot, .persons), household)
        }
    }

    /// Referral `index` reaches a referral stage: its persons counted once per referral, the
    /// case once per stage, and once per (pathway, stage).
    static func reach(_ stage: Stage, referral index: Int, _ s: inout CaseState, _ delta: inout ProjectionDelta) {
        let r = s.referrals[index]
        let slot = UInt8(stage.rawValue)
        let pathway = UInt32(r.pathway)
        let officePathway = UInt32(s.office) << 8 | pathway
        if r.stages & stage.bit == 0 {
            s.referrals[index].stages |= stage.bit
            let persons = Int64(r.persons)
            forEachSplit(s) { dim, code in delta.add(CounterKey(dim, code, slot, .persons), persons) }
            delta.add(CounterKey(.pathway, pathway, slot, .persons), persons)
            delta.add(CounterKey(.officePathway, officePathway, slot, .persons), persons)
        }
        if !s.hasReached(stage) {
            s.stages |= stage.bit
            forEachSplit(s) { dim, code in delta.add(CounterKey(dim, code, slot, .cases), 1) }
        }
        let pbit: UInt64 = 1 << (UInt64(r.pathway) * 5 + UInt64(stage.referralIndex))
        if s.pathwayStages & pbit == 0 {
            s.pathwayStages |= pbit
            delta.add(CounterKey(.pathway, pathway, slot, .cases), 1)
            delta.add(CounterKey(.officePathway, officePathway, slot, .cases), 1)
        }
    }

    /// The funnel and the splits by the case's office country and nationality.
    @inline(__always)
    static func forEachSplit(_ s: CaseState, _ body: (CounterKey.Dimension, UInt32) -> Void) {
        body(.all, 0)
        body(.officeCountry, UInt32(s.office))
        body(.nationality, s.nationality)
    }

    static func sample(_ measure: Measure, from: Instant, to: Instant, _ delta: inout ProjectionDelta) {
        delta.durations.append((measure, from.wholeSeconds(to: to)))
    }

    private static func transition(_ e: EventFacts, _ s: inout CaseState, _ fx: inout ProjectionDelta) throws(LedgerError) {
        func need(_ allowed: [CaseStatus]) throws(LedgerError) {
            guard allowed.contains(s.status) else {
                let list = allowed.map { "`\($0.name)`" }.joined(separator: " or ")
                throw LedgerError(.invalidTransition, "case \(e.caseID) is `\(s.status.name)`; \(e.type.rawValue) needs it to be \(list)")
            }
        }
        func referralIndex() throws(LedgerError) -> Int {
            guard let i = s.referralIndex(e.referral) else {
                let known = s.referrals.isEmpty ? "none" : s.referrals.map(\.id).joined(separator: ", ")
                throw LedgerError(.invalidTransition, "case \(e.caseID) has no referral \(e.referral) (its referrals: \(known)); \(e.type.rawValue) needs an existing referral")
            }
            return i
        }
        func needReferral(_ i: Int, _ allowed: [ReferralStatus], _ what: String) throws(LedgerError) {
            let r = s.referrals[i]
            guard allowed.contains(r.status) else {
                throw LedgerError(.invalidTransition, "case \(e.caseID) is `\(s.status.name)`; \(e.type.rawValue) needs referral \(r.id) to be \(what), it is `\(r.status.name)`")
            }
        }

        switch e.type {
        case .appointmentRequested:
            s.status = .requested
            reach(.requested, &s, &fx)
        case .eligibilityScreened:
            try need([.requested])
            if e.code == 1 {
                s.status = .eligible
                reach(.eligible, &s, &fx)
            } else {
                s.status = .ineligible
                reach(.ineligible, &s, &fx)
            }
        case .appointmentScheduled:
            try need([.eligible, .scheduled, .missed])
            s.status = .scheduled
            reach(.scheduled, &s, &fx)
        case .appointmentMissed:
            try need([.scheduled])
            s.status = .missed
            reach(.missed, &s, &fx)
        case .interviewed:
            try need([.scheduled])
            s.status = .interviewed
            if s.firstInterviewAt == nil {
                s.firstInterviewAt = e.at
                sample(.requestToInterview, from: s.requestedAt, to: e.at, &fx)
            }
            reach(.interviewed, &s, &fx)
        case .referred:
            try need([.interviewed, .referred])
            guard e.persons <= s.householdSize else {
                throw LedgerError(.invalidEvent, "`data.persons` is \(e.persons) but case \(e.caseID)'s household has \(s.householdSize) persons")
            }
            guard s.referralIndex(e.referral) == nil else {
                throw LedgerError(.invalidEvent, "case \(e.caseID) already has a referral \(e.referral); `data.referral` must be new in the case")
            }
            s.referrals.append(Referral(id: e.referral, pathway: e.pathway, persons: e.persons, status: .referred,
                                        stages: 0, referredAt: e.at, decided: false))
            s.status = .referred
            if !s.referredOnce {
                s.referredOnce = true
                if let interview = s.firstInterviewAt { sample(.interviewToReferral, from: interview, to: e.at, &fx) }
            }
            reach(.referred, referral: s.referrals.count - 1, &s, &fx)
        case .decisionRecorded:
            try need([.referred])
            let i = try referralIndex()
            let decision = Int(e.code) < Codes.decisions.count ? Codes.decisions[Int(e.code)] : ""
            if decision == "hold" {
                try needReferral(i, [.referred], "`referred` (a hold comes before any decision)")
                s.referrals[i].status = .hold
            } else {
                try needReferral(i, [.referred, .hold], "`referred` or `hold`")
                let approved = decision == "approved"
                s.referrals[i].status = approved ? .approved : .denied
                if !s.referrals[i].decided {
                    s.referrals[i].decided = true
                    sample(.referralToDecision, from: s.referrals[i].referredAt, to: e.at, &fx)
                }
                reach(approved ? .approved : .denied, referral: i, &s, &fx)
            }
        case .visaIssued:
            try need([.referred])
            let i = try referralIndex()
            try needReferral(i, [.approved], "`approved`")
            s.referrals[i].status = .visaIssued
            reach(.visaIssued, referral: i, &s, &fx)
        case .arrived:
            try need([.referred])
            let i = try referralIndex()
            try needReferral(i, [.visaIssued], "`visa_issued` (it has its visa)")
            s.referrals[i].status = .arrived
            sample(.requestToArrival, from: s.requestedAt, to: e.at, &fx)
            reach(.arrived, referral: i, &s, &fx)
        case .caseWithdrawn:
            try need(CaseStatus.open)
            s.status = .withdrawn
            reach(.withdrawn, &s, &fx)
        case .caseClosed:
            try need(CaseStatus.open)
            s.status = .closed
            reach(.closed, &s, &fx)
        }
    }
}

extension CaseStatus {
    /// Every state but `withdrawn` and `closed`.
    static let open: [CaseStatus] = allCases.filter { $0 != .withdrawn && $0 != .closed }
}

extension Stage {
    /// The index among `referralStages` (0 for a case stage).
    var referralIndex: Int {
        switch self {
        case .referred: 0
        case .approved: 1
        case .denied: 2
        case .visaIssued: 3
        case .arrived: 4
        default: 0
        }
    }
}
