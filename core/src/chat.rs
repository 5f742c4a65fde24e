//! Multi-turn chat on a [`Session`]: the messages are rendered to one prompt by the model's
//! chat format, and the session's KV cache is kept across turns, so each turn prefills only
//! the tokens that differ from what the cache already holds (the longest common prefix of the
//! new rendering and the session's tokens). An edited history costs a prefill from the first
//! changed token on, nothing before it.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::session::{GenerateOptions, GenerationStats, Session};
use serde::{Deserialize, Serialize};

/// GGUF key of a Jinja chat template (llama.cpp's name; copied from `tokenizer_config.json`).
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message { role, content: content.into() }
    }
}

/// How messages become a prompt.
#[derive(Debug, Clone)]
pub enum ChatFormat {
    /// BTLM-3B-8K-chat's: it was tuned with DPO on Anthropic HH-RLHF transcripts, so turns are
    /// `"\n\nHuman: {message}"` and `"\n\nAssistant: {reply}"`, and an answer ends where the
    /// next `"\n\nHuman:"` would begin. A system message is a preamble before the first turn.
    /// The base model gets the same by default.
    HumanAssistant,
    /// A Jinja template (a GGUF's `tokenizer.chat_template`), rendered with minijinja as
    /// Hugging Face's `apply_chat_template` does: `messages`, `add_generation_prompt`,
    /// `bos_token`, `eos_token`, and `raise_exception`.
    Template { source: String, bos_token: String, eos_token: String },
}

impl ChatFormat {
    /// The model's own template when its file has one, else [`ChatFormat::HumanAssistant`].
    pub fn for_model(model: &Model) -> ChatFormat {
        let Some(source) = model.file.header.get(CHAT_TEMPLATE_KEY).and_then(|v| v.as_str()) else {
            return ChatFormat::HumanAssistant;
        };
        let tok = &model.tokenizer;
        let text = |id: Option<u32>| id.and_then(|i| tok.decode(&[i]).ok()).unwrap_or_default();
        ChatFormat::Template {
            source: source.to_string(),
            bos_token: text(tok.bos_id()),
            eos_token: text(tok.eos_id()),
        }
    }

    /// The prompt for `messages`; with `add_generation_prompt`, ending where the assistant's
    /// next reply begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        match self {
            ChatFormat::HumanAssistant => {
                let mut out = String::new();
                for m in messages {
                    match m.role {
                        Role::System => out.push_str(m.content.trim_end()),
                        Role::User => {
                            out.push_str("\n\nHuman: ");
                            out.push_str(&m.content);
                        }
                        Role::Assistant => {
                            out.push_str("\n\nAssistant: ");
                            out.push_str(&m.content);
                        }
                    }
                }
                if add_generation_prompt {
                    out.push_str("\n\nAssistant:");
                }
                Ok(out)
            }
            ChatFormat::Template { source, bos_token, eos_token } => {
                let bad =
                    |e: minijinja::Error| Error::InvalidArgument(format!("chat template ({CHAT_TEMPLATE_KEY}): {e:#}"));
                let mut env = minijinja::Environment::new();
                // Templates written for Python's Jinja call string methods (`.strip()`, ...).
                env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
                env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
                    Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
                });
                env.add_template("chat", source).map_err(bad)?;
                let ctx = minijinja::context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => bos_token,
                    eos_token => eos_token,
                };
                env.get_template("chat").and_then(|t| t.render(ctx)).map_err(bad)
            }
        }
    }

    /// Texts that end an assistant reply (besides the end-of-text token).
    pub fn stops(&self) -> Vec<String> {
        match self {
            ChatFormat::HumanAssistant => vec!["\n\nHuman:".into()],
            ChatFormat::Template { .. } => vec![],
        }
    }
}

/// Drops the whitespace a reply starts with, from a stream of pieces: the formats end the
/// prompt at "Assistant:" and leave the space to the model, which is not part of the answer.
#[derive(Debug, Default)]
pub struct TrimStart {
    started: bool,
}

impl TrimStart {
    pub fn piece<'a>(&mut self, piece: &'a str) -> &'a str {
        if self.started {
            return piece;
        }
        let rest = piece.trim_start();
        self.started = !rest.is_empty();
        rest
    }
}

/// One answered turn.
#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    pub stats: GenerationStats,
    /// Prompt tokens this turn had to read (the rest came from the KV cache).
    pub prefilled: usize,
    /// Prompt tokens reused from the KV cache.
    pub reused: usize,
}

/// A chat: messages, a format, and the session whose KV cache holds the conversation so far.
pub struct Conversation {
    session: Session,
    format: ChatFormat,
    messages: Vec<Message>,
}

impl Conversation {
    pub fn new(session: Session, format: ChatFormat) -> Self {
        Conversation { session, format, messages: Vec::new() }
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    pub fn format(&self) -> &ChatFormat {
        &self.format
    }

    /// Replaces the history (edited, or loaded): the next turn reuses the cache up to the first
    /// token where the new rendering differs.
    pub fn set_messages(&mut self, messages: Vec<Message>) {
        self.messages = messages;
    }

    /// Forgets the conversation and the cache (a system message, if any, is kept).
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == Role::System);
        self.session.reset();
    }

    /// Adds the user's `text`, generates the reply (streamed through `on_text`), and adds it.
    /// `opts.stop` adds to the format's own stop texts. A cancelled reply is kept as far as it
    /// went; a failed one leaves the history without the user's message.
    pub fn send(&mut self, text: &str, opts: &GenerateOptions, on_text: &mut dyn FnMut(&str)) -> Result<Reply> {
        self.messages.push(Message::new(Role::User, text));
        let result = self.reply(opts, on_text);
        if result.is_err() {
            self.messages.pop();
        }
        result
    }

    /// Generates the assistant's reply to the history as it stands.
    pub fn reply(&mut self, opts: &GenerateOptions, on_text: &mut dyn FnMut(&str)) -> Result<Reply> {
        let prompt = self.format.render(&self.messages, true)?;
        let ids = self.session.model().tokenizer.encode(&prompt)?;
        if ids.is_empty() {
            return Err(Error::InvalidArgument("the chat renders to an empty prompt".into()));
        }
        let common = self.session.keep_common_prefix(&ids);
        let mut opts = opts.clone();
        opts.stop.extend(self.format.stops());
        let (mut reply, mut trim) = (String::new(), TrimStart::default());
        let stats = self.session.generate_text_ids(&ids[common..], &opts, &mut |piece| {
            let piece = trim.piece(piece);
            if !piece.is_empty() {
                reply.push_str(piece);
                on_text(piece);
            }
        })?;
        let text = reply.trim_end().to_string();
        self.messages.push(Message::new(Role::Assistant, text.clone()));
        Ok(Reply { text, prefilled: stats.prompt_tokens, reused: common, stats })
    }
}
