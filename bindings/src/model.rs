//! `Model`: a loaded GGUF (memory-mapped weights, tokenizer) plus the worker pool sessions run
//! on. Shared by any number of sessions and threads.

use crate::chat::Chat;
use crate::error::PocketLmError;
use crate::guard;
use crate::session::{Session, SessionOptions};
use std::sync::Arc;

#[derive(Debug, Clone, uniffi::Record)]
pub struct ModelOptions {
    /// Worker threads for this model's sessions; 0 = one per physical core.
    #[uniffi(default = 0)]
    pub threads: u32,
    /// A new session is refused (`OutOfMemory`) when the memory it would use exceeds this
    /// many bytes, counting the weights it reads (memory-mapped) + its KV cache + scratch
    /// buffers; None = no limit beyond the memory the device has.
    #[uniffi(default = None)]
    pub memory_budget_bytes: Option<u64>,
}

#[derive(Debug, Clone, uniffi::Record)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: String,
    pub n_params: u64,
    pub file_size_bytes: u64,
    pub weight_type: String,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_head: u32,
    pub vocab_size: u32,
    /// The context the model was trained with (longer works through ALiBi interpolation).
    pub train_context: u32,
}

#[derive(uniffi::Object)]
pub struct Model {
    pub(crate) inner: Arc<pocketlm_core::Model>,
    pub(crate) pool: Arc<rayon::ThreadPool>,
    pub(crate) budget: Option<u64>,
}

#[uniffi::export]
impl Model {
    /// Opens a GGUF model. Fast (the weights are mapped, not read); still, call it off the UI
    /// thread: the first generation pages the weights in.
    #[uniffi::constructor]
    pub fn load(path: String, options: ModelOptions) -> Result<Arc<Model>, PocketLmError> {
        guard(|| {
            let inner = Arc::new(pocketlm_core::Model::load(&path)?);
            let pool = Arc::new(pocketlm_core::threads::pool(options.threads as usize)?);
            Ok(Arc::new(Model { inner, pool, budget: options.memory_budget_bytes }))
        })
    }

    pub fn info(&self) -> ModelInfo {
        let hp = &self.inner.hparams;
        let tensors = &self.inner.file.header.tensors;
        let mut by_type = std::collections::BTreeMap::<&str, u64>::new();
        for t in tensors {
            *by_type.entry(t.ty.name()).or_default() += t.n_bytes;
        }
        ModelInfo {
            name: hp.name.clone(),
            architecture: "btlm".into(),
            n_params: tensors.iter().map(|t| t.n_elements()).sum(),
            file_size_bytes: self.inner.file.file_size(),
            weight_type: by_type.into_iter().max_by_key(|&(_, b)| b).map(|(n, _)| n.to_string()).unwrap_or_default(),
            n_layer: hp.n_layer as u32,
            n_embd: hp.n_embd as u32,
            n_head: hp.n_head as u32,
            vocab_size: hp.n_vocab as u32,
            train_context: hp.n_ctx_train as u32,
        }
    }

    /// A new conversation with its own KV cache (allocated now: too big is an error here).
    pub fn new_session(&self, options: SessionOptions) -> Result<Arc<Session>, PocketLmError> {
        guard(|| Session::create(self, options).map(Arc::new))
    }

    /// A new multi-turn chat in the model's chat format, with its own KV cache (allocated now),
    /// starting with `system` as a preamble if given.
    #[uniffi::method(default(system = None))]
    pub fn new_chat(&self, options: SessionOptions, system: Option<String>) -> Result<Arc<Chat>, PocketLmError> {
        guard(|| Chat::create(self, options, system).map(Arc::new))
    }

    pub fn tokenize(&self, text: String) -> Result<Vec<u32>, PocketLmError> {
        guard(|| Ok(self.inner.tokenizer.encode(&text).map_err(pocketlm_core::Error::from)?))
    }

    pub fn detokenize(&self, ids: Vec<u32>) -> Result<String, PocketLmError> {
        guard(|| Ok(self.inner.tokenizer.decode(&ids).map_err(pocketlm_core::Error::from)?))
    }
}
