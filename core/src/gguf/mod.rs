//! GGUF files: zero-copy reading through a read-only memory map, and streaming writing.

mod reader;
mod types;
mod writer;

pub use reader::{GgufHeader, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC};
pub use types::{GgmlType, MetaValue};
pub use writer::{write_gguf, TensorPlan};

use crate::error::{Error, GgufError, Result};
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// An open GGUF file: parsed header plus the mapping its tensors point into.
///
/// The map is read-only and private, so the pages of tensor data are shared with the page
/// cache and count as file-backed memory: the OS can drop and re-read them under pressure
/// instead of killing the app.
pub struct GgufFile {
    pub path: PathBuf,
    pub header: GgufHeader,
    map: Mmap,
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only. Another process truncating the file while it is mapped
        // would fault on access; that is the documented contract of every mmap-based loader
        // (llama.cpp included) and cannot be guarded against from user space.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let header = GgufHeader::parse(&map).map_err(|source| Error::Gguf { path: path.clone(), source })?;
        Ok(GgufFile { path, header, map })
    }

    /// The bytes of a tensor (ranges were validated when the header was parsed).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        let start = (self.header.data_offset + t.offset) as usize;
        &self.map[start..start + t.n_bytes as usize]
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
