//! PocketLM core: everything that computes. Loads BTLM models from GGUF (memory-mapped),
//! runs the forward pass, samples, and drives generation sessions. No FFI and no CLI here:
//! the `pocketlm` binary and the uniffi bindings are thin layers over this crate.

pub mod atomic_file;
pub mod chat;
pub mod constraint;
pub mod convert;
pub mod draft;
pub mod error;
pub mod gguf;
pub mod kernels;
pub mod kv_cache;
pub mod model;
pub mod ops;
pub mod perplexity;
pub mod punct;
pub mod quant;
pub mod sampling;
pub mod session;
pub mod session_file;
pub mod threads;
pub mod tokenizer;

pub use error::{Error, Result};
pub use kv_cache::KvType;
pub use model::Model;
