import Foundation
import XCTest
@testable import PocketLm

/// The punctuation model through the async wrapper (the built-in model; no fixture needed).
final class PunctuatorTests: XCTestCase, @unchecked Sendable {
    func testTextOnly() async throws {
        let p = try await PocketLmPunctuator.builtin()
        XCTAssertEqual(p.labels, ["none", "comma", "period", "question"])
        let r = try await p.punctuate(text: "i think so")
        XCTAssertTrue(r.text.hasPrefix("I think so"), r.text)
        XCTAssertFalse(r.usedAudio)
        XCTAssertEqual(r.words.map { $0.word }, ["i", "think", "so"])
        for w in r.words {
            XCTAssertEqual(w.probabilities.count, 4)
            XCTAssertEqual(w.probabilities.reduce(0, +), 1, accuracy: 1e-3)
            XCTAssertTrue(p.labels.contains(w.label))
        }
        let same = try await p.punctuate(["i", "think", "so"])
        XCTAssertEqual(same.text, r.text)
    }

    func testWithAudio() async throws {
        let p = try await PocketLmPunctuator.builtin()
        let timings = [WordTime(startSeconds: 0.1, endSeconds: 0.5), WordTime(startSeconds: 0.9, endSeconds: 1.3)]
        let rate = 16000
        var pcm = [Int16](repeating: 0, count: rate * 16 / 10)
        for w in timings {
            for i in Int(w.startSeconds * Float(rate))..<Int(w.endSeconds * Float(rate)) {
                let t = Double(i) / Double(rate)
                pcm[i] = Int16(8000 * (sin(2 * .pi * 140 * t) + 0.5 * sin(4 * .pi * 140 * t)))
            }
        }
        let audio = PocketLmPunctuator.audio(pcm16: pcm, sampleRate: UInt32(rate), timings: timings)
        let r = try await p.punctuate(["yes", "indeed"], audio: audio)
        XCTAssertTrue(r.usedAudio)
        XCTAssertEqual(r.words.map { $0.word }, ["yes", "indeed"])
    }

    func testBadInput() async throws {
        let p = try await PocketLmPunctuator.builtin()
        func expectInvalid(_ needle: String, _ body: () async throws -> Void) async {
            do {
                try await body()
                XCTFail("expected an error naming \(needle)")
            } catch PocketLmError.InvalidArgument(let message) {
                XCTAssertTrue(message.contains(needle), message)
            } catch {
                XCTFail("expected InvalidArgument(\(needle)), got \(error)")
            }
        }
        await expectInvalid("empty") { _ = try await p.punctuate([]) }
        let silence = [Float](repeating: 0, count: 16000)
        let one = [WordTime(startSeconds: 0, endSeconds: 0.2)]
        await expectInvalid("2 words but 1 word timings") {
            _ = try await p.punctuate(["one", "two"], audio: PunctuationAudio(samples: silence, sampleRate: 16000, timings: one))
        }
        let late = [WordTime(startSeconds: 0.5, endSeconds: 3)]
        await expectInvalid("after the end of the audio") {
            _ = try await p.punctuate(["one"], audio: PunctuationAudio(samples: silence, sampleRate: 16000, timings: late))
        }
        var nan = silence
        nan[9] = .nan
        await expectInvalid("sample 9") {
            _ = try await p.punctuate(["one"], audio: PunctuationAudio(samples: nan, sampleRate: 16000, timings: one))
        }
        do {
            _ = try await PocketLmPunctuator.load(path: "/nonexistent/punct.gguf")
            XCTFail("loaded a missing file")
        } catch PocketLmError.FileNotFound(let message) {
            XCTAssertTrue(message.contains("punct.gguf"), message)
        }
    }
}
