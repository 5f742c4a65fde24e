// The idiomatic Swift API over the uniffi bindings in Generated/pocketlm.swift.
//
// The generated API is synchronous and blocking (a generation takes seconds to minutes) and
// streams through a callback protocol. Apps want async/await and AsyncSequence, and must never
// block the main actor or Swift concurrency's small cooperative thread pool. This file adapts
// one to the other and owns the cancellation protocol, which is the subtle part (see
// `NativeCall`).
//
// The generated value types (`ModelOptions`, `SessionOptions`, `GenerateOptions`, `ModelInfo`,
// `GenerationStats`, `GenerationResult`, `StopReason`, `PocketLmError`) are used as they are.

import Foundation

// MARK: - Model

/// A loaded model: memory-mapped weights, tokenizer and worker threads, shared by any number
/// of sessions and threads.
public final class PocketLmModel: Sendable {
    /// The uniffi object. Kept internal so every native call goes through this file's
    /// threading and cancellation rules.
    let raw: Model

    /// Name, architecture, size and shape, read once at load (it does not change).
    public let info: ModelInfo

    private init(raw: Model) {
        self.raw = raw
        self.info = raw.info()
    }

    /// Opens a GGUF model file.
    ///
    /// Runs on a dedicated thread, not on the caller's executor: opening validates the whole
    /// file header and maps the weights, which can touch the disk for a while, and a blocking
    /// call must not occupy the main actor or one of the few cooperative-pool threads.
    ///
    /// - Throws: `PocketLmError.FileNotFound`, `.InvalidModel` (truncated or corrupted file),
    ///   `.WrongArchitecture` (a valid GGUF of another model family), `.Io`.
    public static func load(path: String, options: ModelOptions = ModelOptions()) async throws -> PocketLmModel {
        try await BackgroundThread.run(name: "PocketLm.load") {
            PocketLmModel(raw: try Model.load(path: path, options: options))
        }
    }

    /// A new conversation with its own KV cache. The cache is allocated here, so a context
    /// that does not fit the memory budget fails now (`.OutOfMemory`), not mid-answer.
    public func newSession(options: SessionOptions = SessionOptions()) throws -> PocketLmSession {
        PocketLmSession(raw: try raw.newSession(options: options))
    }

    /// The token ids of `text` (no special tokens added).
    public func tokenize(_ text: String) throws -> [UInt32] {
        try raw.tokenize(text: text)
    }

    /// The text of `ids`.
    public func detokenize(_ ids: [UInt32]) throws -> String {
        try raw.detokenize(ids: ids)
    }
}

// MARK: - Session

/// One conversation. Each `generate` appends the prompt and the answer to it.
///
/// One call runs at a time: a second `generate`, `generateIds` or `reset` while one is running
/// throws `PocketLmError.Busy` instead of queueing, because silently serialising two answers
/// into one conversation is never what a UI meant. The exception is a call that was already
/// cancelled and is only winding down (at most one layer of work): a new call waits for it,
/// so "stop, then send" works without the app having to wait for anything.
public final class PocketLmSession: Sendable {
    let raw: Session
    private let state = Locked(SessionState())

    /// Tokens of context this session was created with (prompt + answers).
    public let contextSize: Int

    init(raw: Session) {
        self.raw = raw
        self.contextSize = Int(raw.contextSize())
    }

    /// Statistics of the last generation that ended (finished, stopped or cancelled), as
    /// reported by the runtime at its end. Set before the stream finishes, so it is current
    /// when a `for try await` loop over `generate` exits.
    public var lastStats: GenerationStats? {
        state.withLock { $0.lastStats }
    }

    /// Tokens in the conversation so far (prompts and answers). Updated live while a
    /// generation runs, so it can drive a progress display from any thread.
    public var tokenCount: Int {
        Int(raw.tokenCount())
    }

    /// Streams the answer to `prompt`, as pieces of text (whole characters) in order.
    ///
    /// The native generation runs on its own thread (it blocks for the whole answer). The
    /// stream finishes when the answer ends for any reason (length, end of text, stop string,
    /// cancel; see `lastStats.stopReason`) and throws `PocketLmError` if the generation fails
    /// (`.Busy`, `.ContextFull`, `.InvalidArgument`, ...).
    ///
    /// Stopping: cancelling the consuming `Task`, breaking out of the loop or dropping the
    /// stream terminates it, and termination cancels the native generation, which stops
    /// within one layer of work. A cancel is never lost, even if it comes before the native
    /// call has started.
    public func generate(
        _ prompt: String,
        options: GenerateOptions = GenerateOptions()
    ) -> AsyncThrowingStream<String, Error> {
        // Unbounded buffer: pieces are small and come slower than any UI reads them, and a
        // bounded one would drop text (AsyncStream cannot slow the native loop down).
        let (stream, continuation) = AsyncThrowingStream<String, Error>.makeStream()
        let call: NativeCall
        let previous: NativeCall?
        do {
            (call, previous) = try begin()
        } catch {
            continuation.finish(throwing: error)
            return stream
        }
        // Any termination (consumer cancelled, loop exited, stream dropped, or our own finish)
        // cancels the call; after the call is done it is a no-op.
        continuation.onTermination = { _ in call.cancel() }
        let sink = StreamSink(continuation: continuation, call: call, state: state)
        BackgroundThread.start(name: "PocketLm.generate") { [self] in
            guard enter(call, after: previous) else {
                recordStats(.cancelledBeforeStart)
                end(call)
                continuation.finish()
                return
            }
            do {
                _ = try raw.generate(prompt: prompt, options: options, stream: sink)
                end(call)  // free the session before the consumer sees the end
                continuation.finish()
            } catch {
                end(call)
                continuation.finish(throwing: error)
            }
        }
        return stream
    }

    /// Generates from token ids and returns the generated ids with the statistics.
    ///
    /// Runs on its own thread. Cancelling the calling `Task` cancels the native generation:
    /// it then returns what was generated so far (`stats.stopReason == .cancelled`), or
    /// throws `CancellationError` if it was cancelled before it started.
    public func generateIds(
        _ prompt: [UInt32],
        options: GenerateOptions = GenerateOptions()
    ) async throws -> GenerationResult {
        let (call, previous) = try begin()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<GenerationResult, Error>) in
                BackgroundThread.start(name: "PocketLm.generateIds") { [self] in
                    guard enter(call, after: previous) else {
                        recordStats(.cancelledBeforeStart)
                        end(call)
                        cont.resume(throwing: CancellationError())
                        return
                    }
                    let result = Result { try raw.generateIds(prompt: prompt, options: options) }
                    if case .success(let r) = result {
                        recordStats(r.stats)
                    }
                    end(call)
                    cont.resume(with: result)
                }
            }
        } onCancel: {
            call.cancel()
        }
    }

    /// Stops the running generation, if any, from any thread. The stream then finishes
    /// normally with `lastStats.stopReason == .cancelled`.
    public func cancel() {
        state.withLock { $0.current }?.cancel()
    }

    /// Forgets the conversation (the context memory is kept for the next one).
    ///
    /// - Throws: `PocketLmError.Busy` while a generation runs. If the running generation was
    ///   cancelled, waits for it to wind down (at most one layer of work) instead.
    public func reset() throws {
        let (call, previous) = try begin(cancellable: false)
        defer { end(call) }
        previous?.waitUntilDone()
        _ = call.enterNative()
        try raw.reset()
    }

    // MARK: ownership of the session

    /// Makes a new call the owner of the session. A live owner means Busy; an owner that was
    /// cancelled (or just finished) is replaced, and returned so the new call can wait for it
    /// to leave the native code first.
    private func begin(cancellable: Bool = true) throws -> (NativeCall, previous: NativeCall?) {
        try state.withLock { s in
            if let current = s.current, !current.isCancelledOrDone {
                throw PocketLmError.Busy(message: "another call is running on this session")
            }
            let call = NativeCall(session: raw, cancellable: cancellable)
            let previous = s.current
            s.current = call
            return (call, previous)
        }
    }

    /// On the worker thread: waits for a cancelled predecessor to leave the native code, then
    /// lets `call` start unless it was cancelled meanwhile.
    private func enter(_ call: NativeCall, after previous: NativeCall?) -> Bool {
        previous?.waitUntilDone()
        guard call.enterNative() else { return false }
        #if DEBUG
        testHookBeforeNative.withLock { $0 }?()
        #endif
        return true
    }

    #if DEBUG
    /// Tests only: runs right before the native call, to hit the window in which the runtime
    /// would wipe a plain `session.cancel()` (see `NativeCall`).
    let testHookBeforeNative = Locked<(@Sendable () -> Void)?>(nil)
    #endif

    private func end(_ call: NativeCall) {
        call.markDone()
        state.withLock { s in
            if s.current === call {
                s.current = nil
            }
        }
    }

    fileprivate func recordStats(_ stats: GenerationStats) {
        state.withLock { $0.lastStats = stats }
    }
}

// MARK: - Internals

/// Receives the native callbacks (on a runtime worker thread) and feeds the stream.
private final class StreamSink: TokenStream, Sendable {
    let continuation: AsyncThrowingStream<String, Error>.Continuation
    let call: NativeCall
    let state: Locked<SessionState>

    init(continuation: AsyncThrowingStream<String, Error>.Continuation, call: NativeCall, state: Locked<SessionState>) {
        self.continuation = continuation
        self.call = call
        self.state = state
    }

    func onText(text: String) {
        // Nothing after a cancel: the consumer asked to stop, even if the runtime is still
        // finishing its current layer.
        if !call.isCancelledOrDone {
            continuation.yield(text)
        }
    }

    func onFinish(stats: GenerationStats) {
        state.withLock { $0.lastStats = stats }
    }
}

/// One native call on a session and the cancellation protocol around it.
///
/// Why this is not just `session.cancel()`: the runtime clears a session's cancel flag when a
/// generation starts (so a stale cancel cannot kill the next answer). A cancel that arrives
/// between the moment this thread decides to call into Rust and the moment Rust clears the
/// flag would be wiped, and the whole answer would be generated. So:
/// * before the native call starts, a cancel is only recorded, and the call never starts;
/// * once it has started, `cancel()` calls `session.cancel()` and keeps re-issuing it (every
///   millisecond, on a short-lived thread) until the native call returns, which it does
///   within one layer of work after the first cancel that lands after the flag was cleared.
/// Re-issuing is only done while this call is inside the native code and the session is
/// owned by it (the next call waits for `markDone`), so it can never cancel a later call.
final class NativeCall: @unchecked Sendable {
    // All mutable state is guarded by `condition`, hence @unchecked Sendable.
    private enum Phase { case pending, native, done }
    private let condition = NSCondition()
    private var phase = Phase.pending
    private var cancelRequested = false
    private let session: Session
    private let cancellable: Bool

    init(session: Session, cancellable: Bool) {
        self.session = session
        self.cancellable = cancellable
    }

    var isCancelledOrDone: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelRequested || phase == .done
    }

    func cancel() {
        condition.lock()
        defer { condition.unlock() }
        guard cancellable, !cancelRequested, phase != .done else { return }
        cancelRequested = true
        if phase == .native {
            session.cancel()
            startReissuingCancel()
        }
    }

    /// Called on the worker thread right before the native call. False if the call was
    /// cancelled already: then it must not start (and is marked done).
    func enterNative() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if cancelRequested {
            phase = .done
            condition.broadcast()
            return false
        }
        phase = .native
        return true
    }

    func markDone() {
        condition.lock()
        phase = .done
        condition.broadcast()
        condition.unlock()
    }

    func waitUntilDone() {
        condition.lock()
        while phase != .done {
            condition.wait()
        }
        condition.unlock()
    }

    private func startReissuingCancel() {
        BackgroundThread.start(name: "PocketLm.cancel") { [self] in
            condition.lock()
            while phase == .native {
                session.cancel()
                // Woken at once by markDone; otherwise try again in 1 ms.
                _ = condition.wait(until: Date(timeIntervalSinceNow: 0.001))
            }
            condition.unlock()
        }
    }
}

/// The lock-protected part of a session, shared with its stream sinks.
private struct SessionState {
    /// The call that owns the session, if any (possibly still winding down after a cancel).
    var current: NativeCall?
    var lastStats: GenerationStats?
}

extension GenerationStats {
    /// What `lastStats` reports for a generation cancelled before it reached the runtime.
    static let cancelledBeforeStart = GenerationStats(
        promptTokens: 0, generatedTokens: 0, promptTokensPerSecond: 0,
        generationTokensPerSecond: 0, stopReason: .cancelled)
}

/// A value behind a lock. (`Synchronization.Mutex` needs iOS 18 / macOS 15.)
final class Locked<Value>: @unchecked Sendable {
    // `value` is only touched with `lock` held, hence @unchecked Sendable.
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// Dedicated threads for blocking native calls.
///
/// Not `Task.detached`: that runs on Swift concurrency's cooperative pool, which has one
/// thread per core and must never block; a generation blocking one of them for minutes would
/// stall unrelated async code in the app.
enum BackgroundThread {
    static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.name = name
        thread.qualityOfService = .userInitiated
        thread.start()
    }

    static func run<T: Sendable>(name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            start(name: name) {
                cont.resume(with: Result { try body() })
            }
        }
    }
}
