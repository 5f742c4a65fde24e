//! One error enum for the apps: Kotlin gets `PocketLmException.FileNotFound` etc., Swift an
//! `enum PocketLmError: Error`. Every core error maps to the variant a UI would treat
//! differently, with the core's message (which names the file, key or tensor).

use pocketlm_core::error::{Error as CoreError, GgufError};

#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum PocketLmError {
    /// The model file does not exist or cannot be opened.
    #[error("{message}")]
    FileNotFound { message: String },
    /// The file is not a valid GGUF model (truncated, corrupted, inconsistent).
    #[error("{message}")]
    InvalidModel { message: String },
    /// A valid GGUF of an architecture this runtime does not run.
    #[error("{message}")]
    WrongArchitecture { message: String },
    /// The requested context does not fit the memory budget.
    #[error("{message}")]
    OutOfMemory { message: String },
    /// The prompt does not fit in the session's context.
    #[error("{message}")]
    ContextFull { message: String },
    /// A bad option or argument.
    #[error("{message}")]
    InvalidArgument { message: String },
    /// Another call is already running on this session.
    #[error("{message}")]
    Busy { message: String },
    /// Reading a file failed for another reason.
    #[error("{message}")]
    Io { message: String },
    /// A bug in PocketLM (a caught panic).
    #[error("{message}")]
    Internal { message: String },
}

impl From<CoreError> for PocketLmError {
    fn from(e: CoreError) -> Self {
        let message = e.to_string();
        match e {
            CoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                PocketLmError::FileNotFound { message }
            }
            CoreError::Io { .. } => PocketLmError::Io { message },
            CoreError::Gguf { source: GgufError::WrongArchitecture { .. }, .. } => {
                PocketLmError::WrongArchitecture { message }
            }
            CoreError::Gguf { .. } | CoreError::Tokenizer(_) | CoreError::Convert(_) => {
                PocketLmError::InvalidModel { message }
            }
            CoreError::OverBudget { .. } | CoreError::OutOfMemory { .. } => PocketLmError::OutOfMemory { message },
            CoreError::ContextFull { .. } => PocketLmError::ContextFull { message },
            CoreError::SessionFile { .. } | CoreError::Constraint(_) => PocketLmError::InvalidArgument { message },
            CoreError::NonFinite { .. } | CoreError::ModelFileChanged { .. } => PocketLmError::InvalidModel { message },
            CoreError::InvalidArgument(_) | CoreError::TokenOutOfRange { .. } => {
                PocketLmError::InvalidArgument { message }
            }
        }
    }
}
