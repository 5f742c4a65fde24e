// swift-tools-version:5.9
//
// PocketLM for Swift (iOS, macOS; Linux for CI tests).
//
// The native library comes in one of two ways, chosen when SwiftPM reads this manifest:
//
// * XCFramework (apps on iOS/macOS): `scripts/build-xcframework.sh` on a Mac writes
//   `ios/Frameworks/PocketLmFFI.xcframework` (static libpocketlm.a per platform + headers).
//   When that folder exists, or POCKETLM_XCFRAMEWORK=1 is set, `PocketLmFFI` is that binary
//   target. The switch exists because SwiftPM refuses a manifest whose binaryTarget path is
//   missing, and the XCFramework cannot be built (nor checked in) from the Linux CI machines.
// * System library (Linux tests, macOS development): `Sources/PocketLmFFI` holds the uniffi
//   header and a module map with `link "pocketlm"`; pass the folder holding libpocketlm
//   (`-Xlinker -L<repo>/target/debug`) and set LD_LIBRARY_PATH at run time, as
//   `scripts/test-swift.sh` does.
import Foundation
import PackageDescription

let xcframeworkPath = "Frameworks/PocketLmFFI.xcframework"
let useXCFramework = Context.environment["POCKETLM_XCFRAMEWORK"] == "1"
    || FileManager.default.fileExists(atPath: Context.packageDirectory + "/" + xcframeworkPath)

let ffiTarget: Target = useXCFramework
    ? .binaryTarget(name: "PocketLmFFI", path: xcframeworkPath)
    : .systemLibrary(name: "PocketLmFFI", path: "Sources/PocketLmFFI")

// Complete concurrency checking (Swift 6's data-race rules) without requiring tools 6.0;
// scripts/test-swift.sh additionally compiles in Swift 6 language mode with warnings as errors.
let strictConcurrency: [SwiftSetting] = [.enableExperimentalFeature("StrictConcurrency")]

let package = Package(
    name: "PocketLm",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "PocketLm", targets: ["PocketLm"]),
    ],
    targets: [
        ffiTarget,
        .target(
            name: "PocketLm",
            dependencies: ["PocketLmFFI"],
            path: "Sources/PocketLm",
            swiftSettings: strictConcurrency
        ),
        .testTarget(
            name: "PocketLmTests",
            dependencies: ["PocketLm"],
            path: "Tests/PocketLmTests",
            swiftSettings: strictConcurrency
        ),
    ]
)
