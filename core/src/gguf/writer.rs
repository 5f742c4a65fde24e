//! GGUF v3 writer that streams tensor data, so converting a 3B model never holds more than one
//! tensor in memory. Output goes to `<out>.partial` and is renamed only when complete: an
//! interrupted conversion never leaves a file that looks valid, nor clobbers an existing one.

use super::reader::GGUF_MAGIC;
use super::types::{GgmlType, MetaValue};
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// A tensor to be written: its header entry. Data comes later, in the same order.
#[derive(Debug, Clone)]
pub struct TensorPlan {
    pub name: String,
    /// GGML order (`dims[0]` contiguous).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

impl TensorPlan {
    pub fn n_bytes(&self) -> u64 {
        let row = self.ty.row_bytes(self.dims[0]).unwrap_or(0);
        self.dims[1..].iter().product::<u64>() * row
    }
}

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, v: &MetaValue) -> std::io::Result<()> {
    match v {
        MetaValue::U8(x) => w.write_all(&[*x]),
        MetaValue::I8(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::U16(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::I16(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::U32(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::I32(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::F32(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::Bool(x) => w.write_all(&[*x as u8]),
        MetaValue::Str(s) => write_str(w, s),
        MetaValue::Array(items) => {
            // An empty array still needs an element type; u8 is what llama.cpp writes.
            let elem_ty = items.first().map_or(0, MetaValue::type_id);
            w.write_all(&elem_ty.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|it| write_value(w, it))
        }
        MetaValue::U64(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::I64(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::F64(x) => w.write_all(&x.to_le_bytes()),
    }
}

/// Tensor data alignment of the files we write (recorded as `general.alignment`; readers
/// default to 32). 64 puts every tensor on a cache line, so a 64-byte vector load of the
/// interleaved Q4_0_R16 quants never straddles two lines (at 32, 160 of BTLM-3B's 161
/// matrices started mid-line and every such load touched two).
const WRITE_ALIGNMENT: u64 = 64;
const ALIGNMENT_KEY: &str = "general.alignment";

/// Writes a complete GGUF file. `fill(i, sink)` must write exactly the bytes of tensor `i`.
pub fn write_gguf(
    path: &Path,
    metadata: &[(String, MetaValue)],
    tensors: &[TensorPlan],
    mut fill: impl FnMut(usize, &mut dyn Write) -> Result<()>,
) -> Result<()> {
    crate::atomic_file::write_atomic(path, |sink| {
        let io = |e| Error::io(path, e);
        let mut w = CountingWriter { inner: sink, written: 0 };
        let alignment = WRITE_ALIGNMENT;
        let align_key = (ALIGNMENT_KEY.to_string(), MetaValue::U32(alignment as u32));
        let metadata: Vec<&(String, MetaValue)> =
            metadata.iter().filter(|(k, _)| k != ALIGNMENT_KEY).chain([&align_key]).collect();

        w.write_all(&GGUF_MAGIC).map_err(io)?;
        w.write_all(&3u32.to_le_bytes()).map_err(io)?;
        w.write_all(&(tensors.len() as u64).to_le_bytes()).map_err(io)?;
        w.write_all(&(metadata.len() as u64).to_le_bytes()).map_err(io)?;
        for (k, v) in metadata {
            write_str(&mut w, k).map_err(io)?;
            w.write_all(&v.type_id().to_le_bytes()).map_err(io)?;
            write_value(&mut w, v).map_err(io)?;
        }
        let mut offset = 0u64;
        for t in tensors {
            write_str(&mut w, &t.name).map_err(io)?;
            w.write_all(&(t.dims.len() as u32).to_le_bytes()).map_err(io)?;
            for d in &t.dims {
                w.write_all(&d.to_le_bytes()).map_err(io)?;
            }
            w.write_all(&t.ty.id().to_le_bytes()).map_err(io)?;
            w.write_all(&offset.to_le_bytes()).map_err(io)?;
            offset = (offset + t.n_bytes()).div_ceil(alignment) * alignment;
        }
        pad_to(&mut w, alignment).map_err(io)?;

        let data_start = w.written;
        for (i, t) in tensors.iter().enumerate() {
            let before = w.written;
            fill(i, &mut w)?;
            let got = w.written - before;
            if got != t.n_bytes() {
                return Err(Error::InvalidArgument(format!(
                    "internal: tensor {:?} wrote {got} bytes, expected {}",
                    t.name,
                    t.n_bytes()
                )));
            }
            pad_to(&mut w, alignment).map_err(io)?;
        }
        debug_assert_eq!(w.written - data_start, offset);
        Ok(())
    })
}

fn pad_to(w: &mut CountingWriter<'_>, alignment: u64) -> std::io::Result<()> {
    let pad = w.written.div_ceil(alignment) * alignment - w.written;
    w.write_all(&vec![0u8; pad as usize])
}

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    written: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
