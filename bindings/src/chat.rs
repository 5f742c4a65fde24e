//! `Chat`: a multi-turn conversation in the model's chat format (core `chat::Conversation`),
//! keeping its KV cache across turns so each `send` reads only the new turn.

use crate::error::PocketLmError;
use crate::exclusive::Exclusive;
use crate::guard;
use crate::model::Model;
use crate::session::{
    call_options, convert_stats, core_session, finish, CancelToken, GenerateOptions, GenerationStats, SessionOptions,
    TokenStream,
};
use pocketlm_core::chat::{self as core, ChatFormat, Conversation, Message, Role};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

#[derive(uniffi::Object)]
pub struct Chat {
    inner: Exclusive<Conversation>,
    pool: Arc<rayon::ThreadPool>,
    count: Arc<AtomicUsize>,
    n_ctx: u32,
}

impl Chat {
    pub(crate) fn create(model: &Model, o: SessionOptions, system: Option<String>) -> Result<Chat, PocketLmError> {
        let session = core_session(model, &o)?;
        let (count, n_ctx) = (session.token_count_handle(), session.n_ctx() as u32);
        let mut chat = Conversation::new(session, ChatFormat::for_model(&model.inner));
        chat.set_messages(system.into_iter().map(|s| Message::new(Role::System, s)).collect());
        Ok(Chat { inner: Exclusive::new(chat), pool: model.pool.clone(), count, n_ctx })
    }
}

#[uniffi::export]
impl Chat {
    /// Sends the user's `text` and streams the reply to `stream` (which gets `on_finish`
    /// exactly once, as for `Session.generate`). Blocks until done: call it from a background
    /// thread. A failed turn leaves the history as it was; a cancelled reply is kept as far as
    /// it went.
    #[uniffi::method(default(cancel = None))]
    pub fn send(
        &self,
        text: String,
        options: GenerateOptions,
        stream: Arc<dyn TokenStream>,
        cancel: Option<Arc<CancelToken>>,
    ) -> Result<GenerationStats, PocketLmError> {
        let result = guard(|| {
            let opts = call_options(&options, cancel)?;
            let mut held = self.inner.acquire(&opts.cancel)?;
            let chat: &mut Conversation = &mut held;
            let reply =
                self.pool.install(|| chat.send(&text, &opts, &mut |piece| stream.on_text(piece.to_string())))?;
            Ok(convert_stats(&reply.stats))
        });
        finish(&*stream, result)
    }

    /// The conversation so far (a system message first, if any).
    pub fn messages(&self) -> Result<Vec<ChatMessage>, PocketLmError> {
        guard(|| {
            let chat = self.inner.acquire(&Default::default())?;
            Ok(chat.messages().iter().map(to_record).collect())
        })
    }

    /// Replaces the history (edited or restored): the next turn reuses the KV cache up to the
    /// first changed token.
    pub fn set_messages(&self, messages: Vec<ChatMessage>) -> Result<(), PocketLmError> {
        let messages = messages.into_iter().map(|m| Message::new(from_role(m.role), m.content)).collect();
        guard(|| self.inner.after_cancelling(|c| c.set_messages(messages)))
    }

    /// Stops the reply being generated, if any. Safe from any thread.
    pub fn cancel(&self) {
        self.inner.cancel_running();
    }

    /// Forgets the conversation but a system message (a running reply is cancelled first).
    pub fn reset(&self) -> Result<(), PocketLmError> {
        guard(|| self.inner.after_cancelling(Conversation::reset))
    }

    /// Tokens of the conversation held in the KV cache, updated during a reply.
    pub fn token_count(&self) -> u32 {
        self.count.load(Ordering::Relaxed) as u32
    }

    pub fn context_size(&self) -> u32 {
        self.n_ctx
    }
}

fn to_record(m: &core::Message) -> ChatMessage {
    let role = match m.role {
        Role::System => ChatRole::System,
        Role::User => ChatRole::User,
        Role::Assistant => ChatRole::Assistant,
    };
    ChatMessage { role, content: m.content.clone() }
}

fn from_role(r: ChatRole) -> Role {
    match r {
        ChatRole::System => Role::System,
        ChatRole::User => Role::User,
        ChatRole::Assistant => Role::Assistant,
    }
}
