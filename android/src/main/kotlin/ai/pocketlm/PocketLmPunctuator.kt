package ai.pocketlm

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext
import uniffi.pocketlm.PunctuationAudio
import uniffi.pocketlm.PunctuationResult
import uniffi.pocketlm.Punctuator
import uniffi.pocketlm.WordTime
import uniffi.pocketlm.punctuationAudioFromPcm16

/**
 * Punctuation and capitals for speech-recognition text: "hey anna how are you" becomes
 * "Hey, Anna. How are you?", from the words alone or with the utterance's audio and the word
 * timings the ASR returned (pauses, pitch and timing then decide). The idiomatic face of the
 * generated [uniffi.pocketlm.Punctuator]; results and errors are the generated types.
 *
 * About 290 KB and well under a millisecond per utterance; calls still run on
 * [Dispatchers.Default] so an app can call them from the main thread's coroutines.
 */
class PocketLmPunctuator private constructor(private val native: Punctuator) : AutoCloseable {
    /** The labels each word's probabilities refer to, in order ("none" first). */
    val labels: List<String> = native.labels()

    /**
     * Punctuates [words] (one per ASR word), with [audio] if given.
     *
     * @throws uniffi.pocketlm.PocketLmException.InvalidArgument for no words, timings that do
     *   not match the words or lie outside the audio, NaN samples or a bad sample rate; the
     *   message names the word or sample.
     */
    suspend fun punctuate(words: List<String>, audio: PunctuationAudio? = null): PunctuationResult =
        withContext(Dispatchers.Default) { native.punctuate(words, audio) }

    /** Splits [text] on whitespace and punctuates it (text only). */
    suspend fun punctuate(text: String): PunctuationResult =
        withContext(Dispatchers.Default) { native.punctuateText(text) }

    override fun close() = native.close()

    companion object {
        /** The English model built into the native library. */
        suspend fun builtin(): PocketLmPunctuator = withContext(Dispatchers.IO) { PocketLmPunctuator(Punctuator.builtin()) }

        /** A punctuation model file (GGUF, architecture "punct-qrnn"). */
        suspend fun load(path: String): PocketLmPunctuator =
            withContext(Dispatchers.IO) { PocketLmPunctuator(Punctuator.load(path)) }

        /** Audio from 16-bit PCM (as Android's AudioRecord gives it) and one timing per word. */
        fun audio(pcm: ShortArray, sampleRate: Int, timings: List<WordTime>): PunctuationAudio =
            punctuationAudioFromPcm16(pcm.toList(), sampleRate.toUInt(), timings)
    }
}
