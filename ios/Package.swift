// swift-tools-version:5.9
//
// PocketLM for Swift (iOS, macOS; Linux for CI tests).
//
// The native library comes in one of two ways, chosen when SwiftPM evaluates this manifest:
//
// * XCFramework (iOS/macOS apps): `scripts/build-xcframework.sh`, run on a Mac, writes
//   `ios/Frameworks/PocketLmFFI.xcframework` (static libpocketlm.a per platform + headers),
//   and `PocketLmFFI` becomes that binary target when
//     - POCKETLM_XCFRAMEWORK=1 is set (=0 forces the system library), or, if it is unset,
//     - the folder exists (what Xcode sees; env vars rarely reach it).
//   The switch exists because SwiftPM rejects a binaryTarget whose path is missing, and the
//   XCFramework can be neither built on nor checked in from the Linux CI machines.
//   SwiftPM caches evaluated manifests keyed by their text and environment, NOT by which files
//   exist: after creating or deleting the folder, reset the package caches once (Xcode: File >
//   Packages > Reset Package Caches; command line: `swift build --manifest-cache none`).
// * System library (Linux tests, macOS development): `Sources/PocketLmFFI` holds the uniffi
//   header and a module map with `link "pocketlm"`; pass the folder holding libpocketlm
//   (`-Xlinker -L<repo>/target/debug`) and set LD_LIBRARY_PATH at run time, as
//   `scripts/test-swift.sh` does. Always used on Linux (no XCFrameworks there).
import Foundation
import PackageDescription

let xcframeworkPath = "Frameworks/PocketLmFFI.xcframework"
let useXCFramework: Bool = {
    #if os(Linux)
    return false
    #else
    switch Context.environment["POCKETLM_XCFRAMEWORK"] {
    case "1"?: return true
    case "0"?: return false
    default: return FileManager.default.fileExists(atPath: Context.packageDirectory + "/" + xcframeworkPath)
    }
    #endif
}()

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
