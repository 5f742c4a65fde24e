// Punctuation and capitals for speech-recognition text, the async face of the generated
// `Punctuator`. Results (`PunctuationResult`, `PunctuatedWord`), audio (`PunctuationAudio`,
// `WordTime`) and errors (`PocketLmError`) are the generated types.

import Foundation

/// "hey anna how are you" -> "Hey, Anna. How are you?", from the words alone or with the
/// utterance's audio and the word timings the ASR returned. About 290 KB and well under a
/// millisecond per utterance; thread-safe, so one instance serves the whole app.
public final class PocketLmPunctuator: Sendable {
    let raw: Punctuator

    /// The labels each word's probabilities refer to, in order ("none" first).
    public let labels: [String]

    private init(raw: Punctuator) {
        self.raw = raw
        self.labels = raw.labels()
    }

    /// The English model built into the library: nothing to bundle or download.
    public static func builtin() async throws -> PocketLmPunctuator {
        try await BackgroundThread.run(name: "PocketLm.punctuator") { PocketLmPunctuator(raw: try Punctuator.builtin()) }
    }

    /// A punctuation model file (GGUF, architecture "punct-qrnn").
    public static func load(path: String) async throws -> PocketLmPunctuator {
        try await BackgroundThread.run(name: "PocketLm.punctuator") { PocketLmPunctuator(raw: try Punctuator.load(path: path)) }
    }

    /// Punctuates `words` (one per ASR word), with `audio` if given.
    ///
    /// - Throws: `PocketLmError.InvalidArgument` for no words, timings that do not match the
    ///   words or lie outside the audio, NaN samples or a bad sample rate (the message names it).
    public func punctuate(_ words: [String], audio: PunctuationAudio? = nil) async throws -> PunctuationResult {
        let raw = self.raw
        return try await BackgroundThread.run(name: "PocketLm.punctuate") { try raw.punctuate(words: words, audio: audio) }
    }

    /// Splits `text` on whitespace and punctuates it (text only).
    public func punctuate(text: String) async throws -> PunctuationResult {
        let raw = self.raw
        return try await BackgroundThread.run(name: "PocketLm.punctuate") { try raw.punctuateText(text: text) }
    }

    /// Audio from 16-bit PCM (as AVAudioEngine or an ASR gives it) and one timing per word.
    public static func audio(pcm16: [Int16], sampleRate: UInt32, timings: [WordTime]) -> PunctuationAudio {
        punctuationAudioFromPcm16(pcm: pcm16, sampleRate: sampleRate, timings: timings)
    }
}
