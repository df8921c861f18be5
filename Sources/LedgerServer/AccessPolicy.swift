#if canImport(Glibc)
import Glibc
#endif

/// Who may append: users and groups resolved once at start-up. Everyone who can open the socket
/// may read (the socket file's mode 0660 decides who can open it).
public struct AccessPolicy: Sendable {
    public let uids: Set<UInt32>
    public let gids: Set<UInt32>

    /// Resolves names or numeric ids; the daemon's own user is always allowed.
    /// - Throws: `Configuration.Problem` for a name that does not exist.
    public init(users: [String], groups: [String]) throws {
        var uids: Set<UInt32> = [getuid()]
        for u in users {
            if let n = UInt32(u) { uids.insert(n); continue }
            guard let pw = getpwnam(u) else {
                throw Configuration.Problem(description: "append_users: no user named \(u) on this machine")
            }
            uids.insert(pw.pointee.pw_uid)
        }
        var gids: Set<UInt32> = []
        for g in groups {
            if let n = UInt32(g) { gids.insert(n); continue }
            guard let gr = getgrnam(g) else {
                throw Configuration.Problem(description: "append_groups: no group named \(g) on this machine")
            }
            gids.insert(gr.pointee.gr_gid)
        }
        self.uids = uids
        self.gids = gids
    }

    /// Whether the peer with these credentials may append: its user is listed, or its primary or
    /// a supplementary group is.
    public func mayAppend(uid: UInt32, gid: UInt32) -> Bool {
        if uids.contains(uid) || gids.contains(gid) { return true }
        guard !gids.isEmpty, let pw = getpwuid(uid) else { return false }
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(pw.pointee.pw_name, gid, &list, &count) < 0 {
            list = [gid_t](repeating: 0, count: Int(count))
            guard getgrouplist(pw.pointee.pw_name, gid, &list, &count) >= 0 else { return false }
        }
        return list.prefix(Int(count)).contains { gids.contains($0) }
    }
}

/// `struct ucred` of Linux, laid out as the kernel writes it for `SO_PEERCRED`.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
