//! The converter on the checkpoint layouts users bring (on the vendored btlm-mini weights):
//! sharded safetensors with an index, f16
//! and bf16 weights, old muP key spellings, a stored tied head; and refusals that name the
//! offending key or tensor.

use half::{bf16, f16};
use pocketlm_core::convert::{convert, parse_config, Checkpoint, ConvertOptions, Preset};
use pocketlm_core::gguf::GgufFile;
use pocketlm_core::Model;
use pocketlm_tests::torch_bin;
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

/// A safetensors header whose size for one tensor disagrees with its shape: the error names the
/// file and the tensor (safetensors itself only says "invalid shape, data type, or offset").
#[test]
fn safetensors_errors_name_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bad-st");
    write_folder(&dir, &mini_config(), &mini_tensors(), Dtype::F32, 1);
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    // Same length, so every offset stays valid: only this tensor's shape changes.
    let tensor = "transformer.h.1.attn.c_proj.bias";
    let at = header.find(&format!("\"{tensor}\"")).unwrap();
    let shape_at = at + header[at..].find("\"shape\":[").unwrap() + 9;
    let mut patched = bytes.clone();
    assert!(patched[8 + shape_at].is_ascii_digit());
    patched[8 + shape_at] = if patched[8 + shape_at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&path, patched).unwrap();
    let err = convert_dir(&dir, &tmp.path().join("out.gguf")).unwrap_err().to_string();
    assert!(err.contains(tensor) && err.contains("model.safetensors"), "{err}");
    println!("{err}");
}

/// btlm-mini's tensors with the tied head, in the order a state dict lists them.
fn mini_state(dtype: torch_bin::Dtype) -> torch_bin::TorchBin {
    let list: Vec<(String, Vec<usize>, Vec<f32>)> =
        mini_tensors().into_iter().map(|(n, (shape, vals))| (n, shape, vals)).collect();
    torch_bin::state_dict(&list, dtype, &[("lm_head.weight", "transformer.wte.weight")])
}

/// An HF folder named `btlm-mini` under `parent` (GGUF `general.name` comes from the folder, so
/// equal names make equal files), with config and tokenizer files but no weights.
fn mini_folder(parent: &Path) -> PathBuf {
    let dir = parent.join("btlm-mini");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"] {
        std::fs::copy(primary().model_dir.join(f), dir.join(f)).unwrap();
    }
    dir
}

/// The vendored `pytorch_model.bin` (bf16, tied head) as Cerebras ships it, the same weights
/// sharded the way transformers 4.30 does it (wte in shard 1, lm_head in shard 2 with its own
/// copy), and f32 / bf16 `.bin` files against safetensors of the same values: every form gives
/// a byte-identical GGUF.
#[test]
fn pytorch_checkpoints_single_sharded_f32_bf16_give_identical_gguf() {
    use torch_bin::Dtype as T;
    let tmp = tempfile::tempdir().unwrap();
    let convert_to = |dir: &Path, name: &str| {
        let out = tmp.path().join(format!("{name}.gguf"));
        convert_dir(dir, &out).unwrap_or_else(|e| panic!("{name}: {e}"));
        std::fs::read(out).unwrap()
    };
    // The vendored folder itself (with tokenizer.json) and the same weights with vocab/merges only.
    let official = mini_folder(&tmp.path().join("official"));
    std::fs::copy(primary().model_dir.join("pytorch_model.bin"), official.join("pytorch_model.bin")).unwrap();
    let single = convert_to(&official, "single");
    let with_fast = mini_folder(&tmp.path().join("fast"));
    std::fs::copy(primary().model_dir.join("pytorch_model.bin"), with_fast.join("pytorch_model.bin")).unwrap();
    std::fs::copy(primary().model_dir.join("tokenizer.json"), with_fast.join("tokenizer.json")).unwrap();
    assert!(convert_to(&with_fast, "fast") == single, "tokenizer.json and vocab.json + merges.txt agree");

    let sharded = mini_folder(&tmp.path().join("sharded"));
    let state = mini_state(T::BF16);
    let names: Vec<&str> = state.tensors.iter().map(|t| t.name.as_str()).collect();
    let (first, second): (Vec<&str>, Vec<&str>) =
        names.iter().partition(|n| n.starts_with("transformer.wte") || n.contains(".h.0.") || n.contains(".h.1."));
    torch_bin::write_sharded(&sharded, &state.split(&[&first, &second]).unwrap()).unwrap();
    assert!(convert_to(&sharded, "sharded") == single, "sharded .bin gives the single file's GGUF");

    for (dtype, st_dtype) in [(T::F32, Dtype::F32), (T::BF16, Dtype::BF16), (T::F16, Dtype::F16)] {
        let bin = mini_folder(&tmp.path().join(format!("bin-{dtype:?}")));
        mini_state(dtype).write(&bin.join("pytorch_model.bin")).unwrap();
        let st = tmp.path().join(format!("st-{dtype:?}")).join("btlm-mini");
        write_folder(&st, &mini_config(), &mini_tensors(), st_dtype, 1);
        let (a, b) = (convert_to(&bin, &format!("bin-{dtype:?}")), convert_to(&st, &format!("st-{dtype:?}")));
        assert!(a == b, "{dtype:?}: .bin and safetensors give the same GGUF");
    }
}

#[test]
fn safetensors_win_over_a_bin_beside_them_and_the_report_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("both");
    write_folder(&dir, &mini_config(), &mini_tensors(), Dtype::BF16, 1);
    // A .bin that could not convert: were it read, the conversion would fail.
    std::fs::write(dir.join("pytorch_model.bin"), b"not a checkpoint").unwrap();
    let opts = ConvertOptions {
        model_dir: dir.clone(),
        out: tmp.path().join("both.gguf"),
        preset: Preset::F32,
        tokenizer: None,
        pad_inner_to: None,
    };
    let report = convert(&opts, &mut |_| {}).unwrap();
    assert_eq!(report.weights, vec![dir.join("model.safetensors")]);
    assert!(report.notes.iter().any(|n| n.contains("using the safetensors")), "{:?}", report.notes);
}

/// Hostile and broken .bin files: each refused with its own message naming the problem.
#[test]
fn broken_pytorch_checkpoints_are_refused_by_name() {
    use torch_bin::Dtype as T;
    let tmp = tempfile::tempdir().unwrap();
    let refuse = |what: &str, dir: &Path, needles: &[&str]| {
        let out = tmp.path().join("refused.gguf");
        let err = convert_dir(dir, &out).expect_err(what).to_string();
        for n in needles {
            assert!(err.contains(n), "{what}: {err:?} should mention {n:?}");
        }
        assert!(!out.exists(), "{what}: no output on failure");
        println!("{what}: {err}");
    };

    let evil = mini_folder(&tmp.path().join("evil"));
    let mut state = mini_state(T::BF16);
    state.extra_globals.push(("os".into(), "system".into()));
    state.write(&evil.join("pytorch_model.bin")).unwrap();
    refuse("unknown global", &evil, &["os.system", "pytorch_model.bin", "refused"]);

    let truncated = mini_folder(&tmp.path().join("truncated"));
    let bytes = std::fs::read(primary().model_dir.join("pytorch_model.bin")).unwrap();
    std::fs::write(truncated.join("pytorch_model.bin"), &bytes[..bytes.len() / 2]).unwrap();
    refuse("truncated zip", &truncated, &["pytorch_model.bin", "cannot read the PyTorch checkpoint"]);

    let short = mini_folder(&tmp.path().join("short"));
    let mut state = mini_state(T::BF16);
    let i = state.tensors.iter().find(|t| t.name == "transformer.h.1.mlp.c_proj.weight").unwrap().storage;
    state.storages[i].1.truncate(1000);
    // The pickle still declares the full element count; only the bytes are short.
    let mut layout = state.layout();
    layout.storages[i].numel = state.tensors.iter().find(|t| t.storage == i).unwrap().shape.iter().product();
    layout.write_with(&short.join("pytorch_model.bin"), |k, out| out.write_all(&state.storages[k].1)).unwrap();
    refuse("storage shorter than its tensor", &short, &["transformer.h.1.mlp.c_proj.weight"]);

    let nan = mini_folder(&tmp.path().join("nan"));
    let mut state = mini_state(T::BF16);
    let i = state.tensors.iter().find(|t| t.name == "transformer.h.0.attn.c_attn.weight").unwrap().storage;
    state.storages[i].1[6..8].copy_from_slice(&bf16::NAN.to_le_bytes());
    state.write(&nan.join("pytorch_model.bin")).unwrap();
    refuse("NaN in a weight", &nan, &["transformer.h.0.attn.c_attn.weight", "element 3", "NaN"]);

    let missing = mini_folder(&tmp.path().join("missing-shard"));
    let state = mini_state(T::BF16);
    let names: Vec<&str> = state.tensors.iter().map(|t| t.name.as_str()).collect();
    let (a, b): (Vec<&str>, Vec<&str>) = names.iter().partition(|n| n.contains(".h.0."));
    torch_bin::write_sharded(&missing, &state.split(&[&a, &b]).unwrap()).unwrap();
    std::fs::remove_file(missing.join("pytorch_model-00002-of-00002.bin")).unwrap();
    refuse("index naming a missing shard", &missing, &["pytorch_model-00002-of-00002.bin", "index.json"]);

    let no_tok = mini_folder(&tmp.path().join("no-tokenizer"));
    std::fs::copy(primary().model_dir.join("pytorch_model.bin"), no_tok.join("pytorch_model.bin")).unwrap();
    std::fs::remove_file(no_tok.join("merges.txt")).unwrap();
    refuse("vocab.json without merges.txt", &no_tok, &["no tokenizer", "merges.txt"]);
}

/// cerebras/btlm-3b-8k-base's config.json exactly as published (tests/fixtures): no
/// alibi_scaling, no tie_word_embeddings, mup_output_alpha with its float noise; and the first
/// revision's spellings give the same model.
#[test]
fn the_published_base_config_converts_as_is() {
    let published = std::fs::read_to_string(vendored_dir().join("btlm-3b-8k-base/config.json")).unwrap();
    let c = parse_config(&published).unwrap();
    let h = &c.hparams;
    assert_eq!((h.n_embd, h.n_layer, h.n_head, h.n_inner, h.n_vocab, h.n_ctx_train), (2560, 32, 32, 6826, 50257, 8192));
    assert_eq!(h.emb_scale, 14.6);
    let alpha: f64 = "2.2200000000000003".parse().unwrap();
    assert_eq!(h.out_scale, (alpha * 0.1) as f32);
    assert_eq!(h.qk_scale, 1.0 / 80.0, "mup_scale_qk_dot_by_d: 1/d, d = 80");
    assert_eq!(h.alibi_scaling, pocketlm_core::model::AlibiScaling::None);
    assert_eq!((c.bos_token_id, c.eos_token_id), (Some(50256), Some(50256)));
    // The first published revision's spellings (6317e26): the same model.
    let old = published
        .replace("\"mup_embeddings_scale\"", "\"embeddings_scale\"")
        .replace("\"mup_output_alpha\": 2.2200000000000003,", "\"output_logits_scale\": 0.222,")
        .replace("\"mup_scale_qk_dot_by_d\"", "\"scale_qk_dot_by_d\"")
        .replace("\"mup_width_scale\"", "\"width_scale\"");
    let o = parse_config(&old).unwrap().hparams;
    assert_eq!((o.emb_scale, o.qk_scale), (h.emb_scale, h.qk_scale));
    assert!((o.out_scale - h.out_scale).abs() < 1e-7, "{} vs {}", o.out_scale, h.out_scale);
    // The chat model writes "alibi_scaling": null explicitly.
    let chat = published.replace("\"use_cache\"", "\"alibi_scaling\": null, \"use_cache\"");
    assert_eq!(parse_config(&chat).unwrap().hparams.alibi_scaling, pocketlm_core::model::AlibiScaling::None);
}
