//! Corrupted and wrong files must fail at load with their own typed error, never a panic or an
//! out-of-bounds read.

use pocketlm_core::convert::Preset;
use pocketlm_core::error::{Error, GgufError};
use pocketlm_core::gguf::GgufHeader;
use pocketlm_core::Model;
use pocketlm_tests::{convert_fixture, primary};
use std::path::Path;

fn base_file(tmp: &Path) -> Vec<u8> {
    std::fs::read(convert_fixture(&primary(), Preset::F32, None, tmp)).unwrap()
}

/// Byte position of the tensor entry for `name` (just after its name).
fn tensor_entry(bytes: &[u8], name: &str) -> usize {
    let mut pat = (name.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(name.as_bytes());
    let at = bytes.windows(pat.len()).position(|w| w == pat.as_slice()).expect("tensor entry");
    at + pat.len()
}

/// (n_dims position, type position, offset position) inside a tensor entry.
fn entry_fields(bytes: &[u8], name: &str) -> (usize, usize, usize) {
    let p = tensor_entry(bytes, name);
    let n_dims = u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap()) as usize;
    let ty = p + 4 + 8 * n_dims;
    (p, ty, ty + 4)
}

fn load_err(tmp: &Path, bytes: &[u8]) -> GgufError {
    let path = tmp.join("corrupt.gguf");
    std::fs::write(&path, bytes).unwrap();
    match Model::load(&path) {
        Err(Error::Gguf { source, path: p }) => {
            assert_eq!(p, path, "the error names the file");
            source
        }
        Err(other) => panic!("expected a GGUF error, got {other}"),
        Ok(_) => panic!("corrupted file loaded"),
    }
}

#[test]
fn each_corruption_has_its_own_error() {
    let tmp = tempfile::tempdir().unwrap();
    let good = base_file(tmp.path());
    let header = GgufHeader::parse(&good).unwrap();
    let data_offset = header.data_offset as usize;
    Model::load(tmp.path().join("btlm-mini-F32-None.gguf")).expect("the unmodified file loads");

    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    type Check = fn(&GgufError) -> bool;
    let cases: Vec<(&str, Mutation, Check)> = vec![
        ("truncated header", Box::new(|b| b.truncate(40)), |e| matches!(e, GgufError::TruncatedHeader { .. })),
        ("truncated tensor data", Box::new(move |b| b.truncate(data_offset + (b.len() - data_offset) / 2)), |e| {
            matches!(e, GgufError::TruncatedTensorData { .. })
        }),
        (
            "tensor offset past the end",
            Box::new(|b| {
                let (_, _, off) = entry_fields(b, "blk.0.attn_norm.weight");
                b[off..off + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            }),
            |e| matches!(e, GgufError::TensorOffsetOutOfBounds { tensor, .. } if tensor == "blk.0.attn_norm.weight"),
        ),
        ("wrong magic", Box::new(|b| b[..4].copy_from_slice(b"GGML")), |e| matches!(e, GgufError::BadMagic { .. })),
        ("wrong version", Box::new(|b| b[4..8].copy_from_slice(&7u32.to_le_bytes())), |e| {
            matches!(e, GgufError::UnsupportedVersion(7))
        }),
        (
            "unknown tensor type",
            Box::new(|b| {
                let (_, ty, _) = entry_fields(b, "blk.1.ffn_up.weight");
                b[ty..ty + 4].copy_from_slice(&99u32.to_le_bytes());
            }),
            |e| matches!(e, GgufError::UnknownTensorType { tensor, ty: 99 } if tensor == "blk.1.ffn_up.weight"),
        ),
        (
            "shape disagrees with hyperparameters",
            Box::new(|b| {
                let (dims, _, _) = entry_fields(b, "blk.0.attn_qkv.bias");
                b[dims + 4..dims + 12].copy_from_slice(&191u64.to_le_bytes());
            }),
            |e| matches!(e, GgufError::ShapeMismatch { tensor, .. } if tensor == "blk.0.attn_qkv.bias"),
        ),
        (
            "missing tensor",
            Box::new(|b| {
                let p = tensor_entry(b, "output_norm.bias");
                b[p - 4..p].copy_from_slice(b"bixs");
            }),
            |e| matches!(e, GgufError::MissingTensor(t) if t == "output_norm.bias"),
        ),
        (
            "wrong architecture",
            Box::new(|b| {
                let key = b"general.architecture";
                let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 8;
                b[at..at + 4].copy_from_slice(b"gpt2");
            }),
            |e| matches!(e, GgufError::WrongArchitecture { found } if found == "gpt2"),
        ),
    ];
    let mut seen = Vec::new();
    for (what, mutate, check) in cases {
        let mut bytes = good.clone();
        mutate(&mut bytes);
        let err = load_err(tmp.path(), &bytes);
        println!("{what:<38} -> {err}");
        assert!(check(&err), "{what}: wrong error {err:?}");
        let variant = format!("{err:?}").split([' ', '(', '{']).next().unwrap().to_string();
        assert!(!seen.contains(&variant), "{what}: variant {variant} reused");
        seen.push(variant);
    }
}

/// Messages that say what is actually wrong (issue 12, item 13).
#[test]
fn messages_name_the_real_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let good = base_file(tmp.path());
    let msg = |mutate: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        mutate(&mut b);
        load_err(tmp.path(), &b).to_string()
    };
    // A negative token type: the entry and its value, not "expected array of i32".
    let m = msg(&|b| {
        let key = b"tokenizer.ggml.token_type";
        let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 4 + 8;
        b[at + 8..at + 12].copy_from_slice(&(-7i32).to_le_bytes());
    });
    assert!(m.contains("entry 2 is -7") && m.contains("token_type"), "{m}");
    println!("{m}");
    // A 2^63 dimension: an overflow, not "not a multiple of the block size 1".
    for i in [0, 1] {
        let m = msg(&|b| {
            let (dims, _, _) = entry_fields(b, "blk.0.attn_qkv.weight");
            b[dims + 4 + 8 * i..dims + 12 + 8 * i].copy_from_slice(&(1u64 << 63).to_le_bytes());
        });
        assert!(m.contains("size overflows") && m.contains("blk.0.attn_qkv.weight"), "dim {i}: {m}");
        println!("{m}");
    }
    // A directory: said so, not "No such device".
    match Model::load(tmp.path()) {
        Err(e @ Error::Io { .. }) => {
            let m = e.to_string();
            assert!(m.contains("is a directory") && m.contains("convert"), "{m}");
            println!("{m}");
        }
        Err(e) => panic!("directory: wrong error {e}"),
        Ok(_) => panic!("loaded a directory"),
    }
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    match Model::load("/nonexistent/model.gguf") {
        Err(Error::Io { path, .. }) => assert_eq!(path, Path::new("/nonexistent/model.gguf")),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("loaded a missing file"),
    }
}

/// Every truncation of the header and thousands of random byte changes must give an error or a
/// valid parse, never a panic (a cheap, deterministic stand-in for the fuzzer in CI).
#[test]
fn header_parser_survives_truncation_and_random_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let good = base_file(tmp.path());
    let header_len = GgufHeader::parse(&good).unwrap().data_offset as usize;
    for cut in 0..header_len.min(4096) {
        assert!(GgufHeader::parse(&good[..cut]).is_err(), "truncated at {cut} parsed");
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Corrupt only the first 64 KiB: the key/type/count fields live there (the token list
    // follows), and each parse of the full header costs milliseconds.
    let region = header_len.min(1 << 16);
    let mut errors = 0;
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % region;
            b[i] = next() as u8;
        }
        errors += GgufHeader::parse(&b).is_err() as usize;
    }
    println!("{errors} of 3000 corrupted headers rejected, the rest parsed without panicking");
    assert!(errors > 0);
}

/// Regressions from fuzzing: counts in a file must never be trusted for allocation. These
/// files claim millions of metadata entries or array elements; parsing must fail cleanly (an
/// abort on allocation failure would kill the app).
#[test]
fn hostile_counts_are_errors_not_allocations() {
    let mut arr = b"GGUF".to_vec();
    arr.extend_from_slice(&3u32.to_le_bytes());
    arr.extend_from_slice(&0u64.to_le_bytes()); // tensors
    arr.extend_from_slice(&1u64.to_le_bytes()); // one key
    arr.extend_from_slice(&1u64.to_le_bytes());
    arr.push(b'a');
    arr.extend_from_slice(&9u32.to_le_bytes()); // array
    arr.extend_from_slice(&10u32.to_le_bytes()); // of u64
    arr.extend_from_slice(&5_000_000u64.to_le_bytes());
    arr.resize(arr.len() + 5_000_000 * 8, 0);
    let err = GgufHeader::parse(&arr).unwrap_err();
    assert!(matches!(&err, GgufError::InvalidValue { key, .. } if key == "a"), "{err:?}");

    let mut kvs = b"GGUF".to_vec();
    kvs.extend_from_slice(&3u32.to_le_bytes());
    kvs.extend_from_slice(&0u64.to_le_bytes());
    kvs.extend_from_slice(&1_000_000u64.to_le_bytes());
    kvs.resize(kvs.len() + 12_000_000, 0);
    assert!(GgufHeader::parse(&kvs).is_err());
}

#[test]
fn absurd_shapes_in_config_are_refused() {
    let cfg =
        r#"{"model_type":"btlm","n_embd":2147483647,"n_head":2147483647,"n_layer":1,"n_positions":1,"vocab_size":1}"#;
    let err = pocketlm_core::convert::parse_config(cfg).unwrap_err().to_string();
    assert!(err.contains("n_head"), "{err}");
}

/// A Q4_0_R16 tensor (16 rows interleaved) that is the token embedding (read one row at a
/// time, so never interleaved) is refused at load, by name.
#[test]
fn interleaved_q4_0_embedding_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = convert_fixture(&primary(), Preset::Q4_0, None, tmp.path());
    let mut bytes = std::fs::read(&plain).unwrap();
    let (_, ty, _) = entry_fields(&bytes, "token_embd.weight");
    assert_eq!(u32::from_le_bytes(bytes[ty..ty + 4].try_into().unwrap()), 2, "plain Q4_0 embedding");
    bytes[ty..ty + 4].copy_from_slice(&pocketlm_core::gguf::Q4_0_R16_ID.to_le_bytes());
    let err = load_err(tmp.path(), &bytes);
    println!("{err}");
    assert!(
        matches!(&err, GgufError::UnsupportedTensorType { tensor, ty } if tensor == "token_embd.weight" && ty.contains("Q4_0_R16 with 8192 rows") && ty.contains("embedding")),
        "{err:?}"
    );
}
