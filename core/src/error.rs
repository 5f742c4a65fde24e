//! One error type for the whole engine, so the CLI and the FFI layer can map every failure to a
//! message a person can act on. Variants name the file, key or tensor at fault.

use std::path::PathBuf;

/// Errors from reading a GGUF file. Each corruption has its own variant so that callers (and
/// tests) can tell a truncated download from a file written by an incompatible tool.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file: magic bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {0} (this build reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("file is truncated inside the header while reading {what}")]
    TruncatedHeader { what: String },
    #[error("header field {what} is invalid: {why}")]
    InvalidHeader { what: String, why: String },
    #[error("metadata key {key:?} has unknown value type {ty}")]
    UnknownValueType { key: String, ty: u32 },
    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("tensor {tensor:?} has unknown ggml type {ty}")]
    UnknownTensorType { tensor: String, ty: u32 },
    #[error("tensor {tensor:?} has type {ty} which this engine cannot compute with")]
    UnsupportedTensorType { tensor: String, ty: String },
    #[error("tensor {tensor:?} has an invalid shape {shape:?}: {why}")]
    InvalidShape { tensor: String, shape: Vec<u64>, why: String },
    #[error("tensor {tensor:?} starts at data offset {offset}, past the end of the data section ({data_len} bytes)")]
    TensorOffsetOutOfBounds { tensor: String, offset: u64, data_len: u64 },
    #[error("tensor data is truncated: {tensor:?} needs bytes {offset}..{end} of the data section but the file holds only {data_len}")]
    TruncatedTensorData { tensor: String, offset: u64, end: u64, data_len: u64 },
    #[error("tensor {tensor:?} at data offset {offset} is not aligned to {alignment} bytes")]
    MisalignedTensor { tensor: String, offset: u64, alignment: u64 },
    #[error("tensors {a:?} and {b:?} overlap in the data section")]
    OverlappingTensors { a: String, b: String },
    #[error("required metadata key {0:?} is missing")]
    MissingKey(String),
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongKeyType { key: String, expected: String, found: String },
    #[error("metadata key {key:?} has an invalid value: {why}")]
    InvalidValue { key: String, why: String },
    #[error("model architecture is {found:?}; this engine runs \"btlm\"")]
    WrongArchitecture { found: String },
    /// NaN or infinity in a tensor that must hold finite numbers (checked at load for the
    /// small F32 vectors, at conversion and quantization for every tensor).
    #[error("tensor {tensor}: element {index} is {value} (NaN or infinite): the file is corrupted")]
    NonFiniteTensor { tensor: String, index: usize, value: f32 },
    #[error("required tensor {0:?} is missing")]
    MissingTensor(String),
    #[error("tensor {tensor:?} has shape {found:?} but the hyperparameters require {expected:?}")]
    ShapeMismatch { tensor: String, expected: Vec<u64>, found: Vec<u64> },
    #[error("unexpected tensor {0:?} (not part of a BTLM model)")]
    UnexpectedTensor(String),
}

/// Errors from turning a Hugging Face folder into a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: {why}")]
    Config { path: PathBuf, why: String },
    #[error("config key {key:?}: {why}")]
    ConfigKey { key: String, why: String },
    #[error(
        "no weights found in {0}: expected model.safetensors, model.safetensors.index.json, \
         pytorch_model.bin or pytorch_model.bin.index.json"
    )]
    NoWeights(PathBuf),
    #[error("{path}: {why}")]
    Checkpoint { path: PathBuf, why: String },
    #[error("{path}: cannot read safetensors: {why}")]
    Safetensors { path: PathBuf, why: String },
    #[error("tensor {tensor:?} has dtype {dtype}, expected F32, F16 or BF16")]
    UnsupportedDtype { tensor: String, dtype: String },
    #[error("tensor {tensor:?} has shape {found:?}, expected {expected:?}")]
    TensorShape { tensor: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("unknown tensor {0:?} in checkpoint (not part of a BTLM model)")]
    UnknownTensor(String),
    #[error("tensor {0:?} is missing from the checkpoint")]
    MissingTensor(String),
    #[error("checkpoint tensor {tensor:?}: element {index} is {value} (NaN or infinite); the checkpoint is corrupted")]
    NonFinite { tensor: String, index: usize, value: f32 },
    #[error(
        "no tokenizer: {0} has neither tokenizer.json nor vocab.json + merges.txt, and none was given with --tokenizer"
    )]
    NoTokenizer(PathBuf),
}

/// The engine's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Gguf { path: PathBuf, source: GgufError },
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error("a session of {n_ctx} tokens needs {needed} bytes ({detail}), over the memory budget of {budget} bytes")]
    OverBudget { n_ctx: usize, needed: u64, budget: u64, detail: String },
    #[error("{path}: session file {why}")]
    SessionFile { path: PathBuf, why: String },
    #[error("context is full: {used} of {n_ctx} tokens used, {requested} more requested")]
    ContextFull { n_ctx: usize, used: usize, requested: usize },
    #[error("out of memory: the {what} needs {bytes} bytes{}", available.map(|a| format!(", but only {a} bytes are available")).unwrap_or_default())]
    OutOfMemory { what: String, bytes: u64, available: Option<u64> },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, vocab: usize },
    /// The mapped model file was truncated or rewritten in place while in use.
    #[error(
        "{path}: the model file was truncated or overwritten while in use; open it again \
         (to update a model, write the new file under another name and rename it over the old one)"
    )]
    ModelFileChanged { path: PathBuf },
    /// A NaN or infinity where only finite numbers make sense (weights, cache, logits).
    #[error("non-finite value {value} in the {what}")]
    NonFinite { what: String, value: f32 },
    /// A JSON schema, grammar or regular expression that cannot constrain the output.
    #[error("constraint: {0}")]
    Constraint(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
