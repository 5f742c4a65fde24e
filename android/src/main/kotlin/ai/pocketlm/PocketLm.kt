package ai.pocketlm

import java.util.concurrent.atomic.AtomicBoolean
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.async
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import uniffi.pocketlm.CancelToken
import uniffi.pocketlm.Chat
import uniffi.pocketlm.ChatMessage
import uniffi.pocketlm.GenerateOptions
import uniffi.pocketlm.GenerationResult
import uniffi.pocketlm.GenerationStats
import uniffi.pocketlm.Model
import uniffi.pocketlm.ModelInfo
import uniffi.pocketlm.ModelOptions
import uniffi.pocketlm.Session
import uniffi.pocketlm.SessionOptions
import uniffi.pocketlm.StopReason
import uniffi.pocketlm.TokenStream

/**
 * A loaded BTLM model (GGUF): the idiomatic Kotlin face of the generated [uniffi.pocketlm.Model].
 *
 * The weights are memory-mapped, not copied, so one model can back many [PocketLmSession]s at
 * once, from any threads. Options, records and errors are the generated types from
 * `uniffi.pocketlm` ([ModelOptions], [SessionOptions], [GenerateOptions], [GenerationStats],
 * [uniffi.pocketlm.PocketLmException]); this wrapper adds coroutines, `Flow` streaming and
 * cancellation that cannot get lost.
 *
 * [close] releases the native model as soon as no call is using it, instead of whenever the
 * garbage collector gets to it: a 3B model's mapping and worker threads are too big to leave to
 * the GC. Sessions keep their own reference to the weights, so closing the model while sessions
 * are open is safe; the memory goes when the last of them is closed.
 */
class PocketLmModel private constructor(private val native: Model) : AutoCloseable {
    /** Name, architecture, size and shape, read once at load (it never changes). */
    val info: ModelInfo = native.info()

    /**
     * Starts a new conversation with its own KV cache. The cache is allocated here, so a context
     * that does not fit the model's memory budget fails now
     * ([uniffi.pocketlm.PocketLmException.OutOfMemory]), not in the middle of a generation.
     */
    fun newSession(options: SessionOptions = SessionOptions()): PocketLmSession =
        PocketLmSession(native.newSession(options))

    /**
     * Starts a multi-turn chat in the model's chat format (its GGUF chat template, else BTLM
     * chat's "Human:/Assistant:" turns), with its own KV cache and an optional [system] preamble.
     */
    fun newChat(options: SessionOptions = SessionOptions(), system: String? = null): PocketLmChat =
        PocketLmChat(native.newChat(options, system))

    /** Token ids of [text] with the model's own tokenizer. */
    fun tokenize(text: String): List<UInt> = native.tokenize(text)

    /** Text of [ids] (the inverse of [tokenize]). */
    fun detokenize(ids: List<UInt>): String = native.detokenize(ids)

    /** Frees the native model now (see the class comment); calling it twice is harmless. */
    override fun close() = native.close()

    companion object {
        /**
         * Opens the GGUF model at [path] on [Dispatchers.IO]: mapping the file and checking every
         * tensor touches the disk, which must never happen on the main thread.
         *
         * @throws uniffi.pocketlm.PocketLmException.FileNotFound when [path] does not exist,
         *   `.InvalidModel` when the file is truncated or corrupted, `.WrongArchitecture` when it
         *   is a GGUF of another model family; each `message` names the file and the problem.
         */
        suspend fun load(path: String, options: ModelOptions = ModelOptions()): PocketLmModel =
            withContext(Dispatchers.IO) { PocketLmModel(Model.load(path, options)) }
    }
}

/**
 * One conversation: prompts and answers accumulate in its KV cache until [reset].
 *
 * A session runs one generation at a time; a second concurrent call fails at once with
 * [uniffi.pocketlm.PocketLmException.Busy] rather than queueing behind the first (queued
 * generations would make a "stop" button unpredictable), unless the first was cancelled: then
 * the second waits for it to wind down. Use one session per concurrent conversation; they share
 * the model's weights.
 *
 * To stop a generation, cancel the coroutine that collects [generate] (or calls [generateIds]).
 * Each call has its own native [CancelToken], so a cancel is never lost, however early it comes;
 * the native generation stops within one layer of work and the collection ends only once the
 * native call has returned, so the session is immediately reusable.
 */
class PocketLmSession internal constructor(private val native: Session) : AutoCloseable {
    private val closed = AtomicBoolean(false)

    /**
     * Statistics of the last generation that finished on this session (whatever the reason,
     * including cancellation), or null before the first one.
     */
    @Volatile
    var lastStats: GenerationStats? = null
        private set

    /** Tokens in the conversation (prompts and answers); it grows live during a generation. */
    val tokenCount: Int
        get() = native.tokenCount().toInt()

    /**
     * Streams the answer to [prompt] (appended to the conversation) as text pieces, each made of
     * whole characters. The flow completes when generation stops (see [lastStats] for why),
     * fails with [uniffi.pocketlm.PocketLmException] on error, and cancelling its collector
     * stops the native generation.
     *
     * The blocking native call runs on [Dispatchers.IO]; pieces arrive from the native worker
     * thread and are buffered without limit so that thread never waits for a slow collector
     * (it is shared with the model's other sessions). Each collection starts a new generation.
     */
    fun generate(prompt: String, options: GenerateOptions = GenerateOptions()): Flow<String> =
        nativeTextFlow({ lastStats = it }) { stream, cancel -> native.generate(prompt, options, stream, cancel) }

    /**
     * Generates from token ids ([prompt] is appended to the conversation) and returns the
     * generated ids with their statistics (also in [lastStats], even when cancelled). Runs on
     * [Dispatchers.IO]; cancelling the calling coroutine stops the native generation, and the
     * cancellation completes only after it has stopped.
     */
    suspend fun generateIds(prompt: List<UInt>, options: GenerateOptions = GenerateOptions()): GenerationResult =
        coroutineScope {
            val cancel = CancelToken()
            val call = async(Dispatchers.IO) {
                // Recorded here, not by the caller: a cancelled caller never sees the result.
                native.generateIds(prompt, options, cancel).also { lastStats = it.stats }
            }
            try {
                call.await()
            } finally {
                cancel.cancel()
                withContext(NonCancellable) { call.join() }
                cancel.close()
            }
        }

    /** Same as the other [generateIds], for callers that hold ids as an [IntArray]. */
    suspend fun generateIds(prompt: IntArray, options: GenerateOptions = GenerateOptions()): GenerationResult =
        generateIds(prompt.map { it.toUInt() }, options)

    /**
     * Forgets the conversation but keeps the KV cache memory, which is cheaper than a new
     * session. A running generation is cancelled first and waited for (at most one layer of
     * work, so call it off the main thread).
     */
    fun reset() = native.reset()

    /**
     * Stops any running generation and frees the session's KV cache now, rather than when the
     * garbage collector notices (it can be hundreds of MB). Calling it twice is harmless; any
     * other call afterwards throws [IllegalStateException].
     */
    override fun close() {
        if (closed.compareAndSet(false, true)) {
            native.cancel()
            native.close()
        }
    }
}

/**
 * A multi-turn chat in the model's chat format: each [send] appends the user's message and the
 * reply, and the KV cache is kept across turns, so a turn reads only its own new tokens. Made by
 * [PocketLmModel.newChat]. One reply at a time (a second concurrent [send] fails with `Busy`).
 */
class PocketLmChat internal constructor(private val native: Chat) : AutoCloseable {
    private val closed = AtomicBoolean(false)

    /** Statistics of the last reply that ended (whatever the reason), or null before the first. */
    @Volatile
    var lastStats: GenerationStats? = null
        private set

    /** Tokens of the conversation in the KV cache; it grows live during a reply. */
    val tokenCount: Int
        get() = native.tokenCount().toInt()

    /** Tokens of context the chat was created with. */
    val contextSize: Int = native.contextSize().toInt()

    /** The conversation so far: a system message first if there is one, then the turns. */
    val messages: List<ChatMessage>
        get() = native.messages()

    /**
     * Sends [text] and streams the reply as text pieces, like [PocketLmSession.generate]:
     * cancelling the collector stops the reply within one layer of work (what was generated is
     * kept in the history), and an error fails the flow and leaves the history as it was.
     */
    fun send(text: String, options: GenerateOptions = GenerateOptions()): Flow<String> =
        nativeTextFlow({ lastStats = it }) { stream, cancel -> native.send(text, options, stream, cancel) }

    /** Replaces the history (edited or restored); the next turn reuses the cache up to the first change. */
    fun setMessages(messages: List<ChatMessage>) = native.setMessages(messages)

    /** Forgets the conversation but a system message (a running reply is cancelled first). */
    fun reset() = native.reset()

    /** Stops a running reply and frees the KV cache now; calling it twice is harmless. */
    override fun close() {
        if (closed.compareAndSet(false, true)) {
            native.cancel()
            native.close()
        }
    }
}

/**
 * One blocking native call that streams text, as a cold [Flow]: [call] runs on
 * [Dispatchers.IO] with a [TokenStream] feeding the flow and a fresh [CancelToken]. Cancelling
 * the collector cancels the token (a cancel can never be lost: the token exists before the call
 * starts) and the collection ends only after the native call has returned. [onStats] gets the
 * statistics of a call that ended normally (a failed call fails the flow instead).
 *
 * Pieces arrive on the native worker thread and are buffered without limit, so that thread
 * never waits for a slow collector (it is shared with the model's other sessions).
 */
private fun nativeTextFlow(onStats: (GenerationStats) -> Unit, call: (TokenStream, CancelToken) -> Unit): Flow<String> =
    callbackFlow {
        val cancel = CancelToken()
        val stream = object : TokenStream {
            override fun onText(text: String) {
                // Must never throw into native code. A closed channel means the collector is
                // gone: stop generating text nobody reads.
                if (this@callbackFlow.trySendBlocking(text).isFailure) cancel.cancel()
            }

            override fun onFinish(stats: GenerationStats) {
                if (stats.stopReason != StopReason.ERROR) onStats(stats)
            }
        }
        val job = launch(Dispatchers.IO) {
            try {
                call(stream, cancel)
                channel.close()
            } catch (e: Throwable) {
                channel.close(e)
            }
        }
        try {
            awaitClose()
        } finally {
            // The collector is gone (or the call ended): stop the call and wait for it.
            cancel.cancel()
            withContext(NonCancellable) { job.join() }
            cancel.close()
        }
    }.buffer(Channel.UNLIMITED)
