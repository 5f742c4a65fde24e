// The idiomatic Swift API over the uniffi bindings in Generated/pocketlm.swift.
//
// The generated API is synchronous and blocking (a generation takes seconds to minutes) and
// streams through a callback protocol. Apps want async/await and AsyncSequence, and must never
// block the main actor or Swift concurrency's small cooperative thread pool. This file adapts
// one to the other. Cancellation needs no protocol of its own: each call gets a `CancelToken`
// made before it starts, so a cancel at any moment reaches it.
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

    /// A multi-turn chat in the model's chat format with its own KV cache (allocated here),
    /// starting with `system` as a preamble if given.
    public func newChat(options: SessionOptions = SessionOptions(), system: String? = nil) throws -> PocketLmChat {
        PocketLmChat(raw: try raw.newChat(options: options, system: system))
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
/// One call runs at a time: a second `generate` or `generateIds` while one is running throws
/// `PocketLmError.Busy` instead of queueing, because silently serialising two answers into one
/// conversation is never what a UI meant. The exception is a call that was already cancelled
/// and is only winding down (at most one layer of work): a new call waits for it, so "stop,
/// then send" works without the app having to wait for anything.
public final class PocketLmSession: Sendable {
    let raw: Session
    private let calls = Calls()
    private let stats = Locked<GenerationStats?>(nil)

    /// Tokens of context this session was created with (prompt + answers).
    public let contextSize: Int

    init(raw: Session) {
        self.raw = raw
        self.contextSize = Int(raw.contextSize())
    }

    /// Statistics of the last generation that ended (finished, stopped or cancelled), as
    /// reported by the runtime at its end. Set before the stream finishes, so it is current
    /// when a `for try await` loop over `generate` exits. A call that failed (it threw) does
    /// not change it.
    public var lastStats: GenerationStats? {
        stats.withLock { $0 }
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
        textStream(name: "PocketLm.generate", calls: calls, stats: stats) { [raw] sink, token in
            _ = try raw.generate(prompt: prompt, options: options, stream: sink, cancel: token)
        }
    }

    /// Generates from token ids and returns the generated ids with the statistics.
    ///
    /// Runs on its own thread. Cancelling the calling `Task` cancels the native generation,
    /// which then returns what was generated so far (`stats.stopReason == .cancelled`; no
    /// tokens if it was cancelled before it started).
    public func generateIds(
        _ prompt: [UInt32],
        options: GenerateOptions = GenerateOptions()
    ) async throws -> GenerationResult {
        let token = calls.begin()
        return try await withTaskCancellationHandler {
            try await BackgroundThread.run(name: "PocketLm.generateIds") { [self] in
                defer { calls.end(token) }
                let result = try raw.generateIds(prompt: prompt, options: options, cancel: token)
                stats.withLock { $0 = result.stats }
                return result
            }
        } onCancel: {
            token.cancel()
        }
    }

    /// Stops the generations started on this session that have not ended yet, from any
    /// thread, including one whose thread has not reached the runtime. Their streams then
    /// finish normally with `lastStats.stopReason == .cancelled`.
    public func cancel() {
        calls.cancelAll()
        raw.cancel()
    }

    /// Forgets the conversation (the context memory is kept for the next one). A running
    /// generation is cancelled and waited for first (at most one layer of work).
    public func reset() throws {
        cancel()
        try raw.reset()
    }
}

// MARK: - Chat

/// A multi-turn chat in the model's chat format (its GGUF chat template, else BTLM chat's
/// "Human:/Assistant:" turns). Each `send` appends the user's message and the reply; the KV
/// cache is kept across turns, so a turn reads only its own new tokens. One reply at a time,
/// as for `PocketLmSession`.
public final class PocketLmChat: Sendable {
    let raw: Chat
    private let calls = Calls()
    private let stats = Locked<GenerationStats?>(nil)

    /// Tokens of context this chat was created with.
    public let contextSize: Int

    init(raw: Chat) {
        self.raw = raw
        self.contextSize = Int(raw.contextSize())
    }

    /// Statistics of the last reply that ended (whatever the reason); a failed one does not
    /// change it.
    public var lastStats: GenerationStats? {
        stats.withLock { $0 }
    }

    /// Tokens of the conversation in the KV cache, updated live during a reply.
    public var tokenCount: Int {
        Int(raw.tokenCount())
    }

    /// The conversation so far: a system message first if there is one, then the turns.
    public func messages() throws -> [ChatMessage] {
        try raw.messages()
    }

    /// Sends `text` and streams the reply, as `PocketLmSession.generate` streams an answer:
    /// terminating the stream stops the reply (what was generated stays in the history), and
    /// an error finishes it throwing, with the history as it was.
    public func send(_ text: String, options: GenerateOptions = GenerateOptions()) -> AsyncThrowingStream<String, Error> {
        textStream(name: "PocketLm.chat", calls: calls, stats: stats) { [raw] sink, token in
            _ = try raw.send(text: text, options: options, stream: sink, cancel: token)
        }
    }

    /// Replaces the history (edited or restored); the next turn reuses the cache up to the
    /// first change.
    public func setMessages(_ messages: [ChatMessage]) throws {
        calls.cancelAll()
        try raw.setMessages(messages: messages)
    }

    /// Stops the reply being generated, if any, from any thread.
    public func cancel() {
        calls.cancelAll()
        raw.cancel()
    }

    /// Forgets the conversation but a system message (a running reply is cancelled first).
    public func reset() throws {
        cancel()
        try raw.reset()
    }
}

// MARK: - Internals

/// The cancel tokens of the calls started through a wrapper that have not ended yet, so its
/// `cancel()` reaches a call whose thread has not reached the runtime.
final class Calls: Sendable {
    private let tokens = Locked([ObjectIdentifier: CancelToken]())

    func begin() -> CancelToken {
        let token = CancelToken()
        tokens.withLock { $0[ObjectIdentifier(token)] = token }
        return token
    }

    func end(_ token: CancelToken) {
        tokens.withLock { $0[ObjectIdentifier(token)] = nil }
    }

    func cancelAll() {
        for token in tokens.withLock({ Array($0.values) }) {
            token.cancel()
        }
    }
}

/// One blocking native call that streams text, as an `AsyncThrowingStream`: `body` runs on
/// its own thread with a sink feeding the stream and the call's cancel token. Any termination
/// of the stream (consumer cancelled, loop exited, stream dropped, or our own finish) cancels
/// the token, which is a no-op once the call is done.
func textStream(
    name: String, calls: Calls, stats: Locked<GenerationStats?>,
    _ body: @escaping @Sendable (StreamSink, CancelToken) throws -> Void
) -> AsyncThrowingStream<String, Error> {
    // Unbounded buffer: pieces are small and come slower than any UI reads them, and a
    // bounded one would drop text (AsyncStream cannot slow the native loop down).
    let (stream, continuation) = AsyncThrowingStream<String, Error>.makeStream()
    let token = calls.begin()
    continuation.onTermination = { _ in token.cancel() }
    let sink = StreamSink(continuation: continuation, token: token, stats: stats)
    BackgroundThread.start(name: name) {
        defer { calls.end(token) }
        do {
            try body(sink, token)
            continuation.finish()
        } catch {
            continuation.finish(throwing: error)
        }
    }
    return stream
}

/// Receives the native callbacks (on a runtime worker thread) and feeds the stream.
final class StreamSink: TokenStream, Sendable {
    let continuation: AsyncThrowingStream<String, Error>.Continuation
    let token: CancelToken
    let stats: Locked<GenerationStats?>

    init(continuation: AsyncThrowingStream<String, Error>.Continuation, token: CancelToken, stats: Locked<GenerationStats?>) {
        self.continuation = continuation
        self.token = token
        self.stats = stats
    }

    func onText(text: String) {
        // Nothing after a cancel: the consumer asked to stop, even if the runtime is still
        // finishing its current layer.
        if !token.isCancelled() {
            continuation.yield(text)
        }
    }

    func onFinish(stats: GenerationStats) {
        // A failed call reports its error through the stream instead.
        if stats.stopReason != .error {
            self.stats.withLock { $0 = stats }
        }
    }
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
