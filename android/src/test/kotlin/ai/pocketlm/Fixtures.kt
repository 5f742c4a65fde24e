package ai.pocketlm

import java.io.File
import uniffi.pocketlm.GenerateOptions
import uniffi.pocketlm.GenerationStats
import uniffi.pocketlm.TokenStream

/**
 * The models written by scripts/make-test-models.sh. Their folder comes from the system property
 * `pocketlm.testModels` (scripts/test-kotlin.sh and Gradle set it), else build/test-models under
 * the working directory.
 */
object Fixtures {
    private val dir = File(System.getProperty("pocketlm.testModels") ?: "build/test-models")

    val tiny: String = File(dir, "tiny.gguf").path
    val corrupt: String = File(dir, "corrupt.gguf").path
    val wrongArch: String = File(dir, "wrong-arch.gguf").path
    val missing: String = File(dir, "no-such-model.gguf").path

    /** The golden fixture's prompt ids and the 16 ids greedy decoding must produce after them. */
    val prompt: List<UInt> = ids("tiny.prompt")
    val greedy: List<UInt> = ids("tiny.greedy")

    /** n_layer, n_embd and vocabulary size of the fixture tiny.gguf was converted from. */
    private val shape: List<UInt> = ids("tiny.shape")
    val nLayer: UInt = shape[0]
    val nEmbd: UInt = shape[1]
    val vocabSize: UInt = shape[2]

    /** Long enough that a generation is always still running when a test cancels it. */
    const val LONG = 5000u
    const val LONG_CONTEXT = 8192u

    fun greedyOptions(maxTokens: UInt = 16u) =
        GenerateOptions(maxTokens = maxTokens, temperature = 0f, stopAtEndOfText = false)

    private fun ids(name: String): List<UInt> =
        File(dir, name).readText().trim().split(",").map { it.trim().toUInt() }
}

/** A [TokenStream] that records what it is given. */
class RecordingStream : TokenStream {
    val pieces: MutableList<String> = java.util.Collections.synchronizedList(mutableListOf())
    val finished: MutableList<GenerationStats> = java.util.Collections.synchronizedList(mutableListOf())

    override fun onText(text: String) {
        pieces.add(text)
    }

    override fun onFinish(stats: GenerationStats) {
        finished.add(stats)
    }

    val text: String
        get() = synchronized(pieces) { pieces.joinToString("") }
}

/** Polls [condition] every millisecond; fails the test after [timeoutMs]. */
fun waitUntil(what: String, timeoutMs: Long = 60_000, condition: () -> Boolean) {
    val deadline = System.nanoTime() + timeoutMs * 1_000_000
    while (!condition()) {
        check(System.nanoTime() < deadline) { "timed out waiting for: $what" }
        Thread.sleep(1)
    }
}
