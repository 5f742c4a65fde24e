//! Hugging Face safetensors checkpoints, single-file or sharded with an index, memory-mapped.
//! Tensors are handed out as f32 whatever their stored dtype (f32, f16, bf16).

use crate::error::{ConvertError, Error, Result};
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

pub struct Checkpoint {
    shards: Vec<(PathBuf, Mmap)>,
    /// tensor name -> (shard index, dtype, shape)
    index: BTreeMap<String, (usize, Dtype, Vec<usize>)>,
}

fn st_err(path: &Path, why: impl ToString) -> Error {
    ConvertError::Safetensors { path: path.to_path_buf(), why: why.to_string() }.into()
}

impl Checkpoint {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| st_err(&index_path, e))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| st_err(&index_path, "no \"weight_map\" object"))?;
            let mut files: Vec<PathBuf> = Vec::new();
            for (name, f) in map {
                let f = f
                    .as_str()
                    .ok_or_else(|| st_err(&index_path, format!("weight_map[{name:?}] is not a file name")))?;
                if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                    return Err(st_err(&index_path, format!("shard name {f:?} must be a plain file name")));
                }
                let p = dir.join(f);
                if !files.contains(&p) {
                    files.push(p);
                }
            }
            files.sort();
            files
        } else {
            return Err(ConvertError::NoWeights(dir.to_path_buf()).into());
        };

        let mut shards = Vec::with_capacity(files.len());
        let mut index = BTreeMap::new();
        for (si, path) in files.into_iter().enumerate() {
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: read-only map of a checkpoint we only read during conversion.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            let st = SafeTensors::deserialize(&map).map_err(|e| st_err(&path, e))?;
            for (name, view) in st.tensors() {
                if index.insert(name.clone(), (si, view.dtype(), view.shape().to_vec())).is_some() {
                    return Err(st_err(&path, format!("tensor {name:?} appears in more than one shard")));
                }
            }
            shards.push((path, map));
        }
        Ok(Checkpoint { shards, index })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|(_, _, s)| s.as_slice())
    }

    /// The tensor's values as f32, row-major in its stored shape.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (si, _, _) = self.index.get(name).ok_or_else(|| ConvertError::MissingTensor(name.into()))?;
        let (path, map) = &self.shards[*si];
        let st = SafeTensors::deserialize(map).map_err(|e| st_err(path, e))?;
        let view = st.tensor(name).map_err(|e| st_err(path, e))?;
        let bytes = view.data();
        let out = match view.dtype() {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => {
                return Err(ConvertError::UnsupportedDtype { tensor: name.into(), dtype: format!("{other:?}") }.into())
            }
        };
        Ok(out)
    }
}
