package ai.pocketlm

import kotlin.test.assertNotNull
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import uniffi.pocketlm.*

/**
 * The usage example of android/README.md, line for line: scripts/test-kotlin.sh fails if a line of
 * the README's Kotlin block is missing here, so the documented API can never drift from the real one.
 */
@Timeout(120)
class ReadmeExampleTest {
    @Test
    fun `the README example runs`() = runBlocking {
        val path = Fixtures.tiny
        // --- README begin
        val model = PocketLmModel.load(path)                  // path of a .gguf file on the device
        val session = model.newSession(SessionOptions(contextSize = 4096u))
        session.generate("Once upon a time", GenerateOptions(maxTokens = 64u)).collect { print(it) }
        println(session.lastStats)                            // tokens/s and why generation stopped
        session.close(); model.close()
        // --- README end
        val stats = assertNotNull(session.lastStats)
        assertTrue(stats.generatedTokens in 1u..64u, "$stats")
    }
}
