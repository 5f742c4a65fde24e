//! A writer of PyTorch checkpoints in the zip layout that `torch.save(state_dict)` has produced
//! since PyTorch 1.6, so that tests can build `pytorch_model.bin` inputs (f32 and sharded
//! checkpoints, shared storages, strided views, hostile pickles) without Python, and so that a
//! tool can write a full-size checkpoint for a memory measurement.
//!
//! # What is written
//!
//! An uncompressed zip whose entries sit under one root folder, which torch names after the file
//! (`pytorch_model` for `pytorch_model.bin`):
//!
//! - `data.pkl`: a protocol-2 pickle of an `OrderedDict` mapping each name to
//!   `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, False, OrderedDict())`,
//!   where `storage` is a persistent id `('storage', torch.<Type>Storage, key, 'cpu', numel)`;
//! - `byteorder` (`little`), only if asked for: torch writes it since 2.1, older files lack it;
//! - `data/<key>`: one per storage, its raw little-endian elements, in key order as torch sorts
//!   them (`0`, `1`, `10`, ...), the data of every entry 64-byte aligned as torch aligns it;
//! - `version`: `3\n`.
//!
//! Two differences from torch's own files, neither visible to a reader: the pickle uses no memo
//! (torch's pickler puts every object in it and fetches repeats with `BINGET`), and the dict
//! carries no `_metadata` attribute (the per-module version numbers torch adds with `BUILD`,
//! which only `load_state_dict` reads). The alignment padding is the zip crate's
//! `DataStreamAlignment` field under torch's `FB` header id rather than torch's `Z` fill.
//!
//! The writer checks nothing about the tensors it is given: a view may overrun its storage, two
//! tensors may read one storage as different types, a storage's bytes may disagree with the
//! element count the pickle declares. That is deliberate: tests use it to write files that lie.

use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// Element type of a storage, as torch names its storage class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    /// The storage class the pickle names (`torch.<class>`).
    const fn storage_class(self) -> &'static str {
        match self {
            Dtype::F32 => "FloatStorage",
            Dtype::F16 => "HalfStorage",
            Dtype::BF16 => "BFloat16Storage",
        }
    }

    /// Little-endian bytes of `values` in this type; f16 and bf16 round to nearest, ties to even
    /// (what `tensor.to(torch.bfloat16)` does).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(values.len() * self.size());
        self.encode_into(values, &mut out);
        out
    }

    /// [`encode`](Self::encode), appending to `out` so a streaming caller reuses one buffer.
    fn encode_into(self, values: &[f32], out: &mut Vec<u8>) {
        match self {
            Dtype::F32 => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
            Dtype::F16 => out.extend(values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes())),
            Dtype::BF16 => out.extend(values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes())),
        }
    }
}

/// One entry of the state dict: a view into a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    /// The storage class the pickle names for this tensor. Normally its storage's type; another
    /// one makes a file that reads one storage as two types.
    pub dtype: Dtype,
    /// Extents, outermost first; empty for a scalar.
    pub shape: Vec<usize>,
    /// Index into the checkpoint's storages (its key in the file is this index in decimal).
    pub storage: usize,
    /// First element of the view inside the storage, in elements.
    pub offset: usize,
    /// Element strides, outermost first; `None` for row-major contiguous.
    pub stride: Option<Vec<usize>>,
}

impl TensorEntry {
    /// A contiguous view of a whole storage from its start.
    pub fn contiguous(name: &str, dtype: Dtype, shape: &[usize], storage: usize) -> Self {
        TensorEntry { name: name.to_string(), dtype, shape: shape.to_vec(), storage, offset: 0, stride: None }
    }

    /// The strides the pickle records: the given ones, or row-major ones for `None`.
    fn strides(&self) -> Vec<usize> {
        self.stride.clone().unwrap_or_else(|| {
            let mut s = vec![1; self.shape.len()];
            for i in (0..self.shape.len().saturating_sub(1)).rev() {
                s[i] = s[i + 1] * self.shape[i + 1];
            }
            s
        })
    }

    /// Elements of the view: what transformers counts toward a shard's size.
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What the pickle declares about a storage; its bytes come separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageSpec {
    pub dtype: Dtype,
    /// The element count the persistent id declares.
    pub numel: usize,
}

/// A checkpoint held in memory: the shape tests build their inputs in.
#[derive(Clone, Debug, Default)]
pub struct TorchBin {
    /// The root folder of the archive; `None` names it after the file, as `torch.save` does.
    pub root: Option<String>,
    /// Each storage's type and bytes. The pickle declares `bytes.len() / dtype.size()`
    /// elements; a ragged tail is written anyway.
    pub storages: Vec<(Dtype, Vec<u8>)>,
    pub tensors: Vec<TensorEntry>,
    /// For hostile files: `(module, name)` pairs, each emitted as a further dict entry whose value
    /// is `module.name("true")` (a `GLOBAL` called by `REDUCE`). The entries are named `evil`,
    /// `evil_1`, `evil_2`, ... The argument is a harmless shell command, should `os.system`
    /// ever be called on it.
    pub extra_globals: Vec<(String, String)>,
    /// Whether to write the `byteorder` entry that torch 2.1 and later add.
    pub byteorder: bool,
}

impl TorchBin {
    /// Writes the checkpoint to `path`.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        self.layout().write_with(path, |i, out| out.write_all(&self.storages[i].1))
    }

    /// The checkpoint's metadata, without its bytes.
    pub fn layout(&self) -> Layout {
        Layout {
            root: self.root.clone(),
            storages: self
                .storages
                .iter()
                .map(|(dtype, bytes)| StorageSpec { dtype: *dtype, numel: bytes.len() / dtype.size() })
                .collect(),
            tensors: self.tensors.clone(),
            extra_globals: self.extra_globals.clone(),
            byteorder: self.byteorder,
        }
    }

    /// Splits the checkpoint into one per group of tensor names, as a sharded save does: each
    /// part holds its tensors and (renumbered) the storages they use, in first-use order. A
    /// storage used by tensors of two groups is copied into both, which transformers avoids by
    /// keeping tied tensors together; `extra_globals` go to no part.
    pub fn split(&self, groups: &[&[&str]]) -> io::Result<Vec<TorchBin>> {
        groups
            .iter()
            .map(|group| {
                let mut part = TorchBin { byteorder: self.byteorder, ..TorchBin::default() };
                let mut renumber = BTreeMap::new();
                for &name in group.iter() {
                    let t = self.tensors.iter().find(|t| t.name == name).ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, format!("split: no tensor named {name}"))
                    })?;
                    let storage = self.storages.get(t.storage).ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, format!("split: {name}: no storage {}", t.storage))
                    })?;
                    let next = part.storages.len();
                    let index = *renumber.entry(t.storage).or_insert_with(|| {
                        part.storages.push(storage.clone());
                        next
                    });
                    part.tensors.push(TensorEntry { storage: index, ..t.clone() });
                }
                Ok(part)
            })
            .collect()
    }
}

/// The metadata of a checkpoint without its bytes, for writing one whose storages are produced on
/// the fly (a full-size model is written without ever holding it in memory).
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// As [`TorchBin::root`].
    pub root: Option<String>,
    pub storages: Vec<StorageSpec>,
    pub tensors: Vec<TensorEntry>,
    /// As [`TorchBin::extra_globals`].
    pub extra_globals: Vec<(String, String)>,
    /// As [`TorchBin::byteorder`].
    pub byteorder: bool,
}

impl Layout {
    /// Writes the checkpoint to `path`, calling `fill(i, out)` to write storage `i`'s bytes into
    /// its entry. Storages are asked for in key order (`0`, `1`, `10`, `11`, ...), each once, so
    /// `fill` can generate one, write it and drop it. What `fill` writes is not checked against
    /// the declared element count.
    pub fn write_with<F>(&self, path: &Path, mut fill: F) -> io::Result<()>
    where
        F: FnMut(usize, &mut dyn Write) -> io::Result<()>,
    {
        let root = match &self.root {
            Some(r) => r.clone(),
            None => path.file_stem().map_or_else(|| "archive".to_string(), |s| s.to_string_lossy().into_owned()),
        };
        let pickle = self.pickle()?;
        let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 20, File::create(path)?));
        // Entries over 4 GiB need a zip64 local header, which has to be chosen before writing.
        let options = |len: usize| {
            SimpleFileOptions::default()
                .compression_method(CompressionMethod::Stored)
                .last_modified_time(DateTime::default())
                .with_alignment_and_header_id(64, u16::from_le_bytes(*b"FB"))
                .large_file(len as u64 >= u64::from(u32::MAX))
        };
        zip.start_file(format!("{root}/data.pkl"), options(pickle.len()))?;
        zip.write_all(&pickle)?;
        if self.byteorder {
            zip.start_file(format!("{root}/byteorder"), options(6))?;
            zip.write_all(b"little")?;
        }
        let mut keys: Vec<(String, usize)> = (0..self.storages.len()).map(|i| (i.to_string(), i)).collect();
        keys.sort();
        for (key, i) in keys {
            let spec = self.storages[i];
            zip.start_file(format!("{root}/data/{key}"), options(spec.numel.saturating_mul(spec.dtype.size())))?;
            fill(i, &mut zip)?;
        }
        zip.start_file(format!("{root}/version"), options(2))?;
        zip.write_all(b"3\n")?;
        zip.finish()?.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok(())
    }

    /// The `data.pkl` bytes.
    fn pickle(&self) -> io::Result<Vec<u8>> {
        let mut items = Vec::with_capacity(self.tensors.len() + self.extra_globals.len());
        for t in &self.tensors {
            let spec = self.storages.get(t.storage).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{}: no storage {}", t.name, t.storage))
            })?;
            let mut p = Pickler::default();
            p.unicode(&t.name);
            p.global("torch._utils", "_rebuild_tensor_v2")?;
            p.op(op::MARK);
            p.op(op::MARK);
            p.unicode("storage");
            p.global("torch", t.dtype.storage_class())?;
            p.unicode(&t.storage.to_string());
            p.unicode("cpu");
            p.int(spec.numel as u64);
            p.op(op::TUPLE);
            p.op(op::BINPERSID);
            p.int(t.offset as u64);
            p.int_tuple(&t.shape);
            p.int_tuple(&t.strides());
            p.op(op::NEWFALSE);
            p.ordered_dict()?;
            p.op(op::TUPLE);
            p.op(op::REDUCE);
            items.push(p.out);
        }
        for (i, (module, name)) in self.extra_globals.iter().enumerate() {
            let mut p = Pickler::default();
            p.unicode(&if i == 0 { "evil".to_string() } else { format!("evil_{i}") });
            p.global(module, name)?;
            p.unicode("true");
            p.op(op::TUPLE1);
            p.op(op::REDUCE);
            items.push(p.out);
        }
        let mut p = Pickler::default();
        p.op(op::PROTO);
        p.out.push(2);
        p.ordered_dict()?;
        // Python's pickler adds dict items in batches of 1000, a batch of one with SETITEM.
        for batch in items.chunks(1000) {
            if let [single] = batch {
                p.out.extend_from_slice(single);
                p.op(op::SETITEM);
            } else {
                p.op(op::MARK);
                batch.iter().for_each(|item| p.out.extend_from_slice(item));
                p.op(op::SETITEMS);
            }
        }
        p.op(op::STOP);
        Ok(p.out)
    }
}

/// Writes `shards` the way transformers 4.30's `save_pretrained` writes a sharded checkpoint into
/// `dir`: `pytorch_model-0000i-of-0000n.bin` files and `pytorch_model.bin.index.json`, whose
/// `total_size` counts each storage once per shard, by its first tensor, as `shard_checkpoint` does.
/// A shard without a [`TorchBin::root`] gets its file's stem, as torch names it.
pub fn write_sharded(dir: &Path, shards: &[TorchBin]) -> io::Result<()> {
    let mut weight_map = BTreeMap::new();
    let mut total_size = 0;
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("pytorch_model-{:05}-of-{:05}.bin", i + 1, shards.len());
        shard.write(&dir.join(&file))?;
        let mut seen = HashSet::new();
        for t in &shard.tensors {
            if seen.insert(t.storage) {
                total_size += t.numel() * t.dtype.size();
            }
            weight_map.insert(t.name.clone(), file.clone());
        }
    }
    let index = serde_json::json!({ "metadata": { "total_size": total_size }, "weight_map": weight_map });
    let text = serde_json::to_string_pretty(&index).map_err(io::Error::other)?;
    std::fs::write(dir.join("pytorch_model.bin.index.json"), text + "\n")
}

/// A state dict of named contiguous tensors given as f32 values, each in a storage of its own of
/// type `dtype` (nearest-even rounding for f16 and bf16), with `tied` = `(alias, target)` pairs
/// appended after them as views of the target's storage, as `lm_head.weight` shares
/// `transformer.wte.weight`'s. The root is named after the file.
///
/// # Panics
///
/// On a tensor whose values do not match its shape, or a tie to a name not among `tensors`:
/// mistakes in a test's own input.
pub fn state_dict(tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: Dtype, tied: &[(&str, &str)]) -> TorchBin {
    let mut bin = TorchBin::default();
    for (i, (name, shape, values)) in tensors.iter().enumerate() {
        assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}: values do not match shape {shape:?}");
        bin.storages.push((dtype, dtype.encode(values)));
        bin.tensors.push(TensorEntry::contiguous(name, dtype, shape, i));
    }
    for &(alias, target) in tied {
        let t = bin.tensors.iter().find(|t| t.name == target).unwrap_or_else(|| panic!("tie {alias}: no {target}"));
        let entry = TensorEntry { name: alias.to_string(), ..t.clone() };
        bin.tensors.push(entry);
    }
    bin
}

/// The sizes of a BTLM model, under the names its `config.json` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtlmDims {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_inner: usize,
}

impl BtlmDims {
    /// cerebras/btlm-3b-8k-base.
    pub const BTLM_3B_8K: BtlmDims =
        BtlmDims { vocab_size: 50257, n_embd: 2560, n_layer: 32, n_head: 32, n_inner: 6826 };
}

/// The tensors of a BTLM `pytorch_model.bin`, as `BTLMLMHeadModel.state_dict()` lists them:
/// weights in GPT-2's `Conv1D` layout `[in, out]`, `transformer.relative_pe.slopes` (`[n_head, 1]`,
/// float32 in a bf16 file), and `lm_head.weight` last (a view of `transformer.wte.weight`'s storage).
pub fn btlm_tensors(d: &BtlmDims) -> Vec<(String, Vec<usize>)> {
    let (e, f) = (d.n_embd, d.n_inner);
    let mut out = vec![("transformer.wte.weight".to_string(), vec![d.vocab_size, e])];
    for i in 0..d.n_layer {
        let layer: [(&str, Vec<usize>); 14] = [
            ("ln_1.weight", vec![e]),
            ("ln_1.bias", vec![e]),
            ("attn.c_attn.weight", vec![e, 3 * e]),
            ("attn.c_attn.bias", vec![3 * e]),
            ("attn.c_proj.weight", vec![e, e]),
            ("attn.c_proj.bias", vec![e]),
            ("ln_2.weight", vec![e]),
            ("ln_2.bias", vec![e]),
            ("mlp.c_fc.weight", vec![e, f]),
            ("mlp.c_fc.bias", vec![f]),
            ("mlp.c_fc2.weight", vec![e, f]),
            ("mlp.c_fc2.bias", vec![f]),
            ("mlp.c_proj.weight", vec![f, e]),
            ("mlp.c_proj.bias", vec![e]),
        ];
        out.extend(layer.into_iter().map(|(n, s)| (format!("transformer.h.{i}.{n}"), s)));
    }
    out.push(("transformer.ln_f.weight".to_string(), vec![e]));
    out.push(("transformer.ln_f.bias".to_string(), vec![e]));
    out.push(("transformer.relative_pe.slopes".to_string(), vec![d.n_head, 1]));
    out.push(("lm_head.weight".to_string(), vec![d.vocab_size, e]));
    out
}

/// ALiBi slopes as BTLM's `AlibiPositionEmbeddingLayer` computes them (in double precision, then
/// stored as float32): `2^(-8(i+1)/n)` for a power-of-two `n`, else those of the power of two
/// below `n` followed by every other slope of twice that power.
pub fn alibi_slopes(n_head: usize) -> Vec<f32> {
    // The same expressions as the Python, so that the doubles (and so the f32s) agree.
    fn power_of_two(n: usize) -> Vec<f64> {
        let start = 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0))));
        (0..n).map(|i| start * start.powf(i as f64)).collect()
    }
    fn slopes(n: usize) -> Vec<f64> {
        if n.is_power_of_two() {
            return power_of_two(n);
        }
        let closest = 1 << n.ilog2();
        let mut s = power_of_two(closest);
        s.extend(slopes(2 * closest).into_iter().step_by(2).take(n - closest));
        s
    }
    if n_head == 0 {
        return Vec::new();
    }
    slopes(n_head).into_iter().map(|s| s as f32).collect()
}

/// How the random checkpoint fills a storage.
#[derive(Clone, Copy, Debug)]
enum Init {
    /// N(0, 0.02²): small enough that activations stay finite through 32 layers.
    Normal,
    /// LayerNorm gains: 1.0, as a trained model's are near.
    Ones,
    /// The ALiBi slopes for this many heads.
    Slopes(usize),
}

/// Writes a BTLM checkpoint of dimensions `d` with random weights to `path`, as one
/// `pytorch_model.bin` like cerebras/btlm-3b-8k-base's: every tensor of [`btlm_tensors`] in a
/// storage of its own of type `dtype` (the slopes in f32), `lm_head.weight` sharing the
/// embedding's. Values: N(0, 0.02²), LayerNorm weights 1.0, true ALiBi slopes; storage `i` draws
/// from stream `i` of a ChaCha8 generator seeded with `seed`, so the file depends on the seed only.
/// Storages are generated a chunk at a time as they are written: memory stays at a few MiB
/// whatever the model's size.
pub fn write_random_btlm(path: &Path, d: &BtlmDims, dtype: Dtype, seed: u64) -> io::Result<()> {
    let mut layout = Layout::default();
    let mut inits = Vec::new();
    for (name, shape) in btlm_tensors(d) {
        if name == "lm_head.weight" {
            // Tied: a view of storage 0, transformer.wte.weight's, which btlm_tensors lists first.
            layout.tensors.push(TensorEntry::contiguous(&name, dtype, &shape, 0));
            continue;
        }
        let (init, ty) = if name.ends_with("relative_pe.slopes") {
            (Init::Slopes(d.n_head), Dtype::F32)
        } else if name.ends_with("ln_1.weight") || name.ends_with("ln_2.weight") || name.ends_with("ln_f.weight") {
            (Init::Ones, dtype)
        } else {
            (Init::Normal, dtype)
        };
        let storage = layout.storages.len();
        layout.storages.push(StorageSpec { dtype: ty, numel: shape.iter().product() });
        layout.tensors.push(TensorEntry::contiguous(&name, ty, &shape, storage));
        inits.push(init);
    }
    layout.write_with(path, |i, out| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(i as u64);
        let spec = layout.storages[i];
        fill_random(out, spec.dtype, spec.numel, inits[i], &mut rng)
    })
}

/// Writes `numel` values of `init` as `dtype`, a chunk at a time.
fn fill_random(out: &mut dyn Write, dtype: Dtype, numel: usize, init: Init, rng: &mut ChaCha8Rng) -> io::Result<()> {
    if let Init::Slopes(n_head) = init {
        return out.write_all(&dtype.encode(&alibi_slopes(n_head)));
    }
    const CHUNK: usize = 1 << 20;
    let mut values = Vec::with_capacity(CHUNK.min(numel));
    let mut bytes = Vec::with_capacity(CHUNK.min(numel) * dtype.size());
    let mut left = numel;
    while left > 0 {
        let n = left.min(CHUNK);
        values.clear();
        match init {
            Init::Ones => values.resize(n, 1.0),
            _ => {
                // Box-Muller: two normals from two uniforms; 1 - u keeps the logarithm finite.
                while values.len() < n {
                    let u1 = 1.0 - rng.random::<f32>();
                    let u2 = rng.random::<f32>();
                    let r = 0.02 * (-2.0 * u1.ln()).sqrt();
                    let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
                    values.push(r * c);
                    if values.len() < n {
                        values.push(r * s);
                    }
                }
            }
        }
        bytes.clear();
        dtype.encode_into(&values, &mut bytes);
        out.write_all(&bytes)?;
        left -= n;
    }
    Ok(())
}

/// The pickle opcodes the writer uses.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const GLOBAL: u8 = b'c';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const TUPLE: u8 = b't';
    pub const MARK: u8 = b'(';
    pub const REDUCE: u8 = b'R';
    pub const BINUNICODE: u8 = b'X';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const BININT: u8 = b'J';
    pub const LONG1: u8 = 0x8a;
    pub const BINPERSID: u8 = b'Q';
    pub const NEWFALSE: u8 = 0x89;
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const STOP: u8 = b'.';
}

/// Appends pickle opcodes to a buffer, encoding values the way Python's protocol-2 pickler does.
#[derive(Default)]
struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn op(&mut self, code: u8) {
        self.out.push(code);
    }

    /// `GLOBAL module name`: both are newline-terminated in the stream, so a newline inside would
    /// change the meaning of everything after it.
    fn global(&mut self, module: &str, name: &str) -> io::Result<()> {
        if module.contains('\n') || name.contains('\n') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("global {module:?} {name:?}: newline")));
        }
        self.op(op::GLOBAL);
        for part in [module, name] {
            self.out.extend_from_slice(part.as_bytes());
            self.out.push(b'\n');
        }
        Ok(())
    }

    fn unicode(&mut self, s: &str) {
        self.op(op::BINUNICODE);
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    /// The smallest encoding Python picks: BININT1, BININT2, BININT (signed 32-bit), else LONG1
    /// (little-endian two's complement, with a zero byte added when the top bit is set).
    fn int(&mut self, v: u64) {
        if v <= 0xff {
            self.op(op::BININT1);
            self.out.push(v as u8);
        } else if v <= 0xffff {
            self.op(op::BININT2);
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if v <= i32::MAX as u64 {
            self.op(op::BININT);
            self.out.extend_from_slice(&(v as u32).to_le_bytes());
        } else {
            let le = v.to_le_bytes();
            let mut len = 8 - v.leading_zeros() as usize / 8;
            let mut bytes = le[..len].to_vec();
            if le[len - 1] & 0x80 != 0 {
                bytes.push(0);
                len += 1;
            }
            self.op(op::LONG1);
            self.out.push(len as u8);
            self.out.extend_from_slice(&bytes);
        }
    }

    /// A tuple of ints, with Python's short forms for up to three items.
    fn int_tuple(&mut self, vs: &[usize]) {
        match vs.len() {
            0 => self.op(op::EMPTY_TUPLE),
            n @ 1..=3 => {
                vs.iter().for_each(|&v| self.int(v as u64));
                self.op([op::TUPLE1, op::TUPLE2, op::TUPLE3][n - 1]);
            }
            _ => {
                self.op(op::MARK);
                vs.iter().for_each(|&v| self.int(v as u64));
                self.op(op::TUPLE);
            }
        }
    }

    /// `collections.OrderedDict()`: the state dict itself, and each tensor's backward hooks.
    fn ordered_dict(&mut self) -> io::Result<()> {
        self.global("collections", "OrderedDict")?;
        self.op(op::EMPTY_TUPLE);
        self.op(op::REDUCE);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int_bytes(v: u64) -> Vec<u8> {
        let mut p = Pickler::default();
        p.int(v);
        p.out
    }

    #[test]
    fn ints_take_pythons_encodings() {
        assert_eq!(int_bytes(0), [b'K', 0]);
        assert_eq!(int_bytes(255), [b'K', 255]);
        assert_eq!(int_bytes(256), [b'M', 0, 1]);
        assert_eq!(int_bytes(65535), [b'M', 255, 255]);
        assert_eq!(int_bytes(65536), [b'J', 0, 0, 1, 0]);
        assert_eq!(int_bytes(i32::MAX as u64), [b'J', 255, 255, 255, 127]);
        // 2^31 does not fit BININT (signed): LONG1 needs a fifth byte for the sign.
        assert_eq!(int_bytes(1 << 31), [0x8a, 5, 0, 0, 0, 0x80, 0]);
        assert_eq!(int_bytes(1 << 32), [0x8a, 5, 0, 0, 0, 0, 1]);
        assert_eq!(int_bytes(u64::MAX), [0x8a, 9, 255, 255, 255, 255, 255, 255, 255, 255, 0]);
    }

    #[test]
    fn tuples_use_short_forms() {
        let tuple = |vs: &[usize]| {
            let mut p = Pickler::default();
            p.int_tuple(vs);
            p.out
        };
        assert_eq!(tuple(&[]), [b')']);
        assert_eq!(tuple(&[1]), [b'K', 1, 0x85]);
        assert_eq!(tuple(&[1, 2, 3]), [b'K', 1, b'K', 2, b'K', 3, 0x87]);
        assert_eq!(tuple(&[1, 2, 3, 4]), [b'(', b'K', 1, b'K', 2, b'K', 3, b'K', 4, b't']);
    }

    #[test]
    fn contiguous_strides_are_row_major() {
        let t = |shape: &[usize]| TensorEntry::contiguous("t", Dtype::F32, shape, 0).strides();
        assert_eq!(t(&[]), Vec::<usize>::new());
        assert_eq!(t(&[5]), [1]);
        assert_eq!(t(&[2, 3, 4]), [12, 4, 1]);
    }

    #[test]
    fn newline_in_global_is_refused() {
        let layout = Layout { extra_globals: vec![("os\nx".into(), "system".into())], ..Layout::default() };
        assert_eq!(layout.pickle().unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn alibi_slopes_match_the_published_formula() {
        assert_eq!(alibi_slopes(8), [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625]);
        let s32 = alibi_slopes(32);
        assert_eq!(s32.len(), 32);
        for (i, s) in s32.iter().enumerate() {
            let want = 2f64.powf(-8.0 * (i as f64 + 1.0) / 32.0);
            assert!((*s as f64 / want - 1.0).abs() < 1e-7, "head {i}: {s} vs {want}");
        }
        // 12 heads: the 8 of n=8, then slopes 1, 3, 5, 7 (0-based 0, 2, 4, 6) of n=16.
        let s12 = alibi_slopes(12);
        assert_eq!(&s12[..8], &alibi_slopes(8)[..]);
        let s16 = alibi_slopes(16);
        assert_eq!(&s12[8..], &[s16[0], s16[2], s16[4], s16[6]]);
    }
}
