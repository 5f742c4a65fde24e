package ai.pocketlm

import kotlin.math.PI
import kotlin.math.sin
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import uniffi.pocketlm.PocketLmException
import uniffi.pocketlm.PunctuationAudio
import uniffi.pocketlm.WordTime

/** The punctuation model through the generated API and the coroutine wrapper. */
@Timeout(60)
class PunctuatorTest {
    /** 1.6 s of a voiced (harmonic) signal where the words are, silence between them. */
    private fun speechLike(sampleRate: Int, words: List<WordTime>): ShortArray {
        val pcm = ShortArray((1.6 * sampleRate).toInt())
        for (w in words) {
            for (i in (w.startSeconds * sampleRate).toInt() until (w.endSeconds * sampleRate).toInt()) {
                val t = i.toDouble() / sampleRate
                pcm[i] = (8000 * (sin(2 * PI * 140 * t) + 0.5 * sin(4 * PI * 140 * t))).toInt().toShort()
            }
        }
        return pcm
    }

    @Test
    fun `text only - capitals, marks and a probability per label`(): Unit = runBlocking {
        PocketLmPunctuator.builtin().use { p ->
            assertEquals(listOf("none", "comma", "period", "question"), p.labels)
            val r = p.punctuate("i think so")
            assertTrue(r.text.startsWith("I think so"), r.text)
            assertEquals(3, r.words.size)
            assertTrue(!r.usedAudio)
            for (w in r.words) {
                assertEquals(4, w.probabilities.size)
                assertTrue(kotlin.math.abs(w.probabilities.sum() - 1f) < 1e-3f)
                assertTrue(w.label in p.labels)
            }
            assertEquals(r.text, p.punctuate(listOf("i", "think", "so")).text)
        }
    }

    @Test
    fun `with audio from 16-bit PCM`(): Unit = runBlocking {
        val timings = listOf(WordTime(0.1f, 0.5f), WordTime(0.9f, 1.3f))
        val audio = PocketLmPunctuator.audio(speechLike(16000, timings), 16000, timings)
        PocketLmPunctuator.builtin().use { p ->
            val r = p.punctuate(listOf("yes", "indeed"), audio)
            assertTrue(r.usedAudio)
            assertEquals(listOf("yes", "indeed"), r.words.map { it.word })
        }
    }

    @Test
    fun `bad input is a typed error that names the problem`(): Unit = runBlocking {
        PocketLmPunctuator.builtin().use { p ->
            val e1 = assertFailsWith<PocketLmException.InvalidArgument> { p.punctuate(emptyList()) }
            assertTrue("empty" in e1.message!!, e1.message)
            val audio = PunctuationAudio(List(16000) { 0f }, 16000u, listOf(WordTime(0f, 0.2f)))
            val e2 = assertFailsWith<PocketLmException.InvalidArgument> { p.punctuate(listOf("one", "two"), audio) }
            assertTrue("2 words but 1 word timings" in e2.message!!, e2.message)
            val late = PunctuationAudio(List(16000) { 0f }, 16000u, listOf(WordTime(0.5f, 3f)))
            val e3 = assertFailsWith<PocketLmException.InvalidArgument> { p.punctuate(listOf("one"), late) }
            assertTrue("after the end of the audio" in e3.message!!, e3.message)
            val nan = PunctuationAudio(List(16000) { if (it == 9) Float.NaN else 0f }, 16000u, listOf(WordTime(0f, 0.2f)))
            val e4 = assertFailsWith<PocketLmException.InvalidArgument> { p.punctuate(listOf("one"), nan) }
            assertTrue("sample 9" in e4.message!!, e4.message)
        }
        val e5 = assertFailsWith<PocketLmException.InvalidModel> { PocketLmPunctuator.load(Fixtures.tiny) }
        assertTrue("not a punctuation model" in e5.message!!, e5.message)
        assertFailsWith<PocketLmException.FileNotFound> { PocketLmPunctuator.load("/nonexistent/punct.gguf") }
    }
}
