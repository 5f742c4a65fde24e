//! GGUF parsing with every length and offset checked against the bytes actually present.
//!
//! Why not the `ggus` crate: its reader transmutes type ids read from the file straight into
//! Rust enums (undefined behaviour on a corrupted id) and slices the data section without a
//! length check (a panic on a truncated file). A model file is untrusted input on a phone, so
//! this parser owns the bounds checks and is fuzzed (`core/fuzz`).

use super::types::{GgmlType, MetaValue};
use crate::error::GgufError;
use std::collections::HashMap;

pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Nesting depth accepted for arrays of arrays; real files use 1.
const MAX_ARRAY_DEPTH: u32 = 4;
/// Dimensions a tensor may have in GGML.
const MAX_DIMS: u32 = 4;
/// Upper bound on metadata array elements in a file, all arrays together. Each parsed value
/// takes ~32 bytes, so a hostile count must not be trusted: real vocabularies (tokens, merges,
/// types) total about 1 M elements; this allows 4x that (at most ~128 MiB parsed).
const MAX_META_ELEMENTS: u64 = 1 << 22;
/// Capacity reserved up front for any list whose length comes from the file; it grows as
/// elements are actually read, so a lying count cannot make us reserve memory.
const MAX_RESERVE: usize = 4096;

/// A tensor's entry in the header, with its byte range already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the contiguous (row) length.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset relative to the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Everything before the tensor data, parsed and validated against the file length.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, MetaValue)>,
    index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Metadata array elements parsed so far (see MAX_META_ELEMENTS).
    elements: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let n = usize::try_from(n).map_err(|_| truncated(what))?;
        let end = self.pos.checked_add(n).ok_or_else(|| truncated(what))?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GgufError::InvalidHeader { what: what(), why: "string is not valid UTF-8".into() })
    }
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }
}

fn truncated(what: &dyn Fn() -> String) -> GgufError {
    GgufError::TruncatedHeader { what: what() }
}

fn read_value(c: &mut Cursor, ty: u32, key: &str, depth: u32) -> Result<MetaValue, GgufError> {
    let what = || format!("value of metadata key {key:?}");
    Ok(match ty {
        0 => MetaValue::U8(c.array::<1>(&what)?[0]),
        1 => MetaValue::I8(c.array::<1>(&what)?[0] as i8),
        2 => MetaValue::U16(u16::from_le_bytes(c.array(&what)?)),
        3 => MetaValue::I16(i16::from_le_bytes(c.array(&what)?)),
        4 => MetaValue::U32(c.u32(&what)?),
        5 => MetaValue::I32(i32::from_le_bytes(c.array(&what)?)),
        6 => MetaValue::F32(f32::from_le_bytes(c.array(&what)?)),
        7 => match c.array::<1>(&what)?[0] {
            0 => MetaValue::Bool(false),
            1 => MetaValue::Bool(true),
            b => {
                return Err(GgufError::InvalidValue {
                    key: key.into(),
                    why: format!("bool byte is {b}, expected 0 or 1"),
                })
            }
        },
        8 => MetaValue::Str(c.string(&what)?),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(GgufError::InvalidValue { key: key.into(), why: "arrays nested too deeply".into() });
            }
            let elem_ty = c.u32(&what)?;
            let len = c.u64(&what)?;
            // Every element takes at least one byte, so a count larger than what is left is
            // corruption; checking first keeps a hostile count from reserving gigabytes.
            if len > c.remaining() {
                return Err(truncated(&what));
            }
            c.elements += len;
            if c.elements > MAX_META_ELEMENTS {
                return Err(GgufError::InvalidValue {
                    key: key.into(),
                    why: format!("metadata arrays hold more than {MAX_META_ELEMENTS} elements in total"),
                });
            }
            let mut items = Vec::with_capacity((len as usize).min(MAX_RESERVE));
            for _ in 0..len {
                items.push(read_value(c, elem_ty, key, depth + 1)?);
            }
            MetaValue::Array(items)
        }
        10 => MetaValue::U64(c.u64(&what)?),
        11 => MetaValue::I64(i64::from_le_bytes(c.array(&what)?)),
        12 => MetaValue::F64(f64::from_le_bytes(c.array(&what)?)),
        other => return Err(GgufError::UnknownValueType { key: key.into(), ty: other }),
    })
}

impl GgufHeader {
    /// Parses a GGUF header from the start of `file` (the whole file: its length bounds every
    /// tensor's byte range).
    pub fn parse(file: &[u8]) -> Result<Self, GgufError> {
        let mut c = Cursor { buf: file, pos: 0, elements: 0 };
        let magic: [u8; 4] = c.array(&|| "magic".into())?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = c.u32(&|| "version".into())?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = c.u64(&|| "tensor count".into())?;
        let n_kv = c.u64(&|| "metadata count".into())?;
        // A key takes at least 12 bytes and a tensor entry at least 24.
        if n_kv > c.remaining() / 12 {
            return Err(truncated(&|| format!("{n_kv} metadata entries")));
        }
        if n_tensors > c.remaining() / 24 {
            return Err(truncated(&|| format!("{n_tensors} tensor entries")));
        }

        let mut metadata = Vec::with_capacity((n_kv as usize).min(MAX_RESERVE));
        let mut index = HashMap::with_capacity((n_kv as usize).min(MAX_RESERVE));
        for i in 0..n_kv {
            let key = c.string(&|| format!("metadata key #{i}"))?;
            let ty = c.u32(&|| format!("type of metadata key {key:?}"))?;
            let value = read_value(&mut c, ty, &key, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::DuplicateKey(key));
            }
            metadata.push((key, value));
        }

        let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && (8..=1 << 20).contains(&a) => a,
                _ => {
                    return Err(GgufError::InvalidValue {
                        key: "general.alignment".into(),
                        why: format!("{} is not a power of two between 8 and 1 MiB", v.summary()),
                    })
                }
            },
        };

        let mut tensors = Vec::with_capacity((n_tensors as usize).min(MAX_RESERVE));
        let mut names = HashMap::with_capacity((n_tensors as usize).min(MAX_RESERVE));
        for i in 0..n_tensors {
            let name = c.string(&|| format!("name of tensor #{i}"))?;
            let w = || format!("entry of tensor {name:?}");
            let n_dims = c.u32(&w)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::InvalidShape {
                    tensor: name,
                    shape: vec![],
                    why: format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&w)?);
            }
            let ty_id = c.u32(&w)?;
            let offset = c.u64(&w)?;
            let ty = GgmlType::from_id(ty_id)
                .ok_or_else(|| GgufError::UnknownTensorType { tensor: name.clone(), ty: ty_id })?;
            let n_bytes = tensor_bytes(&name, &dims, ty)?;
            if names.insert(name.clone(), i).is_some() {
                return Err(GgufError::DuplicateTensor(name));
            }
            tensors.push(TensorInfo { name, dims, ty, offset, n_bytes });
        }

        let header_end = c.pos as u64;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        let data_len = (file.len() as u64).saturating_sub(data_offset);
        check_tensor_ranges(&tensors, data_len, alignment)?;

        Ok(GgufHeader { version, alignment, metadata, index, tensors, data_offset })
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Where a tensor's bytes are in the file (validated against the file size by `parse`).
    pub fn tensor_range(&self, t: &TensorInfo) -> std::ops::Range<usize> {
        let start = (self.data_offset + t.offset) as usize;
        start..start + t.n_bytes as usize
    }
}

fn tensor_bytes(name: &str, dims: &[u64], ty: GgmlType) -> Result<u64, GgufError> {
    let bad = |why: String| GgufError::InvalidShape { tensor: name.into(), shape: dims.to_vec(), why };
    if dims.contains(&0) {
        return Err(bad("a dimension is zero".into()));
    }
    let (block_elems, _) = ty.block();
    if !dims[0].is_multiple_of(block_elems) {
        return Err(bad(format!("row length {} is not a multiple of the {ty} block size {block_elems}", dims[0])));
    }
    let row = ty.row_bytes(dims[0]).ok_or_else(|| bad("size overflows".into()))?;
    dims[1..]
        .iter()
        .try_fold(row, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n < (1u64 << 48))
        .ok_or_else(|| bad("size overflows".into()))
}

/// Every tensor must lie inside the data section, aligned, without overlapping another.
fn check_tensor_ranges(tensors: &[TensorInfo], data_len: u64, alignment: u64) -> Result<(), GgufError> {
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    let mut prev: Option<&TensorInfo> = None;
    for t in order {
        if t.offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor { tensor: t.name.clone(), offset: t.offset, alignment });
        }
        if t.offset > data_len {
            return Err(GgufError::TensorOffsetOutOfBounds { tensor: t.name.clone(), offset: t.offset, data_len });
        }
        let end = t.offset + t.n_bytes; // both < 2^48: no overflow
        if end > data_len {
            return Err(GgufError::TruncatedTensorData { tensor: t.name.clone(), offset: t.offset, end, data_len });
        }
        if let Some(p) = prev {
            if p.offset + p.n_bytes > t.offset {
                return Err(GgufError::OverlappingTensors { a: p.name.clone(), b: t.name.clone() });
            }
        }
        prev = Some(t);
    }
    Ok(())
}
