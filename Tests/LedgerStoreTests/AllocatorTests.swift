import Foundation
import LedgerStore
import Testing

/// The allocator settings of `ledgerd` and `ledgerctl` give way to the operator's.
@Suite("Allocator")
struct AllocatorTests {
    @Test func anOperatorsSettingWins() {
        #expect(Allocator.operatorSetting(in: [:]) == nil)
        #expect(Allocator.operatorSetting(in: ["MALLOC_ARENA_MAX": "2", "GLIBC_TUNABLES": "glibc.rtld.nns=2"]) == nil)
        #expect(Allocator.operatorSetting(in: ["MALLOC_MMAP_THRESHOLD_": "2097152"]) == "MALLOC_MMAP_THRESHOLD_")
        #expect(Allocator.operatorSetting(in: ["MALLOC_TRIM_THRESHOLD_": "0"]) == "MALLOC_TRIM_THRESHOLD_")
        #expect(Allocator.operatorSetting(in: ["GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"]) == "GLIBC_TUNABLES")
    }

    /// In this process the settings apply (`mallopt` is found and takes them), unless the
    /// environment the tests run in sets the allocator.
    @Test func theSettingsApplyUnlessTheEnvironmentSetsThem() {
        let expected: Allocator.Outcome = Allocator.operatorSetting(in: ProcessInfo.processInfo.environment)
            .map { .keptOperatorSetting($0) } ?? .applied
        #expect(Allocator.configureForWriter() == expected)
    }
}
