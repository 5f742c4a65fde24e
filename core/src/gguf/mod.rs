//! GGUF files: zero-copy reading through a read-only memory map, and streaming writing.

mod map_guard;
mod reader;
mod types;
mod writer;

pub use reader::{GgufHeader, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC};
pub use types::{GgmlType, MetaValue, Q4_0_R16_ID};
pub use writer::{write_gguf, TensorPlan};

use crate::error::{Error, GgufError, Result};
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// An open GGUF file: parsed header plus the mapping its tensors point into.
///
/// The map is read-only and private, so the pages of tensor data are shared with the page
/// cache and count as file-backed memory: the OS can drop and re-read them under pressure
/// instead of killing the app. A file truncated or rewritten in place while open is detected
/// rather than fatal (see `map_guard.rs` and [`GgufFile::check_unchanged`]).
pub struct GgufFile {
    pub path: PathBuf,
    pub header: GgufHeader,
    // Declared before `map`: it must be unregistered before the memory is unmapped.
    guard: map_guard::MapGuard,
    map: Mmap,
    file: File,
    identity: map_guard::FileIdentity,
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let identity = map_guard::FileIdentity::of(&file).map_err(|e| Error::io(&path, e))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            let why = "is a directory, not a GGUF file (a Hugging Face folder needs `pocketlm convert` first)";
            return Err(Error::io(&path, std::io::Error::new(std::io::ErrorKind::IsADirectory, why)));
        }
        // SAFETY: the map is read-only. A file truncated under it would fault on access: the
        // guard registered below turns that into an error (`check_unchanged`) instead.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let guard = map_guard::MapGuard::register(map.as_ptr(), map.len());
        let header = GgufHeader::parse(&map).map_err(|source| Error::Gguf { path: path.clone(), source })?;
        Ok(GgufFile { path, header, guard, map, file, identity })
    }

    /// Fails with [`Error::ModelFileChanged`] if the file was truncated or rewritten in place
    /// since it was opened (a file renamed over the path is fine: the old one stays mapped).
    /// One `fstat`: the forward pass calls it before and after its work, so weights read while
    /// the file changed never reach the caller.
    pub fn check_unchanged(&self) -> Result<()> {
        if self.guard.damaged() || !self.identity.unchanged(&self.file) {
            return Err(Error::ModelFileChanged { path: self.path.clone() });
        }
        Ok(())
    }

    /// The bytes of a tensor (ranges were validated when the header was parsed).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.map[self.header.tensor_range(t)]
    }

    pub fn err(&self, source: GgufError) -> Error {
        Error::Gguf { path: self.path.clone(), source }
    }

    /// Size of the mapped file in bytes.
    pub fn file_size(&self) -> u64 {
        self.map.len() as u64
    }

    /// Advises the OS that tensor data will be needed soon (prefaults on first use otherwise).
    pub fn advise_willneed(&self) {
        #[cfg(unix)]
        let _ = self.map.advise(memmap2::Advice::WillNeed);
    }
}

impl GgufFile {
    /// The whole mapped file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}
