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

    /// Applies the settings above, unless the environment sets the allocator. Call it first thing
    /// in `main`: blocks allocated before keep where they are.
    public static func configureForWriter() {
        #if canImport(Glibc)
        let names = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
        if names.contains(where: { getenv($0) != nil }) { return }
        if let tunables = getenv("GLIBC_TUNABLES"), String(cString: tunables).contains("glibc.malloc.") { return }
        // `mallopt` is in <malloc.h>, which the Glibc module leaves out.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        let M_TRIM_THRESHOLD: Int32 = -1, M_MMAP_THRESHOLD: Int32 = -3  // <malloc.h>
        _ = mallopt(M_MMAP_THRESHOLD, mmapThreshold)
        _ = mallopt(M_TRIM_THRESHOLD, trimThreshold)
        #endif
    }
}
