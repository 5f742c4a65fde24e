package ai.pocketlm

import java.util.concurrent.atomic.AtomicInteger
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.collect
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.yield
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.Timeout
import uniffi.pocketlm.ChatRole
import uniffi.pocketlm.PocketLmException
import uniffi.pocketlm.SessionOptions
import uniffi.pocketlm.StopReason

/** The idiomatic wrapper: [PocketLmModel] and [PocketLmSession] with coroutines and Flow. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(120)
class PocketLmTest {
    private val model = runBlocking { PocketLmModel.load(Fixtures.tiny) }
    private val promptText = model.detokenize(Fixtures.prompt)
    private val promptLen = model.tokenize(promptText).size

    @AfterAll
    fun close() = model.close()

    private fun longSession() = model.newSession(SessionOptions(contextSize = Fixtures.LONG_CONTEXT))

    /** After a cancelled generation: nothing runs any more, and far fewer tokens than asked were made. */
    private fun assertStopped(s: PocketLmSession) {
        val count = s.tokenCount
        Thread.sleep(300)
        assertEquals(count, s.tokenCount, "token count still growing: the native generation did not stop")
        assertTrue(count < promptLen + 200, "generated ${count - promptLen} of ${Fixtures.LONG} tokens")
        assertEquals(StopReason.CANCELLED, s.lastStats?.stopReason)
    }

    /** A session that was cancelled must still generate the golden answer after a reset. */
    private fun assertUsable(s: PocketLmSession) = runBlocking {
        s.reset()
        assertEquals(0, s.tokenCount)
        assertEquals(Fixtures.greedy, s.generateIds(Fixtures.prompt, Fixtures.greedyOptions()).tokenIds)
    }

    @Test
    fun `info describes the loaded model`() {
        assertEquals("btlm", model.info.architecture)
        assertEquals(Fixtures.nLayer, model.info.nLayer)
        assertEquals(Fixtures.vocabSize, model.info.vocabSize)
    }

    @Test
    fun `generateIds gives the golden greedy ids and sets lastStats`() = runBlocking {
        model.newSession().use { s ->
            assertEquals(null, s.lastStats)
            val r = s.generateIds(Fixtures.prompt, Fixtures.greedyOptions())
            assertEquals(Fixtures.greedy, r.tokenIds)
            assertEquals(r.stats, s.lastStats)
            assertEquals(Fixtures.prompt.size + 16, s.tokenCount)
            // The IntArray overload continues the same conversation.
            val more = s.generateIds(intArrayOf(Fixtures.greedy.last().toInt()), Fixtures.greedyOptions(4u))
            assertEquals(4, more.tokenIds.size)
        }
    }

    @Test
    fun `generate streams pieces that concatenate to the decoded ids`() = runBlocking {
        val pieces = model.newSession().use { s ->
            val pieces = s.generate(promptText, Fixtures.greedyOptions()).toList()
            val stats = s.lastStats!!
            assertEquals(16u, stats.generatedTokens)
            assertTrue(stats.generationTokensPerSecond > 0)
            assertEquals(StopReason.MAX_TOKENS, stats.stopReason)
            pieces
        }
        val ids = model.newSession().use { it.generateIds(model.tokenize(promptText), Fixtures.greedyOptions()).tokenIds }
        assertTrue(pieces.size > 1)
        assertEquals(model.detokenize(ids), pieces.joinToString(""))
    }

    @Test
    fun `load errors are typed PocketLmExceptions`() = runBlocking {
        val missing = assertFailsWith<PocketLmException.FileNotFound> { PocketLmModel.load(Fixtures.missing) }
        assertTrue(Fixtures.missing in missing.message!!, missing.message)
        val corrupt = assertFailsWith<PocketLmException.InvalidModel> { PocketLmModel.load(Fixtures.corrupt) }
        assertTrue("truncated" in corrupt.message!!, corrupt.message)
        val wrong = assertFailsWith<PocketLmException.WrongArchitecture> { PocketLmModel.load(Fixtures.wrongArch) }
        assertTrue("gpt2" in wrong.message!!, wrong.message)
    }

    @Test
    fun `take(5) on the flow stops the native generation`() {
        longSession().use { s ->
            val pieces = runBlocking { s.generate(promptText, Fixtures.greedyOptions(Fixtures.LONG)).take(5).toList() }
            assertEquals(5, pieces.size)
            assertStopped(s)
            assertUsable(s)
        }
    }

    @Test
    fun `cancelling the collecting job from another thread stops the native generation`() {
        longSession().use { s ->
            val seen = AtomicInteger()
            runBlocking {
                val job = launch(Dispatchers.Default) {
                    s.generate(promptText, Fixtures.greedyOptions(Fixtures.LONG)).collect { seen.incrementAndGet() }
                }
                while (seen.get() < 3) delay(1)
                job.cancelAndJoin()
            }
            assertTrue(seen.get() >= 3)
            assertStopped(s)
            assertUsable(s)
        }
    }

    @Test
    fun `a cancel that arrives while the call is starting is not lost`() {
        // Each call has its own cancel token, made before the native call starts: a cancel at
        // any moment reaches it (a lost one would run all 5000 tokens and time the test out).
        longSession().use { s ->
            repeat(24) { i ->
                s.reset()
                runBlocking {
                    val job = launch(Dispatchers.Default, start = CoroutineStart.UNDISPATCHED) {
                        s.generate(promptText, Fixtures.greedyOptions(Fixtures.LONG)).collect {}
                    }
                    if (i % 3 == 1) yield() else if (i % 3 == 2) delay(i.toLong() / 2)
                    job.cancelAndJoin()
                }
                val count = s.tokenCount
                Thread.sleep(50)
                assertEquals(count, s.tokenCount, "iteration $i: still generating")
                assertTrue(count < promptLen + 50, "iteration $i: generated ${count - promptLen} tokens")
            }
            assertUsable(s)
        }
    }

    @Test
    fun `cancelling generateIds stops the native generation`() {
        longSession().use { s ->
            runBlocking {
                val call = async(Dispatchers.Default) { s.generateIds(Fixtures.prompt, Fixtures.greedyOptions(Fixtures.LONG)) }
                while (s.tokenCount < Fixtures.prompt.size + 3) delay(1)
                call.cancelAndJoin()
            }
            assertStopped(s)
            assertUsable(s)
        }
    }

    @Test
    fun `two flows on one session at once - the second fails with Busy`() {
        longSession().use { s ->
            runBlocking {
                val first = launch(Dispatchers.Default) { s.generate(promptText, Fixtures.greedyOptions(Fixtures.LONG)).collect {} }
                while (s.tokenCount == 0) delay(1)
                assertFailsWith<PocketLmException.Busy> { s.generate(promptText, Fixtures.greedyOptions()).collect {} }
                first.cancelAndJoin()
            }
            assertStopped(s)
            assertUsable(s)
        }
    }

    @Test
    fun `two sessions on one model run concurrently`() = runBlocking {
        val sessions = List(2) { model.newSession() }
        try {
            val results = sessions.map { s ->
                async(Dispatchers.Default) { s.generateIds(Fixtures.prompt, Fixtures.greedyOptions()).tokenIds }
            }.awaitAll()
            results.forEach { assertEquals(Fixtures.greedy, it) }
        } finally {
            sessions.forEach { it.close() }
        }
    }

    @Test
    fun `close frees the native objects`() {
        val m = runBlocking { PocketLmModel.load(Fixtures.tiny) }
        val s = m.newSession()
        m.close()
        // The session keeps the weights alive on its own.
        assertEquals(Fixtures.greedy, runBlocking { s.generateIds(Fixtures.prompt, Fixtures.greedyOptions()).tokenIds })
        s.close()
        s.close()
        assertFailsWith<IllegalStateException> { s.tokenCount }
        assertFailsWith<IllegalStateException> { m.newSession() }
    }

    @Test
    fun `closing a session while its flow is collected ends the flow`() {
        val s = longSession()
        val pieces = AtomicInteger()
        runBlocking {
            val job = launch(Dispatchers.Default) {
                s.generate(promptText, Fixtures.greedyOptions(Fixtures.LONG)).collect { pieces.incrementAndGet() }
            }
            while (pieces.get() < 3) delay(1)
            s.close()
            job.join() // the flow completes normally: the generation was cancelled
        }
        assertEquals(StopReason.CANCELLED, s.lastStats?.stopReason)
        assertTrue(pieces.get() < 200, "${pieces.get()} pieces")
    }

    @Test
    fun `a chat keeps its cache across turns, and cancelling a reply keeps the chat usable`() = runBlocking {
        model.newChat(SessionOptions(contextSize = Fixtures.LONG_CONTEXT), system = "About Persuasion.").use { chat ->
            val first = chat.send("Who is Anne?", Fixtures.greedyOptions(8u)).toList().joinToString("")
            val afterFirst = chat.tokenCount
            assertTrue(first.isNotEmpty())
            chat.send("And her father?", Fixtures.greedyOptions(8u)).toList()
            assertTrue(chat.tokenCount > afterFirst, "the second turn extends the cached conversation")
            assertEquals(
                listOf(ChatRole.SYSTEM, ChatRole.USER, ChatRole.ASSISTANT, ChatRole.USER, ChatRole.ASSISTANT),
                chat.messages.map { it.role },
            )
            assertEquals(first.trimEnd(), chat.messages[2].content)
            // A reply cut short by the collector: stopped natively, the chat goes on.
            val pieces = chat.send("Tell me everything.", Fixtures.greedyOptions(Fixtures.LONG)).take(3).toList()
            assertEquals(3, pieces.size)
            assertEquals(StopReason.CANCELLED, chat.lastStats?.stopReason)
            chat.reset()
            assertEquals(listOf(ChatRole.SYSTEM), chat.messages.map { it.role })
            chat.send("Who is Anne?", Fixtures.greedyOptions(8u)).toList().joinToString("").let { again ->
                assertEquals(first, again, "after a reset the same question gets the same greedy answer")
            }
        }
    }
}
