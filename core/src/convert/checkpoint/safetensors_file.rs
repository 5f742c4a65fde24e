//! One safetensors file, memory-mapped: tensors are slices of the map, so reading is free.

use super::{Shard, StoredDtype};
use crate::error::{ConvertError, Error, Result};
use memmap2::Mmap;
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
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
        SafeTensors::deserialize(&map).map_err(|e| st_err(path, name_the_tensor(&map, e)))?;
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

/// Some safetensors errors (a size that does not match the shape, an offset past the end) do
/// not say which tensor is wrong; find it in the JSON header, for the message only.
fn name_the_tensor(map: &[u8], e: SafeTensorError) -> String {
    if matches!(e, SafeTensorError::InvalidOffset(_)) {
        return e.to_string(); // names it already
    }
    let header_len = map.get(..8).map_or(0, |n| u64::from_le_bytes(n.try_into().unwrap_or_default()) as usize);
    let header = map
        .get(8..8usize.saturating_add(header_len))
        .and_then(|h| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(h).ok());
    let Some(header) = header else { return e.to_string() };
    let data_len = map.len() - 8 - header_len;
    let culprit = header.iter().filter(|(k, _)| *k != "__metadata__").find_map(|(name, v)| {
        let dtype = v.get("dtype")?.as_str()?;
        let shape: Vec<u64> = v.get("shape")?.as_array()?.iter().map(|d| d.as_u64()).collect::<Option<_>>()?;
        let offsets: Vec<u64> = v.get("data_offsets")?.as_array()?.iter().map(|d| d.as_u64()).collect::<Option<_>>()?;
        let &[start, end] = offsets.as_slice() else {
            return Some(format!("tensor {name:?}: data_offsets {offsets:?}"));
        };
        let bytes_per = match dtype {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            _ => 1,
        };
        let need = shape.iter().try_fold(bytes_per, |a: u64, &d| a.checked_mul(d));
        let bad = end < start || need != Some(end - start) || end > data_len as u64;
        bad.then(|| {
            let need = need.map_or("more than 2^64".into(), |n| n.to_string());
            format!(
                "tensor {name:?} ({dtype}, shape {shape:?}) needs {need} bytes; its data_offsets are [{start}, {end}]"
            )
        })
    });
    match culprit {
        Some(c) => format!("{e}: {c}"),
        None => e.to_string(),
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
