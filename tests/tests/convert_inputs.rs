//! The converter on the checkpoint layouts users bring (on the vendored btlm-mini weights):
//! sharded safetensors with an index, f16
//! and bf16 weights, old muP key spellings, a stored tied head; and refusals that name the
//! offending key or tensor.

use half::{bf16, f16};
use pocketlm_core::convert::{convert, Checkpoint, ConvertOptions, Preset};
use pocketlm_core::gguf::GgufFile;
use pocketlm_core::Model;
use pocketlm_tests::*;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The vendored btlm-mini model's tensors (bf16 in its .bin, exact in f32) as
/// (name -> (shape, f32 values)), without the stored tied head.
fn mini_tensors() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let ckpt = Checkpoint::open(&primary().model_dir).unwrap();
    let names: Vec<String> = ckpt.names().filter(|n| *n != "lm_head.weight").map(str::to_string).collect();
    names.into_iter().map(|n| (n.clone(), (ckpt.shape(&n).unwrap().to_vec(), ckpt.read_f32(&n).unwrap()))).collect()
}

/// Encodes values in `dtype` and returns the raw bytes plus the values as that dtype rounds them.
fn encode(vals: &[f32], dtype: Dtype) -> (Vec<u8>, Vec<f32>) {
    match dtype {
        Dtype::F32 => (vals.iter().flat_map(|v| v.to_le_bytes()).collect(), vals.to_vec()),
        Dtype::F16 => (
            vals.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            vals.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
        ),
        Dtype::BF16 => (
            vals.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
            vals.iter().map(|&v| bf16::from_f32(v).to_f32()).collect(),
        ),
        _ => unreachable!(),
    }
}

/// Writes an HF folder with the given tensors in `shards` files of `dtype`; returns the values
/// as stored (after rounding to dtype).
fn write_folder(
    dir: &Path,
    config: &str,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    dtype: Dtype,
    shards: usize,
) -> BTreeMap<String, Vec<f32>> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::copy(primary().model_dir.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let names: Vec<&String> = tensors.keys().collect();
    let mut stored = BTreeMap::new();
    let mut weight_map = serde_json::Map::new();
    for s in 0..shards {
        let file = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", s + 1, shards)
        };
        let mut encoded = Vec::new();
        for name in names.iter().skip(s).step_by(shards) {
            let (shape, vals) = &tensors[*name];
            let (bytes, rounded) = encode(vals, dtype);
            stored.insert((*name).clone(), rounded);
            encoded.push(((*name).clone(), shape.clone(), bytes));
            weight_map.insert((*name).clone(), serde_json::Value::String(file.clone()));
        }
        let views: Vec<(String, TensorView)> = encoded
            .iter()
            .map(|(n, shape, bytes)| (n.clone(), TensorView::new(dtype, shape.clone(), bytes).unwrap()))
            .collect();
        std::fs::write(dir.join(&file), safetensors::serialize(views, None).unwrap()).unwrap();
    }
    if shards > 1 {
        let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
    stored
}

fn convert_dir(dir: &Path, out: &Path) -> pocketlm_core::Result<PathBuf> {
    let opts = ConvertOptions {
        model_dir: dir.into(),
        out: out.into(),
        preset: Preset::F32,
        tokenizer: None,
        pad_inner_to: None,
    };
    convert(&opts, &mut |_| {}).map(|_| out.to_path_buf())
}

fn mini_config() -> String {
    std::fs::read_to_string(primary().model_dir.join("config.json")).unwrap()
}

/// Checks that every GGUF tensor holds the (transposed where Conv1D) stored values exactly.
fn assert_weights_equal(gguf: &Path, reference: &Path) {
    let (a, b) = (GgufFile::open(gguf).unwrap(), GgufFile::open(reference).unwrap());
    assert_eq!(a.header.tensors.len(), b.header.tensors.len());
    for t in &a.header.tensors {
        let u = b.header.tensor(&t.name).unwrap();
        assert_eq!(t.dims, u.dims, "{}", t.name);
        assert!(a.tensor_bytes(t) == b.tensor_bytes(u), "{} differs", t.name);
    }
}

#[test]
fn sharded_f16_and_bf16_checkpoints_convert_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let tensors = mini_tensors();
    for (dtype, shards) in [(Dtype::F32, 3), (Dtype::F16, 2), (Dtype::BF16, 1)] {
        let dir = tmp.path().join(format!("{dtype:?}-{shards}"));
        let stored = write_folder(&dir, &mini_config(), &tensors, dtype, shards);
        let got = convert_dir(&dir, &tmp.path().join(format!("{dtype:?}.gguf"))).unwrap();
        // Reference: the same rounded values written as one f32 file.
        let rounded: BTreeMap<String, (Vec<usize>, Vec<f32>)> =
            tensors.iter().map(|(n, (s, _))| (n.clone(), (s.clone(), stored[n].clone()))).collect();
        let ref_dir = tmp.path().join(format!("{dtype:?}-ref"));
        write_folder(&ref_dir, &mini_config(), &rounded, Dtype::F32, 1);
        let want = convert_dir(&ref_dir, &tmp.path().join(format!("{dtype:?}-ref.gguf"))).unwrap();
        assert_weights_equal(&got, &want);
        Model::load(&got).unwrap();
    }
}

#[test]
fn old_mup_key_names_give_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let tensors = mini_tensors();
    let new = mini_config();
    let old = new
        .replace("\"mup_embeddings_scale\"", "\"embeddings_scale\"")
        .replace("\"mup_scale_qk_dot_by_d\"", "\"scale_qk_dot_by_d\"")
        .replace("\"mup_width_scale\": 1.0", "\"width_scale\": 1.0, \"output_logits_scale\": 2.22")
        .replace("\"mup_output_alpha\": 2.22,", "");
    assert!(old.contains("output_logits_scale") && !old.contains("mup_"), "{old}");
    write_folder(&tmp.path().join("new"), &new, &tensors, Dtype::F32, 1);
    write_folder(&tmp.path().join("old"), &old, &tensors, Dtype::F32, 1);
    let a = Model::load(convert_dir(&tmp.path().join("new"), &tmp.path().join("new.gguf")).unwrap()).unwrap();
    let b = Model::load(convert_dir(&tmp.path().join("old"), &tmp.path().join("old.gguf")).unwrap()).unwrap();
    assert_eq!((a.hparams.name.as_str(), b.hparams.name.as_str()), ("new", "old"), "named after the folder");
    let renamed = pocketlm_core::model::HParams { name: "new".into(), ..b.hparams.clone() };
    assert_eq!(a.hparams, renamed);
    assert_eq!(a.hparams.out_scale, 2.22);
    assert_eq!(a.hparams.emb_scale, 14.6);
}

#[test]
fn tied_head_is_accepted_and_refusals_name_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let base = mini_tensors();

    let mut with_head = base.clone();
    with_head.insert("lm_head.weight".into(), base["transformer.wte.weight"].clone());
    write_folder(&tmp.path().join("tied"), &mini_config(), &with_head, Dtype::F32, 1);
    convert_dir(&tmp.path().join("tied"), &tmp.path().join("tied.gguf")).expect("a stored tied head is fine");

    let mut untied = with_head.clone();
    untied.get_mut("lm_head.weight").unwrap().1[0] += 1.0;
    let mut extra = base.clone();
    extra.insert("transformer.h.0.attn.rotary.weight".into(), (vec![4], vec![0.0; 4]));
    let mut missing = base.clone();
    missing.remove("transformer.h.1.mlp.c_fc2.bias");
    let mut misshapen = base.clone();
    misshapen.insert("transformer.h.0.attn.c_proj.bias".into(), (vec![255], vec![0.0; 255]));
    for (what, tensors, needle) in [
        ("untied head", untied, "lm_head.weight"),
        ("unknown tensor", extra, "transformer.h.0.attn.rotary.weight"),
        ("missing tensor", missing, "transformer.h.1.mlp.c_fc2.bias"),
        ("wrong shape", misshapen, "transformer.h.0.attn.c_proj.bias"),
    ] {
        let dir = tmp.path().join(what.replace(' ', "-"));
        write_folder(&dir, &mini_config(), &tensors, Dtype::F32, 1);
        let out = tmp.path().join("refused.gguf");
        let err = convert_dir(&dir, &out).expect_err(what).to_string();
        assert!(err.contains(needle), "{what}: {err}");
        assert!(!out.exists(), "{what}: no output file on failure");
    }

    // A config key we cannot honour is named too.
    let dir = tmp.path().join("gelu");
    write_folder(&dir, &mini_config().replace("\"swiglu\"", "\"gelu_new\""), &base, Dtype::F32, 1);
    let err = convert_dir(&dir, &tmp.path().join("gelu.gguf")).unwrap_err().to_string();
    assert!(err.contains("activation_function") && err.contains("config.json"), "{err}");
}
