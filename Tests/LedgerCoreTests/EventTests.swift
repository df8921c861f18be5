import LedgerCore
import Testing

@Suite("Event envelope and data validation")
struct EventTests {
    static let requested = #"{"office_country":"CO","nationality":"VEN","household_size":3}"#

    static func envelope(_ fields: String) -> String { "{" + fields + "}" }

    static let base = #""id":"e1","type":"AppointmentRequested","case":"C-1","at":"2023-07-03T14:05:00Z""#

    @Test func canonicalForm() throws {
        let text = #"{"data":{"household_size":3,"nationality":"VEN","office_country":"CO"},"type":"AppointmentRequested","case":"C-1","id":"e1","at":"2023-07-03T09:05:00-05:00","expected_version":0}"#
        let e = try Event.validate(json: Array(text.utf8))
        #expect(String(decoding: e.canonical, as: UTF8.self) ==
            #"{"at":"2023-07-03T14:05:00Z","case":"C-1","data":{"household_size":3,"nationality":"VEN","office_country":"CO"},"expected_version":0,"id":"e1","type":"AppointmentRequested"}"#)
        #expect(e.type == .appointmentRequested)
        #expect(e.expectedVersion == 0)
    }

    @Test("valid data for every type", arguments: [
        ("AppointmentRequested", #"{"office_country":"GT","nationality":"SLV","household_size":20,"applicant":"k:9f2a","channel":"phone"}"#),
        ("EligibilityScreened", #"{"result":"ineligible","reasons":["NATIONALITY","PRESENCE_DATE"]}"#),
        ("EligibilityScreened", #"{"result":"eligible"}"#),
        ("AppointmentScheduled", #"{"office":"Bogotá Norte","scheduled_for":"2023-07-10T09:00:00-05:00"}"#),
        ("AppointmentMissed", "{}"),
        ("Interviewed", #"{"interviewer":"IOM"}"#),
        ("Referred", #"{"referral":"R1","pathway":"USRAP","persons":2}"#),
        ("DecisionRecorded", #"{"referral":"R1","decision":"hold"}"#),
        ("VisaIssued", #"{"referral":"R1","document":"refugee_travel"}"#),
        ("Arrived", #"{"referral":"R1","country":"USA"}"#),
        ("CaseWithdrawn", #"{"reason":"left_country"}"#),
        ("CaseClosed", #"{"reason":"program_ended"}"#),
    ])
    func validData(type: String, data: String) throws {
        let text = #"{"id":"x","type":"\#(type)","case":"C-1","at":"2023-07-03T14:05:00Z","data":\#(data)}"#
        _ = try Event.validate(json: Array(text.utf8))
    }

    @Test("rejections carry the contract's code", arguments: [
        ("[]", ErrorCode.malformed),
        (envelope(base + #","data":{"office_country":"CO","nationality":"VEN","household_size":3},"extra":1"#), .invalidEvent),
        (envelope(#""type":"AppointmentRequested","case":"C-1","at":"2023-07-03T14:05:00Z","data":\#(requested)"#), .invalidEvent),
        (envelope(#""id":"","type":"AppointmentRequested","case":"C-1","at":"2023-07-03T14:05:00Z","data":\#(requested)"#), .invalidEvent),
        (envelope(#""id":"\#(String(repeating: "a", count: 129))","type":"AppointmentRequested","case":"C-1","at":"2023-07-03T14:05:00Z","data":\#(requested)"#), .invalidEvent),
        (envelope(#""id":"é","type":"AppointmentRequested","case":"C-1","at":"2023-07-03T14:05:00Z","data":\#(requested)"#), .invalidEvent),
        (envelope(#""id":7,"type":"AppointmentRequested","case":"C-1","at":"2023-07-03T14:05:00Z","data":\#(requested)"#), .malformed),
        (envelope(#""id":"e1","type":"Teleported","case":"C-1","at":"2023-07-03T14:05:00Z","data":{}"#), .unknownType),
        (envelope(#""id":"e1","type":"AppointmentRequested","case":"\#(String(repeating: "c", count: 65))","at":"2023-07-03T14:05:00Z","data":\#(requested)"#), .invalidEvent),
        (envelope(#""id":"e1","type":"AppointmentRequested","case":"C-1","at":"yesterday","data":\#(requested)"#), .invalidEvent),
        (envelope(#""id":"e1","type":"AppointmentRequested","case":"C-1","at":"2023-07-03T14:05:00Z","data":[]"#), .malformed),
        (envelope(#""id":"e1","type":"AppointmentRequested","case":"C-1","at":"2023-07-03T14:05:00Z""#), .invalidEvent),
        (envelope(base + #","expected_version":-1,"data":\#(requested)"#), .invalidEvent),
        (envelope(base + #","expected_version":1.5,"data":\#(requested)"#), .malformed),
        (envelope(base + #","data":{"office_country":"MX","nationality":"VEN","household_size":3}"#), .invalidEvent),
        (envelope(base + #","data":{"office_country":"CO","nationality":"ven","household_size":3}"#), .invalidEvent),
        (envelope(base + #","data":{"office_country":"CO","nationality":"VEN","household_size":0}"#), .invalidEvent),
        (envelope(base + #","data":{"office_country":"CO","nationality":"VEN","household_size":21}"#), .invalidEvent),
        (envelope(base + #","data":{"office_country":"CO","nationality":"VEN","household_size":"3"}"#), .malformed),
        (envelope(base + #","data":{"office_country":"CO","nationality":"VEN","household_size":3.0}"#), .malformed),
        (envelope(base + #","data":{"office_country":"CO","nationality":"VEN"}"#), .invalidEvent),
        (envelope(base + #","data":{"office_country":"CO","nationality":"VEN","household_size":3,"name":"Ana"}"#), .invalidEvent),
        (envelope(base + #","data":{"office_country":"CO","nationality":"VEN","household_size":3,"channel":"fax"}"#), .invalidEvent),
        (envelope(base + #","data":{"office_country":"CO","nationality":"VEN","household_size":3,"applicant":""}"#), .invalidEvent),
        (envelope(#""id":"e1","type":"EligibilityScreened","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"result":"eligible","reasons":["AGE","AGE"]}"#), .invalidEvent),
        (envelope(#""id":"e1","type":"EligibilityScreened","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"result":"eligible","reasons":"AGE"}"#), .malformed),
        (envelope(#""id":"e1","type":"AppointmentScheduled","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"office":"\#(String(repeating: "o", count: 33))","scheduled_for":"2023-07-10T09:00:00Z"}"#), .invalidEvent),
        (envelope(#""id":"e1","type":"AppointmentScheduled","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"office":"A\nB","scheduled_for":"2023-07-10T09:00:00Z"}"#), .invalidEvent),
        (envelope(#""id":"e1","type":"AppointmentScheduled","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"office":"A","scheduled_for":"soon"}"#), .invalidEvent),
        (envelope(#""id":"e1","type":"AppointmentMissed","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"note":"x"}"#), .invalidEvent),
        (envelope(#""id":"e1","type":"Referred","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"referral":"R1","pathway":"MOON","persons":1}"#), .invalidEvent),
        (envelope(#""id":"e1","type":"Arrived","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"referral":"R1","country":"US"}"#), .invalidEvent),
        (envelope(#""id":"e1","type":"CaseClosed","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"reason":"bored"}"#), .invalidEvent),
    ])
    func rejects(text: String, code: ErrorCode) {
        #expect(throws: LedgerError.self) { try Event.validate(json: Array(text.utf8)) }
        do {
            _ = try Event.validate(json: Array(text.utf8))
        } catch {
            #expect(error.code == code, "\(error.message)")
            #expect(!error.message.isEmpty)
        }
    }

    /// Labels of 16 to 300 Unicode scalars, some of them forming far fewer grapheme clusters.
    static let labels: [(String, Bool)] = [
        (String(repeating: "a", count: 32), true),
        (String(repeating: "a", count: 33), false),
        (String(repeating: "\u{E9}", count: 32), true),                   // 32 scalars, 64 bytes
        (String(repeating: "e\u{301}", count: 16), true),                // 32 scalars, 16 graphemes
        (String(repeating: "e\u{301}", count: 17), false),               // 34 scalars, 17 graphemes
        ("e" + String(repeating: "\u{301}", count: 31), true),           // 32 scalars, 1 grapheme
        ("e" + String(repeating: "\u{301}", count: 32), false),          // 33 scalars, 1 grapheme
        ("e" + String(repeating: "\u{301}", count: 300), false),         // 1 grapheme of 601 bytes
        (String(repeating: "\u{1F1E8}\u{1F1F4}", count: 16), true),      // 16 flags: 32 scalars
        (String(repeating: "\u{1F1E8}\u{1F1F4}", count: 17), false),     // 17 flags: 34 scalars
        (String(repeating: "\u{1F600}", count: 32), true),                // 32 scalars, 128 bytes
        ("", false),
    ]

    @Test("a label's length counts Unicode scalars (code points), not grapheme clusters", arguments: labels)
    func labelLengthCountsScalars(label: String, valid: Bool) throws {
        let schedule = #"{"id":"e1","type":"AppointmentScheduled","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"office":"\#(label)","scheduled_for":"2023-07-10T09:00:00Z"}}"#
        let refer = #"{"id":"e2","type":"Referred","case":"C-1","at":"2023-07-03T14:05:00Z","data":{"referral":"\#(label)","pathway":"USRAP","persons":1}}"#
        for text in [schedule, refer] {
            let result = Result { () throws(LedgerError) in try Event.validate(json: Array(text.utf8)) }
            switch result {
            case .success(let e):
                #expect(valid, "accepted a label of \(label.unicodeScalars.count) scalars")
                // An accepted label fits the facts' one-byte length and survives their encoding
                // (a longer one would trap there, so it is only encoded when it should be valid).
                if valid { #expect(EventFacts.decode(e.facts.encoded) == e.facts) }
            case .failure(let error):
                #expect(!valid, "\(error.message)")
                #expect(error.code == .invalidEvent)
                #expect(error.message.contains("1 to 32 Unicode scalars"), "\(error.message)")
            }
        }
    }

    @Test(arguments: [(#"{"op":"read","from":-1}"#, "got -1"), (#"{"op":"read","limit":1.5}"#, "got 1.5"),
                      (#"{"op":"read","from":"7"}"#, "got a string")] as [(String, String)])
    func readBoundsSayWhatCame(line: String, says: String) {
        let result = Array(line.utf8).withUnsafeBytes { b in Result { () throws(LedgerError) in try Request.decode(b) } }
        guard case .failure(let error) = result else { Issue.record("accepted \(line)"); return }
        #expect(error.code == .malformed)
        #expect(error.message.contains(says), "\(error.message)")
    }
}
