//! NaN and infinity (issue 12, item 14). They are refused where they can be seen cheaply: at
//! load for the small F32 vectors, at conversion and quantization for every tensor, at session
//! restore for token ids, logits and KV values. A NaN inside a big weight matrix is only seen
//! when it reaches the logits: generation and perplexity then stop with an error instead of
//! sampling token 0 ("!!!!") or reporting NaN.

use pocketlm_core::convert::{requantize, Preset};
use pocketlm_core::error::{Error, GgufError};
use pocketlm_core::gguf::GgufHeader;
use pocketlm_core::perplexity::{perplexity, PerplexityOptions};
use pocketlm_core::sampling::SamplingParams;
use pocketlm_core::session::{GenerateOptions, Session, SessionOptions};
use pocketlm_core::{KvType, Model};
use pocketlm_tests::{convert_fixture, golden, primary};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The vendored model as F32 GGUF, and its bytes.
fn f32_model(tmp: &Path) -> (PathBuf, Vec<u8>) {
    let path = convert_fixture(&primary(), Preset::F32, None, tmp);
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// Sets element `index` of the F32 tensor `tensor` to `value` and writes the result to `out`.
fn poke(bytes: &[u8], tensor: &str, index: usize, value: f32, out: &Path) -> PathBuf {
    let header = GgufHeader::parse(bytes).unwrap();
    let t = header.tensor(tensor).unwrap_or_else(|| panic!("no tensor {tensor}"));
    let at = (header.data_offset + t.offset) as usize + 4 * index;
    let mut b = bytes.to_vec();
    b[at..at + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(out, &b).unwrap();
    out.to_path_buf()
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions { max_tokens, sampling: SamplingParams::greedy(), stop_at_eos: false, ..Default::default() }
}

#[test]
fn nan_or_inf_in_a_norm_or_bias_is_refused_at_load_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, bytes) = f32_model(tmp.path());
    for (tensor, index, value) in [
        ("blk.1.ffn_norm.weight", 5, f32::NAN),
        ("output_norm.bias", 0, f32::INFINITY),
        ("blk.0.ffn_up.bias", 7, -f32::INFINITY),
    ] {
        let path = poke(&bytes, tensor, index, value, &tmp.path().join("bad.gguf"));
        match Model::load(&path) {
            Err(e @ Error::Gguf { source: GgufError::NonFiniteTensor { .. }, .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(tensor) && msg.contains(&format!("element {index}")), "{msg}");
                assert!(msg.contains("bad.gguf"), "names the file: {msg}");
                println!("{msg}");
            }
            Err(e) => panic!("{tensor}: expected NonFiniteTensor, got {e}"),
            Ok(_) => panic!("{tensor}: a model with {value} in it loaded"),
        }
    }
}

#[test]
fn nan_in_a_weight_matrix_stops_generation_and_perplexity_with_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, bytes) = f32_model(tmp.path());
    // Row 0 of the first QKV projection: query 0 of every token becomes NaN, so head 0's
    // attention, then the whole residual stream, then every logit.
    let bad = poke(&bytes, "blk.0.attn_qkv.weight", 0, f32::NAN, &tmp.path().join("nan-weight.gguf"));
    let model = Arc::new(Model::load(&bad).expect("a NaN inside a matrix is not looked for at load"));
    let g = golden(&primary());

    let mut s = Session::new(model.clone(), &SessionOptions::default()).unwrap();
    let mut emitted = Vec::new();
    let err = s
        .generate_ids(&g.input_ids, &greedy(8), &mut |id| {
            emitted.push(id);
            true
        })
        .expect_err("generation on NaN logits must fail");
    assert!(matches!(err, Error::NonFinite { .. }), "{err}");
    assert!(err.to_string().contains("logit"), "{err}");
    assert!(emitted.is_empty(), "no token was emitted from NaN logits: {emitted:?}");

    let opts = PerplexityOptions {
        n_ctx: 32,
        stride: 16,
        kv_type: KvType::F16,
        max_windows: 1,
        alibi_scaling: pocketlm_core::model::AlibiScaling::None,
    };
    let tokens: Vec<u32> = (0..64).map(|i| 100 + i).collect();
    let err = perplexity(&model, &tokens, &opts, &mut |_| Ok(()), &mut |_| {}).expect_err("perplexity of NaN");
    assert!(matches!(err, Error::NonFinite { .. }), "{err}");

    // Quantizing it names the tensor; the unmodified model quantizes.
    let out = tmp.path().join("q8.gguf");
    let err = requantize(&bad, &out, Preset::Q8_0, &mut |_| {}).expect_err("quantizing a NaN");
    assert!(err.to_string().contains("blk.0.attn_qkv.weight"), "{err}");
    assert!(!out.exists(), "no output on failure");
    requantize(&good, &out, Preset::Q8_0, &mut |_| {}).unwrap();
}

/// FNV-1a 64, as session files are checksummed (so a test can forge a consistent file).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3))
}

/// A session file with its body changed by `edit` and its checksum recomputed.
fn forge(saved: &[u8], out: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut body = saved[..saved.len() - 8].to_vec();
    edit(&mut body);
    let sum = fnv(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    std::fs::write(out, &body).unwrap();
    out.to_path_buf()
}

#[test]
fn session_files_with_bad_tokens_or_non_finite_values_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = f32_model(tmp.path());
    let model = Arc::new(Model::load(&path).unwrap());
    let g = golden(&primary());
    let n_vocab = model.hparams.n_vocab as u32;
    let mut a = Session::new(model.clone(), &SessionOptions::default()).unwrap();
    a.prefill(&g.input_ids).unwrap();
    let file = tmp.path().join("chat.session");
    a.save(&file).unwrap();
    let saved = std::fs::read(&file).unwrap();

    // Layout: magic 8, version 4, fingerprint 8, KV type 4, token count 8, tokens, logit count
    // 8, logits, KV byte count 8, KV bytes.
    let n = g.input_ids.len();
    let tokens_at = 32;
    let logits_at = tokens_at + 4 * n + 8;
    let kv_at = logits_at + 4 * model.hparams.n_vocab + 8;
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "token id past the vocabulary",
            forge(&saved, &tmp.path().join("token.session"), |b| {
                b[tokens_at + 4..tokens_at + 8].copy_from_slice(&n_vocab.to_le_bytes())
            }),
            "outside the vocabulary",
        ),
        (
            "NaN logit",
            forge(&saved, &tmp.path().join("logit.session"), |b| {
                b[logits_at + 40..logits_at + 44].copy_from_slice(&f32::NAN.to_le_bytes())
            }),
            "logit of token 10",
        ),
        (
            "infinite KV value",
            forge(&saved, &tmp.path().join("kv.session"), |b| {
                b[kv_at + 2..kv_at + 4].copy_from_slice(&half::f16::INFINITY.to_le_bytes())
            }),
            "KV cache (layer 0, head 0)",
        ),
    ];
    let mut b = Session::new(model.clone(), &SessionOptions::default()).unwrap();
    b.prefill(&g.input_ids[..3]).unwrap();
    let before = (b.tokens().to_vec(), b.last_logits().unwrap().to_vec());
    for (what, file, needle) in cases {
        let err = b.restore(&file).expect_err(what).to_string();
        assert!(err.contains(needle) && err.contains(file.to_str().unwrap()), "{what}: {err}");
        println!("{what}: {err}");
        assert_eq!((b.tokens().to_vec(), b.last_logits().unwrap().to_vec()), before, "{what}: session changed");
    }
    // The session still works, and the genuine file restores.
    b.restore(&tmp.path().join("chat.session")).unwrap();
    assert_eq!(b.tokens(), a.tokens());
}
