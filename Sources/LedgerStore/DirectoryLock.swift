#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on a data directory (`ledgerd.lock`, `flock`), held for the life of the value.
///
/// The kernel releases it when the process dies, so a crash never leaves a stale lock. The file
/// holds the owner's pid, for the message a second daemon prints.
public final class DirectoryLock: Sendable {
    private let fd: Int32
    public let path: String

    /// Takes the lock, creating the directory (mode 0700) when missing.
    /// - Throws: `StoreError` when another process holds it, naming that process.
    public init(directory: String) throws(StoreError) {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw StoreError(.io, "cannot create the data directory \(directory): \(String(cString: strerror(errno)))")
        }
        path = directory + "/ledgerd.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StoreError(.io, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buf = [UInt8](repeating: 0, count: 32)
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 31, 0) }
            let owner = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).filter(\.isNumber) : "?"
            close(fd)
            throw StoreError(.locked, "another ledgerd (pid \(owner)) is using the data directory \(directory); stop it first or choose another --data-dir")
        }
        ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = fd
    }

    deinit { close(fd) }
}

