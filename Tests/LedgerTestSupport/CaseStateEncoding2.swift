public import LedgerCore

/// A case state in encoding 2 (fixed-width integers and instants), as ledgers stored it before
/// encoding 3: what `CaseState.decode` must still read.
public func encoding2(_ s: CaseState) -> [UInt8] {
    var w = ByteWriter()
    w.u8(2)
    w.u8(s.status.rawValue)
    w.u64(s.version)
    w.instant(s.lastAt)
    w.u8(s.householdSize)
    w.u8(s.office)
    w.u32(s.nationality)
    w.instant(s.requestedAt)
    w.u8(s.firstInterviewAt == nil ? 0 : 1)
    if let t = s.firstInterviewAt { w.instant(t) }
    w.u8(s.referredOnce ? 1 : 0)
    w.u16(s.stages)
    w.u64(s.pathwayStages)
    w.u16(UInt16(s.referrals.count))
    for r in s.referrals {
        w.string(r.id)
        w.u8(r.pathway)
        w.u8(r.persons)
        w.u8(r.status.rawValue)
        w.u16(r.stages)
        w.instant(r.referredAt)
        w.u8(r.decided ? 1 : 0)
    }
    return w.bytes
}

