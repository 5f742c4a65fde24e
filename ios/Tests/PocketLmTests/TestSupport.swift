import Foundation
import XCTest
import PocketLm

/// Paths and expected values from scripts/make-test-models.sh, found through
/// POCKETLM_TEST_MODELS (set by scripts/test-swift.sh to <repo>/build/test-models).
struct Fixtures {
    let dir: String
    let prompt: [UInt32]
    let greedy: [UInt32]
    /// n_layer, n_embd and vocabulary size of the fixture tiny.gguf was converted from.
    let shape: [UInt32]

    var tiny: String { dir + "/tiny.gguf" }
    var corrupt: String { dir + "/corrupt.gguf" }
    var wrongArch: String { dir + "/wrong-arch.gguf" }

    static func load() throws -> Fixtures {
        guard let dir = ProcessInfo.processInfo.environment["POCKETLM_TEST_MODELS"], !dir.isEmpty else {
            throw FixtureError("POCKETLM_TEST_MODELS is not set: run scripts/test-swift.sh")
        }
        func ids(_ name: String) throws -> [UInt32] {
            let text = try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
            return try text.trimmingCharacters(in: .whitespacesAndNewlines)
                .split(separator: ",")
                .map { s in
                    guard let id = UInt32(s) else { throw FixtureError("bad id \(s) in \(name)") }
                    return id
                }
        }
        return Fixtures(dir: dir, prompt: try ids("tiny.prompt"), greedy: try ids("tiny.greedy"),
                        shape: try ids("tiny.shape"))
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Greedy decoding that never stops early: the fixture's reference setting.
func greedy(_ maxTokens: UInt32) -> GenerateOptions {
    GenerateOptions(maxTokens: maxTokens, temperature: 0, stopAtEndOfText: false)
}

/// A value shared between test threads.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func with<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
    var get: Value { with { $0 } }
}

/// Runs `body` on a new Foundation thread (like an app's worker thread calling the blocking
/// uniffi API); `join()` waits for its result.
final class Worker<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, Error>?  // written once before `done` is signalled

    init(_ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            result = Result { try body() }
            done.signal()
        }
        thread.start()
    }

    func join(timeout seconds: Double = 60) throws -> T {
        guard done.wait(timeout: .now() + seconds) == .success else {
            throw FixtureError("worker thread did not finish in \(seconds) s")
        }
        return try result!.get()
    }
}

/// Records what the runtime streams through the uniffi callback protocol. Foreign
/// implementations must be Sendable (the runtime calls them from its worker threads).
final class RecordingStream: TokenStream, @unchecked Sendable {
    private let lock = NSLock()
    private var _pieces: [String] = []
    private var _finished: [GenerationStats] = []

    func onText(text: String) {
        lock.lock()
        _pieces.append(text)
        lock.unlock()
    }

    func onFinish(stats: GenerationStats) {
        lock.lock()
        _finished.append(stats)
        lock.unlock()
    }

    var pieces: [String] { lock.lock(); defer { lock.unlock() }; return _pieces }
    var finished: [GenerationStats] { lock.lock(); defer { lock.unlock() }; return _finished }
}

/// Polls `condition` every 2 ms until it holds or `seconds` pass. Sleeps with Task.sleep:
/// blocking a cooperative-pool thread (2 on a 2-core machine) could starve the code under test.
func waitUntil(timeout seconds: Double = 30, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() > deadline { return false }
        await pause(0.002)
    }
    return true
}

func pause(_ seconds: Double) async {
    try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
}

/// Waits until the session's token count stays the same for `quiet` seconds; returns it.
func settledTokenCount(_ count: () -> Int, quiet: Double = 0.3, timeout: Double = 30) async -> Int {
    let deadline = Date().addingTimeInterval(timeout)
    var last = count()
    var since = Date()
    while Date() < deadline {
        await pause(0.01)
        let now = count()
        if now != last {
            last = now
            since = Date()
        } else if Date().timeIntervalSince(since) >= quiet {
            break
        }
    }
    return last
}
