//! PocketLM for apps: a thin uniffi layer over `pocketlm-core`, generating Kotlin (Android,
//! JVM) and Swift (iOS) APIs. Objects are `Send + Sync`; every exported call catches panics so
//! none crosses into the app; long calls (`generate`) block and are meant for a background
//! thread, stopped from any thread through the `CancelToken` passed to them.

uniffi::setup_scaffolding!();

mod chat;
mod error;
mod exclusive;
mod model;
mod punctuator;
mod session;

pub use chat::{Chat, ChatMessage, ChatRole};
pub use error::PocketLmError;
pub use model::{Model, ModelInfo, ModelOptions};
pub use punctuator::{
    punctuation_audio_from_pcm16, PunctuatedWord, PunctuationAudio, PunctuationResult, Punctuator, WordTime,
};
pub use session::{
    CancelToken, GenerateOptions, GenerationResult, GenerationStats, KvCacheType, Session, SessionOptions, StopReason,
    TokenStream,
};

/// Runs `f`, turning a panic into [`PocketLmError::Internal`] so it never unwinds into foreign
/// code (uniffi would also catch it, but as an untyped internal error).
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, PocketLmError>) -> Result<T, PocketLmError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PocketLmError::Internal { message: format!("internal error (bug): {msg}") })
        }
    }
}
