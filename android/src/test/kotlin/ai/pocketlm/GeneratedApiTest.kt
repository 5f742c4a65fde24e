package ai.pocketlm

import java.util.concurrent.CyclicBarrier
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNotNull
import kotlin.test.assertTrue
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.Timeout
import uniffi.pocketlm.CancelToken
import uniffi.pocketlm.GenerateOptions
import uniffi.pocketlm.GenerationStats
import uniffi.pocketlm.KvCacheType
import uniffi.pocketlm.Model
import uniffi.pocketlm.ModelOptions
import uniffi.pocketlm.PocketLmException
import uniffi.pocketlm.SessionOptions
import uniffi.pocketlm.StopReason

/** The generated uniffi API (`uniffi.pocketlm`), called directly from JVM threads. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(120)
class GeneratedApiTest {
    private val model = Model.load(Fixtures.tiny, ModelOptions())
    private val promptText = model.detokenize(Fixtures.prompt)

    @AfterAll
    fun close() = model.close()

    @Test
    fun `model info describes the tiny fixture`() {
        val info = model.info()
        assertEquals("btlm", info.architecture)
        assertEquals(Fixtures.nLayer, info.nLayer)
        assertEquals(Fixtures.nEmbd, info.nEmbd)
        assertEquals(Fixtures.vocabSize, info.vocabSize)
    }

    @Test
    fun `greedy 16 tokens from the fixture prompt give the golden ids`() {
        model.newSession(SessionOptions()).use { s ->
            val r = s.generateIds(Fixtures.prompt, Fixtures.greedyOptions())
            assertEquals(Fixtures.greedy, r.tokenIds)
            assertEquals(16u, r.stats.generatedTokens)
            assertEquals(Fixtures.prompt.size.toUInt(), r.stats.promptTokens)
            assertEquals(StopReason.MAX_TOKENS, r.stats.stopReason)
            assertEquals((Fixtures.prompt.size + 16).toUInt(), s.tokenCount())
        }
    }

    @Test
    fun `speculative drafts change the speed, not the tokens`() {
        model.newSession(SessionOptions()).use { s ->
            val plain = s.generateIds(Fixtures.prompt, Fixtures.greedyOptions(32u).copy(draftTokens = 0u))
            s.reset()
            val drafted = s.generateIds(Fixtures.prompt, Fixtures.greedyOptions(32u).copy(draftTokens = 8u))
            assertEquals(plain.tokenIds, drafted.tokenIds)
            assertEquals(0u, plain.stats.draftedTokens)
            assertTrue(drafted.stats.draftedTokens > 0u, "the tiny fixture repeats itself: drafts are expected")
            assertTrue(drafted.stats.acceptedDraftTokens <= drafted.stats.draftedTokens)
        }
    }

    @Test
    fun `every KV cache type runs a session, the exact ones give the golden ids`() {
        for (type in KvCacheType.values()) {
            model.newSession(SessionOptions(kvCacheType = type)).use { s ->
                val r = s.generateIds(Fixtures.prompt, Fixtures.greedyOptions())
                assertEquals(16, r.tokenIds.size, "$type")
                assertTrue(r.tokenIds.all { it < Fixtures.vocabSize }, "$type")
                if (type == KvCacheType.F16 || type == KvCacheType.F32) assertEquals(Fixtures.greedy, r.tokenIds, "$type")
            }
        }
    }

    @Test
    fun `streamed pieces concatenate to the decoded ids and on_finish reports the stats`() {
        val stream = RecordingStream()
        val stats = model.newSession(SessionOptions()).use { it.generate(promptText, Fixtures.greedyOptions(), stream) }
        val ids = model.newSession(SessionOptions()).use {
            it.generateIds(model.tokenize(promptText), Fixtures.greedyOptions()).tokenIds
        }
        assertEquals(16, ids.size)
        assertTrue(stream.pieces.size > 1, "text arrives in pieces: ${stream.pieces}")
        assertEquals(model.detokenize(ids), stream.text)
        assertEquals(listOf(stats), stream.finished, "on_finish is called once, with the returned stats")
        assertEquals(16u, stats.generatedTokens)
        assertTrue(stats.generationTokensPerSecond > 0, "tokens/s = ${stats.generationTokensPerSecond}")
        assertTrue(stats.promptTokensPerSecond > 0)
        assertEquals(StopReason.MAX_TOKENS, stats.stopReason)
    }

    @Test
    fun `cancel from another thread stops within one token and the session stays usable`() {
        model.newSession(SessionOptions(contextSize = Fixtures.LONG_CONTEXT)).use { s ->
            val stream = RecordingStream()
            var stats: GenerationStats? = null
            val worker = thread(name = "generate") {
                stats = s.generate(promptText, Fixtures.greedyOptions(Fixtures.LONG), stream)
            }
            val promptLen = model.tokenize(promptText).size.toUInt()
            waitUntil("a few generated tokens") { s.tokenCount() >= promptLen + 5u }
            val beforeCancel = s.tokenCount()
            s.cancel()
            // Read after cancel() returns: a token may finish between the read above and the
            // cancel, so only a count taken after it bounds what the cancel lets through.
            val atCancel = s.tokenCount()
            assertTrue(atCancel >= beforeCancel)
            worker.join(30_000)
            assertTrue(!worker.isAlive, "generate returned after cancel")
            val st = assertNotNull(stats)
            assertEquals(StopReason.CANCELLED, st.stopReason)
            assertEquals(listOf(st), stream.finished)
            val after = s.tokenCount()
            assertTrue(after in atCancel..atCancel + 1u, "tokens at cancel $atCancel, after $after")
            Thread.sleep(300)
            assertEquals(after, s.tokenCount(), "nothing runs after generate returned")
            assertTrue(st.generatedTokens < Fixtures.LONG)

            s.reset()
            assertEquals(0u, s.tokenCount())
            assertEquals(Fixtures.greedy, s.generateIds(Fixtures.prompt, Fixtures.greedyOptions()).tokenIds)
        }
    }

    @Test
    fun `load errors are typed and name the problem`() {
        val missing = assertFailsWith<PocketLmException.FileNotFound> { Model.load(Fixtures.missing, ModelOptions()) }
        assertTrue(Fixtures.missing in missing.message!!, missing.message)
        val corrupt = assertFailsWith<PocketLmException.InvalidModel> { Model.load(Fixtures.corrupt, ModelOptions()) }
        assertTrue("truncated" in corrupt.message!!, corrupt.message)
        val wrong = assertFailsWith<PocketLmException.WrongArchitecture> { Model.load(Fixtures.wrongArch, ModelOptions()) }
        assertTrue("gpt2" in wrong.message!!, wrong.message)
        // Throwable.message is the Rust error text itself (flat errors), as logs and crash
        // reports show it.
        assertTrue(wrong.message!!.startsWith(Fixtures.wrongArch), wrong.message)
    }

    @Test
    fun `two sessions on one model run concurrently from two threads`() {
        val pool = Executors.newFixedThreadPool(2)
        try {
            val barrier = CyclicBarrier(2)
            val results = (0 until 2).map {
                pool.submit<List<UInt>> {
                    model.newSession(SessionOptions()).use { s ->
                        barrier.await()
                        s.generateIds(Fixtures.prompt, Fixtures.greedyOptions()).tokenIds
                    }
                }
            }
            results.forEach { assertEquals(Fixtures.greedy, it.get(60, TimeUnit.SECONDS)) }
        } finally {
            pool.shutdownNow()
        }
    }

    @Test
    fun `a second concurrent generate on one session gets Busy`() {
        model.newSession(SessionOptions(contextSize = Fixtures.LONG_CONTEXT)).use { s ->
            var first: GenerationStats? = null
            val worker = thread(name = "first") {
                first = s.generate(promptText, Fixtures.greedyOptions(Fixtures.LONG), RecordingStream())
            }
            waitUntil("the first generation to run") { s.tokenCount() > 0u }
            var second: Throwable? = null
            thread(name = "second") {
                second = runCatching { s.generate(promptText, Fixtures.greedyOptions(), RecordingStream()) }.exceptionOrNull()
            }.join(30_000)
            assertTrue(second is PocketLmException.Busy, "second call: $second")
            assertEquals(Fixtures.LONG_CONTEXT, s.contextSize(), "context size while a generation runs")
            // reset() stops the running call and waits for it, then clears.
            s.reset()
            assertEquals(0u, s.tokenCount())
            worker.join(30_000)
            assertEquals(StopReason.CANCELLED, first?.stopReason)
        }
    }

    @Test
    fun `a token cancelled before the call starts stops it before any work`() {
        model.newSession(SessionOptions(contextSize = Fixtures.LONG_CONTEXT)).use { s ->
            val token = CancelToken()
            token.cancel()
            val stream = RecordingStream()
            val st = s.generate(promptText, Fixtures.greedyOptions(Fixtures.LONG), stream, token)
            assertEquals(StopReason.CANCELLED, st.stopReason)
            assertEquals(0u, st.generatedTokens)
            assertEquals(0u, s.tokenCount(), "not even the prompt was read")
            assertEquals(listOf(st), stream.finished)
            val r = s.generateIds(Fixtures.prompt, Fixtures.greedyOptions(Fixtures.LONG), token)
            assertEquals(StopReason.CANCELLED, r.stats.stopReason)
            // A fresh token (or none) runs normally: the cancel belonged to those calls only.
            assertEquals(Fixtures.greedy, s.generateIds(Fixtures.prompt, Fixtures.greedyOptions(), CancelToken()).tokenIds)
        }
    }

    @Test
    fun `a JSON schema constrains every sampled answer, a broken one is InvalidArgument`() {
        val schema = """{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"],"additionalProperties":false}"""
        model.newSession(SessionOptions()).use { s ->
            for (seed in 1uL..5uL) {
                val stream = RecordingStream()
                s.reset()
                s.generate(promptText, GenerateOptions(maxTokens = 20u, temperature = 1f, seed = seed, jsonSchema = schema), stream)
                assertTrue(stream.text == """{"ok":true}""" || stream.text == """{"ok":false}""", stream.text)
            }
            val e = assertFailsWith<PocketLmException.InvalidArgument> {
                s.generate(promptText, GenerateOptions(jsonSchema = "{not json"), RecordingStream())
            }
            assertTrue("schema" in e.message!!, e.message)
        }
    }

    @Test
    fun `on_finish is called with ERROR when generate fails`() {
        model.newSession(SessionOptions(contextSize = 32u)).use { s ->
            val stream = RecordingStream()
            val e = assertFailsWith<PocketLmException.ContextFull> {
                s.generate(promptText.repeat(20), Fixtures.greedyOptions(), stream)
            }
            assertTrue("context" in e.message!!, e.message)
            assertEquals(listOf(StopReason.ERROR), stream.finished.map { it.stopReason })
        }
    }
}
