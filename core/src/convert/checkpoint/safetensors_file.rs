//! One safetensors file, memory-mapped: tensors are slices of the map, so reading is free.

use super::{Shard, StoredDtype};
use crate::error::{ConvertError, Error, Result};
use memmap2::Mmap;
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;
use std::fs::File;
use std::path::Path;

pub(super) struct SafetensorsShard {
    map: Mmap,
    /// Byte offset of the data section (after the 8-byte length and the JSON header).
    data_start: usize,
    meta: Metadata,
}

fn st_err(path: &Path, why: impl ToString) -> Error {
    ConvertError::Safetensors { path: path.to_path_buf(), why: why.to_string() }.into()
}

impl SafetensorsShard {
    pub(super) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: read-only map of a checkpoint we only read during conversion.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        // `deserialize` validates every tensor's offsets against the file; keep the metadata.
        SafeTensors::deserialize(&map).map_err(|e| st_err(path, e))?;
        let (header_len, meta) = SafeTensors::read_metadata(&map).map_err(|e| st_err(path, e))?;
        Ok(SafetensorsShard { map, data_start: 8 + header_len, meta })
    }
}

impl Shard for SafetensorsShard {
    fn tensors(&self) -> Vec<(String, StoredDtype, Vec<usize>)> {
        self.meta.tensors().into_iter().map(|(name, info)| (name, dtype(info.dtype), info.shape.clone())).collect()
    }

    fn read(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let info = self.meta.info(name).ok_or_else(|| ConvertError::MissingTensor(name.into()))?;
        let (start, end) = info.data_offsets;
        Ok(Cow::Borrowed(&self.map[self.data_start + start..self.data_start + end]))
    }
}

fn dtype(d: Dtype) -> StoredDtype {
    match d {
        Dtype::F32 => StoredDtype::F32,
        Dtype::F16 => StoredDtype::F16,
        Dtype::BF16 => StoredDtype::BF16,
        Dtype::F64 => StoredDtype::Other("F64"),
        Dtype::I64 => StoredDtype::Other("I64"),
        Dtype::I32 => StoredDtype::Other("I32"),
        Dtype::I16 => StoredDtype::Other("I16"),
        Dtype::I8 => StoredDtype::Other("I8"),
        Dtype::U8 => StoredDtype::Other("U8"),
        Dtype::BOOL => StoredDtype::Other("BOOL"),
        _ => StoredDtype::Other("an unsupported type"),
    }
}
