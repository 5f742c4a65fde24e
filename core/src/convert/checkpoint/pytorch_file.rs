//! One PyTorch checkpoint file (`torch.save` of a state dict: the zip archive of PyTorch 1.6+,
//! or the legacy pickle stream before it), read with `pytorch-reader`.
//!
//! Nothing in the pickle is executed: the reader interprets only the calls PyTorch uses to
//! rebuild tensors (`torch._utils._rebuild_tensor_v2` and kin, `collections.OrderedDict`) and
//! keeps any other call as an opaque value. A state dict of weights has no use for other Python
//! globals, so one that reaches the loaded object is refused here by name rather than ignored:
//! such a file was not written by `torch.save(model.state_dict())`. Offsets and strides of
//! views are gathered by the reader; a tensor sharing another's storage (a tied head) reads the
//! same bytes and is compared with its twin by the converter.

use super::{Shard, StoredDtype};
use crate::error::{ConvertError, Error, Result};
use pytorch_reader::{DType, PickleValue, PytorchReader, Tensor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub(super) struct PytorchShard {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

fn pt_err(path: &Path, why: impl Into<String>) -> Error {
    ConvertError::Checkpoint { path: path.to_path_buf(), why: why.into() }.into()
}

impl PytorchShard {
    pub(super) fn open(path: &Path) -> Result<Self> {
        std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let reader =
            PytorchReader::new(path).map_err(|e| pt_err(path, format!("cannot read the PyTorch checkpoint: {e}")))?;
        let root = PytorchReader::read_pickle_data(path, None)
            .map_err(|e| pt_err(path, format!("cannot read the PyTorch checkpoint: {e}")))?;
        if let Some((key, global)) = foreign_global(&root, "") {
            return Err(pt_err(
                path,
                format!(
                    "the pickle calls the Python global `{global}` (at {key:?}); a state dict of weights \
                     only uses PyTorch's tensor rebuild functions, so the file is refused (nothing in it was run)"
                ),
            ));
        }
        Ok(PytorchShard { path: path.to_path_buf(), tensors: reader.into_tensors() })
    }
}

impl Shard for PytorchShard {
    fn tensors(&self) -> Vec<(String, StoredDtype, Vec<usize>)> {
        self.tensors.iter().map(|(name, t)| (name.clone(), dtype(t.dtype()), t.shape().to_vec())).collect()
    }

    fn read(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let t = self.tensors.get(name).ok_or_else(|| ConvertError::MissingTensor(name.into()))?;
        // The reader names the tensor and its storage in its errors (e.g. a storage shorter
        // than the tensor it backs).
        let bytes = t.read().map_err(|e| pt_err(&self.path, e.to_string()))?;
        if bytes.len() != t.byte_len() {
            return Err(pt_err(
                &self.path,
                format!("tensor {name:?}: read {} bytes, its shape needs {}", bytes.len(), t.byte_len()),
            ));
        }
        Ok(Cow::Owned(bytes))
    }
}

/// The first value in the pickle that is neither data nor a tensor: (dotted key, global name).
fn foreign_global(v: &PickleValue, key: &str) -> Option<(String, String)> {
    match v {
        PickleValue::Unsupported(name) if name != "torch.Tensor" => Some((key.to_string(), name.clone())),
        PickleValue::Dict(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            keys.into_iter().find_map(|k| {
                let sub = if key.is_empty() { k.clone() } else { format!("{key}.{k}") };
                foreign_global(&map[k], &sub)
            })
        }
        PickleValue::List(items) => {
            items.iter().enumerate().find_map(|(i, x)| foreign_global(x, &format!("{key}[{i}]")))
        }
        _ => None,
    }
}

fn dtype(d: DType) -> StoredDtype {
    match d {
        DType::F32 => StoredDtype::F32,
        DType::F16 => StoredDtype::F16,
        DType::BF16 => StoredDtype::BF16,
        DType::F64 => StoredDtype::Other("float64"),
        DType::I64 => StoredDtype::Other("int64"),
        DType::I32 => StoredDtype::Other("int32"),
        DType::I16 => StoredDtype::Other("int16"),
        DType::I8 => StoredDtype::Other("int8"),
        DType::U64 => StoredDtype::Other("uint64"),
        DType::U32 => StoredDtype::Other("uint32"),
        DType::U16 => StoredDtype::Other("uint16"),
        DType::U8 => StoredDtype::Other("uint8"),
        DType::Bool => StoredDtype::Other("bool"),
    }
}
