import Foundation
import XCTest
@testable import PocketLm  // testable: the raw uniffi objects behind the wrapper

/// The Swift API against the real debug libpocketlm and the tiny BTLM test model.
///
/// @unchecked Sendable: in Swift 6 mode, the test-discovery code SwiftPM generates on Linux
/// captures the test case in a Sendable closure for each async test. The class has no state.
final class PocketLmTests: XCTestCase, @unchecked Sendable {

    // MARK: generation

    /// The fixture's reference: 16 greedy tokens after the prompt, through the async wrapper
    /// and through the raw uniffi object on a plain thread.
    func testGreedyMatchesFixture() async throws {
        let fx = try Fixtures.load()
        let model = try await PocketLmModel.load(path: fx.tiny)
        XCTAssertEqual(model.info.architecture, "btlm")
        XCTAssertEqual(model.info.nLayer, fx.shape[0])

        let session = try model.newSession()
        let result = try await session.generateIds(fx.prompt, options: greedy(16))
        XCTAssertEqual(result.tokenIds, fx.greedy)
        XCTAssertEqual(result.stats.generatedTokens, 16)
        XCTAssertEqual(result.stats.promptTokens, UInt32(fx.prompt.count))
        XCTAssertEqual(result.stats.stopReason, .maxTokens)
        XCTAssertEqual(session.lastStats, result.stats)
        // The last generated token is fed back so the conversation can continue.
        XCTAssertEqual(session.tokenCount, fx.prompt.count + 16)

        let raw = try Model.load(path: fx.tiny, options: ModelOptions())
        let rawSession = try raw.newSession(options: SessionOptions())
        let rawResult = try Worker { try rawSession.generateIds(prompt: fx.prompt, options: greedy(16)) }.join()
        XCTAssertEqual(rawResult.tokenIds, fx.greedy)
    }

    /// Streamed pieces, joined, are exactly the decoded answer, and the end is reported
    /// through onFinish (the wrapper's lastStats comes from it).
    func testSpeculativeDraftsKeepTheTokens() async throws {
        let fx = try Fixtures.load()
        let model = try await PocketLmModel.load(path: fx.tiny)
        let session = try model.newSession()
        var off = greedy(32)
        off.draftTokens = 0
        let plain = try await session.generateIds(fx.prompt, options: off)
        try session.reset()
        var on = greedy(32)
        on.draftTokens = 8
        let drafted = try await session.generateIds(fx.prompt, options: on)
        XCTAssertEqual(plain.tokenIds, drafted.tokenIds)
        XCTAssertEqual(plain.stats.draftedTokens, 0)
        XCTAssertGreaterThan(drafted.stats.draftedTokens, 0, "the tiny fixture repeats itself: drafts are expected")
        XCTAssertLessThanOrEqual(drafted.stats.acceptedDraftTokens, drafted.stats.draftedTokens)
    }

    func testStreamedTextAndStats() async throws {
        let fx = try Fixtures.load()
        let model = try await PocketLmModel.load(path: fx.tiny)
        let promptText = try model.detokenize(fx.prompt)
        let promptIds = try model.tokenize(promptText)

        // Reference ids for the text prompt (which tokenizes to promptIds).
        let reference = try await model.newSession().generateIds(promptIds, options: greedy(16))
        XCTAssertEqual(reference.tokenIds.count, 16)
        if promptIds == fx.prompt {
            XCTAssertEqual(reference.tokenIds, fx.greedy)
        }
        let expectedText = try model.detokenize(reference.tokenIds)

        let session = try model.newSession()
        var pieces: [String] = []
        for try await piece in session.generate(promptText, options: greedy(16)) {
            pieces.append(piece)
        }
        XCTAssertFalse(pieces.isEmpty)
        XCTAssertEqual(pieces.joined(), expectedText)
        let stats = try XCTUnwrap(session.lastStats)
        XCTAssertEqual(stats.generatedTokens, 16)
        XCTAssertEqual(stats.promptTokens, UInt32(promptIds.count))
        XCTAssertGreaterThan(stats.generationTokensPerSecond, 0)
        XCTAssertGreaterThan(stats.promptTokensPerSecond, 0)
        XCTAssertEqual(stats.stopReason, .maxTokens)

        // The same through the uniffi callback protocol: onFinish exactly once, after the text.
        let raw = try Model.load(path: fx.tiny, options: ModelOptions())
        let rawSession = try raw.newSession(options: SessionOptions())
        let sink = RecordingStream()
        let rawStats = try Worker { try rawSession.generate(prompt: promptText, options: greedy(16), stream: sink) }.join()
        XCTAssertEqual(sink.pieces.joined(), expectedText)
        XCTAssertEqual(sink.finished, [rawStats])
        XCTAssertEqual(rawStats.generatedTokens, 16)
        XCTAssertGreaterThan(rawStats.generationTokensPerSecond, 0)
        XCTAssertEqual(rawStats.stopReason, .maxTokens)
    }

    /// The usage example of ios/README.md, verbatim but for the model path (keep in sync).
    func testReadmeExample() async throws {
        let modelPath = try Fixtures.load().tiny
        let model = try await PocketLmModel.load(path: modelPath)
        let session = try model.newSession()
        for try await piece in session.generate("The capital of France is", options: GenerateOptions(maxTokens: 32)) { print(piece, terminator: "") }
        print("\n\(session.lastStats!.generationTokensPerSecond) tokens/s")
        XCTAssertGreaterThan(session.lastStats!.generatedTokens, 0)
    }

    /// Every KV cache type opens a session and answers; the exact ones give the golden ids.
    func testEveryKvCacheType() throws {
        let fx = try Fixtures.load()
        let raw = try Model.load(path: fx.tiny, options: ModelOptions())
        for type in [KvCacheType.f16, .f32, .q80, .q4] {
            let session = try raw.newSession(options: SessionOptions(kvCacheType: type))
            let result = try Worker { try session.generateIds(prompt: fx.prompt, options: greedy(16)) }.join()
            XCTAssertEqual(result.tokenIds.count, 16, "\(type)")
            if type == .f16 || type == .f32 {
                XCTAssertEqual(result.tokenIds, fx.greedy, "\(type)")
            }
        }
    }

    // MARK: cancellation

    /// session.cancel() from another thread stops a long generation within one token, and
    /// leaves the session usable.
    func testCancelFromAnotherThread() async throws {
        let fx = try Fixtures.load()
        let raw = try Model.load(path: fx.tiny, options: ModelOptions())
        let session = try raw.newSession(options: SessionOptions(contextSize: 8192))
        let sink = RecordingStream()
        let prompt = try raw.detokenize(ids: fx.prompt)
        let worker = Worker { try session.generate(prompt: prompt, options: greedy(5000), stream: sink) }

        let started = await waitUntil { sink.pieces.count >= 10 }
        XCTAssertTrue(started, "generation did not start")
        session.cancel()
        // Read after cancel() returns: a token may finish between a read before it and the
        // cancel, so only a count taken after it bounds what the cancel lets through.
        let atCancel = Int(session.tokenCount())
        let stats = try worker.join()
        let afterReturn = Int(session.tokenCount())

        XCTAssertEqual(stats.stopReason, .cancelled)
        XCTAssertLessThan(stats.generatedTokens, 5000)
        XCTAssertGreaterThanOrEqual(afterReturn, atCancel)
        XCTAssertLessThanOrEqual(afterReturn, atCancel + 1, "more than one token after the cancel")
        await pause(0.2)
        XCTAssertEqual(Int(session.tokenCount()), afterReturn, "still generating after returning")
        XCTAssertEqual(sink.finished.count, 1)

        // Still usable: a fresh conversation gives the reference answer.
        try session.reset()
        XCTAssertEqual(session.tokenCount(), 0)
        let again = try Worker { try session.generateIds(prompt: fx.prompt, options: greedy(16)) }.join()
        XCTAssertEqual(again.tokenIds, fx.greedy)

        // The wrapper's cancel() ends the stream normally, with stopReason .cancelled.
        let model = try await PocketLmModel.load(path: fx.tiny)
        let wrapped = try model.newSession(options: SessionOptions(contextSize: 8192))
        var received = 0
        for try await _ in wrapped.generate(prompt, options: greedy(5000)) {
            received += 1
            if received == 10 {
                let cancelled = Worker { wrapped.cancel() }
                try cancelled.join()
            }
        }
        // Pieces already buffered before the cancel may still arrive, nothing much after.
        XCTAssertLessThan(received, 5000)
        XCTAssertEqual(wrapped.lastStats?.stopReason, .cancelled)
        XCTAssertLessThan(try XCTUnwrap(wrapped.lastStats).generatedTokens, 5000)
        let reference = try await wrapped.generateIds(fx.prompt, options: greedy(16))  // no reset: appends
        XCTAssertEqual(reference.tokenIds.count, 16)
    }

    /// Cancelling the Task that consumes the stream stops the native generation.
    func testTaskCancellationStopsNativeGeneration() async throws {
        let fx = try Fixtures.load()
        let model = try await PocketLmModel.load(path: fx.tiny)
        let session = try model.newSession(options: SessionOptions(contextSize: 8192))
        let prompt = try model.detokenize(fx.prompt)
        let received = Shared(0)

        let consumer = Task {
            for try await _ in session.generate(prompt, options: greedy(5000)) {
                received.with { $0 += 1 }
            }
        }
        let started = await waitUntil { received.get >= 10 }
        XCTAssertTrue(started, "generation did not start")
        consumer.cancel()
        _ = await consumer.result

        let settled = await settledTokenCount { session.tokenCount }
        XCTAssertLessThan(settled, fx.prompt.count + 1000, "native generation kept running")
        let ended = await waitUntil { session.lastStats?.stopReason == .cancelled }
        XCTAssertTrue(ended)
        XCTAssertLessThan(try XCTUnwrap(session.lastStats).generatedTokens, 1000)

        // A new generation right after the cancel works (it waits for the old one to unwind).
        try session.reset()
        let again = try await session.generateIds(fx.prompt, options: greedy(16))
        XCTAssertEqual(again.tokenIds, fx.greedy)
    }

    /// A cancel that comes before the native call has started (or while it is entering Rust)
    /// is not lost: each call has its own token, made before it starts.
    func testCancelBeforeStartIsNotLost() async throws {
        let fx = try Fixtures.load()
        let model = try await PocketLmModel.load(path: fx.tiny)
        let session = try model.newSession(options: SessionOptions(contextSize: 8192))
        let prompt = try model.detokenize(fx.prompt)
        for round in 0..<24 {
            let stream = session.generate(prompt, options: greedy(200))
            if round % 2 == 1 {
                // Let the worker thread get going, to land inside the native call.
                await pause(Double(round) * 0.0002)
            }
            session.cancel()
            var pieces = 0
            for try await _ in stream { pieces += 1 }
            let stats = try XCTUnwrap(session.lastStats)
            XCTAssertEqual(stats.stopReason, .cancelled, "round \(round)")
            XCTAssertLessThan(stats.generatedTokens, 50, "round \(round): cancel was lost")
            XCTAssertLessThan(pieces, 50)
            try session.reset()
        }

        // The raw API: a token cancelled before the call makes it return at once, before any
        // work, and belongs to that call only.
        let token = CancelToken()
        token.cancel()
        let sink = RecordingStream()
        let st = try Worker { try session.raw.generate(prompt: prompt, options: greedy(200), stream: sink, cancel: token) }.join()
        XCTAssertEqual(st.stopReason, .cancelled)
        XCTAssertEqual(st.generatedTokens, 0)
        XCTAssertEqual(session.tokenCount, 0, "not even the prompt was read")
        XCTAssertEqual(sink.finished, [st])
        let fresh = try Worker { try session.raw.generateIds(prompt: fx.prompt, options: greedy(16), cancel: CancelToken()) }.join()
        XCTAssertEqual(fresh.tokenIds, fx.greedy)
        try session.reset()

        // Same for generateIds in a Task cancelled right away.
        let task = Task { try await session.generateIds(fx.prompt, options: greedy(200)) }
        task.cancel()
        let r = try await task.value
        XCTAssertEqual(r.stats.stopReason, .cancelled)
        XCTAssertLessThan(r.stats.generatedTokens, 50)
    }

    /// onFinish comes exactly once also when the call fails, with stopReason .error; the call
    /// throws the error, whose text names the problem.
    func testJsonSchemaConstrainsTheAnswer() async throws {
        let fx = try Fixtures.load()
        let model = try await PocketLmModel.load(path: fx.tiny)
        let schema = #"{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":9}},"required":["n"],"additionalProperties":false}"#
        for seed: UInt64 in 1...5 {
            let session = try model.newSession()
            var text = ""
            let options = GenerateOptions(maxTokens: 20, temperature: 1, seed: seed, jsonSchema: schema)
            for try await piece in session.generate("Pick a number:", options: options) { text += piece }
            let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Int]
            XCTAssertNotNil(object?["n"], text)
            XCTAssertTrue((0...9).contains(object?["n"] ?? -1), text)
        }
    }

    func testOnFinishOnFailure() throws {
        let fx = try Fixtures.load()
        let raw = try Model.load(path: fx.tiny, options: ModelOptions())
        let session = try raw.newSession(options: SessionOptions(contextSize: 32))
        let long = String(repeating: try raw.detokenize(ids: fx.prompt), count: 20)
        let sink = RecordingStream()
        XCTAssertThrowsError(try Worker { try session.generate(prompt: long, options: greedy(16), stream: sink) }.join()) { error in
            guard case PocketLmError.ContextFull(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("context"), message)
        }
        XCTAssertEqual(sink.finished.map(\.stopReason), [.error])
    }

    // MARK: errors

    func testLoadErrors() async throws {
        let fx = try Fixtures.load()
        let missing = fx.dir + "/no-such-model.gguf"
        do {
            _ = try await PocketLmModel.load(path: missing)
            XCTFail("loaded a missing file")
        } catch PocketLmError.FileNotFound(let message) {
            XCTAssertTrue(message.contains("no-such-model.gguf"), message)
        }
        do {
            _ = try await PocketLmModel.load(path: fx.corrupt)
            XCTFail("loaded a truncated file")
        } catch PocketLmError.InvalidModel(let message) {
            XCTAssertTrue(message.contains("corrupt.gguf"), message)
            let lower = message.lowercased()
            XCTAssertTrue(["trunc", "size", "short", "end", "bounds", "past"].contains { lower.contains($0) }, message)
        }
        do {
            _ = try await PocketLmModel.load(path: fx.wrongArch)
            XCTFail("loaded a gpt2 file")
        } catch PocketLmError.WrongArchitecture(let message) {
            XCTAssertTrue(message.contains("gpt2"), message)
        }
        // The raw API throws the same.
        XCTAssertThrowsError(try Model.load(path: missing, options: ModelOptions())) { error in
            guard case PocketLmError.FileNotFound = error else { return XCTFail("\(error)") }
        }
    }

    // MARK: threads

    /// Two sessions of one model, driven from two threads at once, do not disturb each other.
    func testTwoSessionsOnTwoThreads() async throws {
        let fx = try Fixtures.load()
        let model = try await PocketLmModel.load(path: fx.tiny)
        let otherPrompt = Array(fx.prompt.prefix(10))
        let otherExpected = try await model.newSession().generateIds(otherPrompt, options: greedy(24)).tokenIds

        let raw = try Model.load(path: fx.tiny, options: ModelOptions())
        let a = try raw.newSession(options: SessionOptions())
        let b = try raw.newSession(options: SessionOptions())
        for _ in 0..<3 {
            try a.reset()
            try b.reset()
            let wa = Worker { try a.generateIds(prompt: fx.prompt, options: greedy(16)).tokenIds }
            let wb = Worker { try b.generateIds(prompt: otherPrompt, options: greedy(24)).tokenIds }
            XCTAssertEqual(try wa.join(), fx.greedy)
            XCTAssertEqual(try wb.join(), otherExpected)
        }

        // And through the wrapper, as concurrent async calls.
        let s1 = try model.newSession()
        let s2 = try model.newSession()
        async let r1 = s1.generateIds(fx.prompt, options: greedy(16))
        async let r2 = s2.generateIds(otherPrompt, options: greedy(24))
        let (x, y) = try await (r1, r2)
        XCTAssertEqual(x.tokenIds, fx.greedy)
        XCTAssertEqual(y.tokenIds, otherExpected)
    }

    /// A second generation on a busy session is refused with Busy, not queued or interleaved.
    func testConcurrentCallsOnOneSessionAreBusy() async throws {
        let fx = try Fixtures.load()
        let raw = try Model.load(path: fx.tiny, options: ModelOptions())
        let session = try raw.newSession(options: SessionOptions(contextSize: 8192))
        let prompt = try raw.detokenize(ids: fx.prompt)
        let sink = RecordingStream()
        let first = Worker { try session.generate(prompt: prompt, options: greedy(5000), stream: sink) }
        let started = await waitUntil { sink.pieces.count >= 3 }
        XCTAssertTrue(started, "generation did not start")

        let second = Worker { try session.generateIds(prompt: fx.prompt, options: greedy(16)) }
        XCTAssertThrowsError(try second.join()) { error in
            guard case PocketLmError.Busy(let message) = error else { return XCTFail("\(error)") }
            XCTAssertFalse(message.isEmpty)
        }
        XCTAssertEqual(session.contextSize(), 8192, "context size while a generation runs")
        // reset() stops the running call, waits for it and clears.
        try session.reset()
        XCTAssertEqual(session.tokenCount(), 0)
        XCTAssertEqual(try first.join().stopReason, .cancelled)

        // The wrapper refuses the same way: the second stream throws Busy.
        let model = try await PocketLmModel.load(path: fx.tiny)
        let wrapped = try model.newSession(options: SessionOptions(contextSize: 8192))
        let long = wrapped.generate(prompt, options: greedy(5000))
        var iterator = long.makeAsyncIterator()
        _ = try await iterator.next()  // the first call is running
        do {
            for try await _ in wrapped.generate(prompt, options: greedy(16)) {}
            XCTFail("second generation on a busy session ran")
        } catch PocketLmError.Busy {}
        do {
            _ = try await wrapped.generateIds(fx.prompt, options: greedy(16))
            XCTFail("generateIds on a busy session ran")
        } catch PocketLmError.Busy {}
        wrapped.cancel()
        while try await iterator.next() != nil {}
        XCTAssertEqual(wrapped.lastStats?.stopReason, .cancelled)
    }

    // MARK: chat

    /// A chat keeps its KV cache across turns; a reply cut short stops natively and the chat
    /// goes on; reset keeps the system message.
    func testChatKeepsItsCacheAcrossTurns() async throws {
        let fx = try Fixtures.load()
        let model = try await PocketLmModel.load(path: fx.tiny)
        let chat = try model.newChat(options: SessionOptions(contextSize: 8192), system: "About Persuasion.")
        var first = ""
        for try await piece in chat.send("Who is Anne?", options: greedy(8)) { first += piece }
        XCTAssertFalse(first.isEmpty)
        let afterFirst = chat.tokenCount
        for try await _ in chat.send("And her father?", options: greedy(8)) {}
        XCTAssertGreaterThan(chat.tokenCount, afterFirst, "the second turn extends the cached conversation")
        XCTAssertEqual(try chat.messages().map(\.role), [.system, .user, .assistant, .user, .assistant])
        XCTAssertEqual(try chat.messages()[2].content, first.trimmingCharacters(in: .whitespacesAndNewlines))

        var pieces = 0
        for try await _ in chat.send("Tell me everything.", options: greedy(5000)) {
            pieces += 1
            if pieces == 3 { break }
        }
        let ended = await waitUntil { chat.lastStats?.stopReason == .cancelled }
        XCTAssertTrue(ended, "breaking out of the loop cancels the reply")
        try chat.reset()
        XCTAssertEqual(try chat.messages().map(\.role), [.system])
        var again = ""
        for try await piece in chat.send("Who is Anne?", options: greedy(8)) { again += piece }
        XCTAssertEqual(again, first, "after a reset the same question gets the same greedy answer")
    }
}
