// swift-tools-version:6.0
import PackageDescription

/// Upcoming-feature flags turned on for every target (STYLE.md).
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "ledger",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ledgerd", targets: ["ledgerd"]),
        .executable(name: "ledgerctl", targets: ["ledgerctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // C: LMDB from Debian's liblmdb-dev, nothing else.
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        // The only code that calls LMDB.
        .target(name: "LMDBKit", dependencies: ["CLMDB"], swiftSettings: strictSettings),
        // Pure domain: no I/O, imports nothing of ours.
        .target(name: "LedgerCore", swiftSettings: strictSettings),
        // The log on LMDBKit.
        .target(
            name: "LedgerStore",
            dependencies: [
                "LMDBKit", "LedgerCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings),
        // The socket server and the writer.
        .target(
            name: "LedgerServer",
            dependencies: [
                "LedgerStore", "LedgerCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strictSettings),
        // A blocking NDJSON client for the Unix socket (ledgerctl, tests, benchmarks).
        .target(name: "LedgerClient", dependencies: ["LedgerCore"], swiftSettings: strictSettings),
        .executableTarget(
            name: "ledgerd",
            dependencies: [
                "LedgerServer", "LedgerStore",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings),
        .executableTarget(
            name: "ledgerctl",
            dependencies: [
                "LedgerStore", "LedgerCore", "LedgerClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings),
        // libFuzzer target for the request decoder and the case machine (scripts/fuzz builds it with
        // -sanitize=fuzzer; a normal build compiles it too, it just has no main of its own to run).
        .executableTarget(
            name: "FuzzLedger", dependencies: ["LedgerCore"],
            swiftSettings: strictSettings + [.unsafeFlags(["-parse-as-library"])]),
        // A release-mode measurement of Request.decode (not a product; Benchmarks/decode/main.swift).
        .executableTarget(
            name: "DecodeBench", dependencies: ["LedgerCore"], path: "Benchmarks/decode",
            swiftSettings: strictSettings),
        // The writer's cost per event, in process (not a product; Benchmarks/append/main.swift).
        .executableTarget(
            name: "AppendBench", dependencies: ["LedgerCore", "LedgerStore"], path: "Benchmarks/append",
            swiftSettings: strictSettings),
        // Test support: temporary ledgers and an in-process socket client.
        .target(
            name: "LedgerTestSupport",
            dependencies: ["LedgerStore", "LedgerCore", "LedgerServer", "LedgerClient", "LMDBKit",
                           .product(name: "Logging", package: "swift-log")],
            path: "Tests/LedgerTestSupport",
            swiftSettings: strictSettings),
        .testTarget(name: "LMDBKitTests", dependencies: ["LMDBKit"], swiftSettings: strictSettings),
        .testTarget(name: "LedgerCoreTests", dependencies: ["LedgerCore", "LedgerTestSupport"], swiftSettings: strictSettings),
        .testTarget(
            name: "LedgerStoreTests",
            dependencies: ["LedgerStore", "LedgerCore", "LMDBKit", "LedgerTestSupport",
                           .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strictSettings),
        .testTarget(
            name: "LedgerServerTests",
            dependencies: ["LedgerServer", "LedgerStore", "LedgerCore", "LedgerClient", "LedgerTestSupport",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["LedgerCore", "LedgerClient", "LedgerTestSupport", "LMDBKit"],
            swiftSettings: strictSettings),
    ]
)
