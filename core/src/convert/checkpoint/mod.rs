//! Model weights in the layouts users bring them: Hugging Face safetensors (one file or shards
//! with `model.safetensors.index.json`) and PyTorch pickles (`pytorch_model.bin`, or shards with
//! `pytorch_model.bin.index.json`, as Cerebras ships BTLM). Tensors are handed out one at a time
//! as f32, whatever their stored dtype (f32, f16, bf16), so conversion streams tensor by tensor
//! and its peak memory is about the largest tensor, not the checkpoint.

mod index;
mod pytorch_file;
mod safetensors_file;

use crate::error::{ConvertError, Result};
use half::{bf16, f16};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Element type of a stored tensor; the converter reads the three float types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    F32,
    F16,
    BF16,
    /// Any other type (int masks, f64...), named as its file names it.
    Other(&'static str),
}

/// One shard's tensors, behind the format that stores them.
trait Shard {
    /// Every tensor of the shard: name, dtype and shape.
    fn tensors(&self) -> Vec<(String, StoredDtype, Vec<usize>)>;
    /// The tensor's bytes, little-endian and contiguous in row-major order.
    fn read(&self, name: &str) -> Result<Cow<'_, [u8]>>;
}

/// Which of the supported layouts a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointFormat {
    Safetensors,
    Pytorch,
}

pub struct Checkpoint {
    shards: Vec<(PathBuf, Box<dyn Shard>)>,
    /// tensor name -> (shard index, dtype, shape)
    index: BTreeMap<String, (usize, StoredDtype, Vec<usize>)>,
    notes: Vec<String>,
}

impl Checkpoint {
    /// Opens the weights of a model folder. Safetensors wins when a folder has both forms (it
    /// is memory-mapped and cannot hold code); [`Checkpoint::notes`] then says so.
    pub fn open(dir: &Path) -> Result<Self> {
        let st = Layout::find(dir, "model.safetensors", "model.safetensors.index.json")?;
        let pt = Layout::find(dir, "pytorch_model.bin", "pytorch_model.bin.index.json")?;
        let mut notes = Vec::new();
        let (format, files) = match (st, pt) {
            (Some(st), Some(pt)) => {
                notes.push(format!("{} has both {} and {}: using the safetensors", dir.display(), st.name, pt.name));
                (CheckpointFormat::Safetensors, st.files)
            }
            (Some(st), None) => (CheckpointFormat::Safetensors, st.files),
            (None, Some(pt)) => (CheckpointFormat::Pytorch, pt.files),
            (None, None) => return Err(ConvertError::NoWeights(dir.to_path_buf()).into()),
        };
        let mut shards: Vec<(PathBuf, Box<dyn Shard>)> = Vec::with_capacity(files.len());
        let mut index = BTreeMap::new();
        for (si, (path, expected)) in files.into_iter().enumerate() {
            let shard: Box<dyn Shard> = match format {
                CheckpointFormat::Safetensors => Box::new(safetensors_file::SafetensorsShard::open(&path)?),
                CheckpointFormat::Pytorch => Box::new(pytorch_file::PytorchShard::open(&path)?),
            };
            let tensors = shard.tensors();
            if let Some(missing) = expected.iter().find(|n| !tensors.iter().any(|(t, _, _)| t == *n)) {
                return Err(ConvertError::Checkpoint {
                    path: path.clone(),
                    why: format!("the index says tensor {missing:?} is in this shard, but it is not"),
                }
                .into());
            }
            for (name, dtype, shape) in tensors {
                if index.insert(name.clone(), (si, dtype, shape)).is_some() {
                    return Err(ConvertError::Checkpoint {
                        path: path.clone(),
                        why: format!("tensor {name:?} appears in more than one shard"),
                    }
                    .into());
                }
            }
            shards.push((path, shard));
        }
        Ok(Checkpoint { shards, index, notes })
    }

    /// The weight files, in shard order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.shards.iter().map(|(p, _)| p.as_path())
    }

    /// What a user should know about how the folder was read (e.g. which of two forms won).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|(_, _, s)| s.as_slice())
    }

    /// Whether two tensors hold the same dtype, shape and bytes (a tied head stored twice).
    pub fn same_data(&self, a: &str, b: &str) -> Result<bool> {
        let (ea, eb) = (self.entry(a)?, self.entry(b)?);
        if (ea.1, &ea.2) != (eb.1, &eb.2) {
            return Ok(false);
        }
        Ok(self.raw(a)? == self.raw(b)?)
    }

    /// The tensor's values as f32, row-major in its stored shape.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (_, dtype, _) = self.entry(name)?;
        let bytes = self.raw(name)?;
        Ok(match dtype {
            StoredDtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            StoredDtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            StoredDtype::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            StoredDtype::Other(d) => {
                return Err(ConvertError::UnsupportedDtype { tensor: name.into(), dtype: d.to_string() }.into())
            }
        })
    }

    fn entry(&self, name: &str) -> Result<&(usize, StoredDtype, Vec<usize>)> {
        Ok(self.index.get(name).ok_or_else(|| ConvertError::MissingTensor(name.into()))?)
    }

    fn raw(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let (si, _, _) = self.entry(name)?;
        self.shards[*si].1.read(name)
    }
}

/// The files of one checkpoint form in a folder: the single file, or the shards its index
/// lists, each with the tensor names the index puts in it.
struct Layout {
    name: String,
    files: Vec<(PathBuf, Vec<String>)>,
}

impl Layout {
    fn find(dir: &Path, single: &str, index_name: &str) -> Result<Option<Layout>> {
        let single_path = dir.join(single);
        if single_path.is_file() {
            return Ok(Some(Layout { name: single.to_string(), files: vec![(single_path, Vec::new())] }));
        }
        let index_path = dir.join(index_name);
        if !index_path.is_file() {
            return Ok(None);
        }
        let files = index::read_index(&index_path)?;
        Ok(Some(Layout { name: index_name.to_string(), files }))
    }
}
