#if canImport(Glibc)
import Glibc
#endif

/// The C allocator's settings for a process that writes a ledger (`ledgerd`, and `ledgerctl` when it
/// imports or rebuilds).
///
/// The writer's large tables live one or two checkpoint intervals each (an interval's id table, a
/// frozen overlay, a checkpoint's key orders, the case cache's tables), and are freed while the next
/// interval's are being filled. glibc serves blocks above its mmap threshold with their own mapping,
/// returned whole when freed, but raises that threshold to the size of each such block freed (up to
/// 32 MiB): after the first checkpoint every table came from the heap, and the holes they left grew
/// with the log. With the threshold fixed at 128 KiB (which also stops the raising), VmHWM at the
/// end of a 1M-event ingest went from 140-145 to about 124 MiB, and on the 4M-event history from
/// about 172 to 142-144 MiB, at the same rate (docs/OPERATIONS.md, "Capacity"). The trim threshold
/// keeps up to 32 MiB free at the top of the heap rather than returning it at every free, which
/// cost page faults when it was taken back.
///
/// An operator's own setting (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, or
/// `glibc.malloc.*` in `GLIBC_TUNABLES`) is kept: then this changes nothing.
public enum Allocator {
    public static let mmapThreshold: Int32 = 128 << 10
    public static let trimThreshold: Int32 = 32 << 20

    /// What `configureForWriter` did.
    public enum Outcome: Equatable, Sendable {
        case applied
        /// The environment sets the allocator through this variable: nothing was changed.
        case keptOperatorSetting(String)
        /// Not glibc, or no `mallopt`: nothing was changed.
        case unavailable
    }

    /// Applies the settings above, unless the environment sets the allocator. Call it before the
    /// ledger is opened: blocks allocated before keep where they are.
    @discardableResult
    public static func configureForWriter() -> Outcome {
        #if canImport(Glibc)
        var environment: [String: String] = [:]
        for name in ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"] {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        if let setting = operatorSetting(in: environment) { return .keptOperatorSetting(setting) }
        // `mallopt` is in <malloc.h>, which the Glibc module leaves out.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return .unavailable }
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        let M_TRIM_THRESHOLD: Int32 = -1, M_MMAP_THRESHOLD: Int32 = -3  // <malloc.h>
        guard mallopt(M_MMAP_THRESHOLD, mmapThreshold) == 1, mallopt(M_TRIM_THRESHOLD, trimThreshold) == 1 else { return .unavailable }
        return .applied
        #else
        return .unavailable
        #endif
    }

    /// The variable of `environment` by which the operator sets glibc's allocator, if any.
    public static func operatorSetting(in environment: [String: String]) -> String? {
        for name in ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"] where environment[name] != nil { return name }
        if let tunables = environment["GLIBC_TUNABLES"], tunables.contains("glibc.malloc.") { return "GLIBC_TUNABLES" }
        return nil
    }
}
