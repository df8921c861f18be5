/// The event types of a Safe Mobility Office case (CONTRACT §3), in lifecycle order.
public enum EventType: String, Sendable, CaseIterable, Hashable {
    case appointmentRequested = "AppointmentRequested"
    case eligibilityScreened = "EligibilityScreened"
    case appointmentScheduled = "AppointmentScheduled"
    case appointmentMissed = "AppointmentMissed"
    case interviewed = "Interviewed"
    case referred = "Referred"
    case decisionRecorded = "DecisionRecorded"
    case visaIssued = "VisaIssued"
    case arrived = "Arrived"
    case caseWithdrawn = "CaseWithdrawn"
    case caseClosed = "CaseClosed"

    /// The type whose name has the bytes of `name` (`init(rawValue:)` compares by Unicode
    /// canonical equivalence, which would take look-alikes).
    public init?(name: String) {
        guard name.isASCII, let type = EventType(rawValue: name) else { return nil }
        self = type
    }
}

/// Code lists of CONTRACT §3.
public enum Codes {
    public static let officeCountries = ["GT", "CO", "CR", "EC"]
    public static let channels = ["web", "phone", "referral"]
    public static let screeningResults = ["eligible", "ineligible"]
    public static let screeningReasons = ["NATIONALITY", "PRESENCE_DATE", "STATUS", "AGE", "DUPLICATE", "INCOMPLETE"]
    public static let interviewers = ["UNHCR", "IOM"]
    public static let pathways = ["USRAP", "FRP", "CHNV", "H2A", "H2B", "SPAIN", "CANADA", "ITALY", "OTHER"]
    public static let decisions = ["approved", "denied", "hold"]
    public static let documents = ["refugee_travel", "parole", "H2A", "H2B", "visa"]
    public static let withdrawalReasons = ["local_status", "other_pathway", "left_country", "no_longer_interested", "unknown"]
    public static let closureReasons = ["ineligible", "unreachable", "no_pathway", "completed", "program_ended", "duplicate"]
}
