//! The shard index Hugging Face writes beside sharded weights (`model.safetensors.index.json`,
//! `pytorch_model.bin.index.json`): `{"metadata": {...}, "weight_map": {tensor: file}}`.

use crate::error::{ConvertError, Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn index_err(path: &Path, why: impl Into<String>) -> Error {
    ConvertError::Checkpoint { path: path.to_path_buf(), why: why.into() }.into()
}

/// The shard files the index names, sorted, each with the tensors the index places in it.
/// Every shard must exist beside the index; shard names are plain file names (no paths), so an
/// index cannot make the converter read outside the model folder.
pub(super) fn read_index(path: &Path) -> Result<Vec<(PathBuf, Vec<String>)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| index_err(path, format!("not valid JSON: {e}")))?;
    let map =
        v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| index_err(path, "no \"weight_map\" object"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, f) in map {
        let f = f.as_str().ok_or_else(|| index_err(path, format!("weight_map[{name:?}] is not a file name")))?;
        if f.is_empty() || f.contains('/') || f.contains('\\') || f.starts_with('.') {
            return Err(index_err(path, format!("shard name {f:?} must be a plain file name")));
        }
        files.entry(f.to_string()).or_default().push(name.clone());
    }
    if files.is_empty() {
        return Err(index_err(path, "\"weight_map\" is empty"));
    }
    files
        .into_iter()
        .map(|(f, names)| {
            let p = dir.join(&f);
            if !p.is_file() {
                return Err(index_err(
                    path,
                    format!("names shard {f:?} (for tensor {:?}), which is not in {}", names[0], dir.display()),
                ));
            }
            Ok((p, names))
        })
        .collect()
}
