//! Shared helpers for the cross-crate tests: fixture locations, a minimal `.npy` reader,
//! conversion of a fixture folder to GGUF, and a writer of PyTorch checkpoints ([`torch_bin`]).

use pocketlm_core::convert::{convert, ConvertOptions, Preset};
use std::path::{Path, PathBuf};

pub mod torch_bin;

/// The workplace's shared folder (fixtures, tokenizer, text): `POCKETLM_SHARED` if set, else
/// the first `shared/` beside an ancestor of this crate (../shared from the repository root).
pub fn shared_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("POCKETLM_SHARED") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared"))
        .find(|s| s.join("fixtures").is_dir())
        .unwrap_or_else(|| {
            panic!("no shared/fixtures beside any parent of {}; set POCKETLM_SHARED", env!("CARGO_MANIFEST_DIR"))
        })
}

/// The golden fixture set: `POCKETLM_FIXTURES` if set, else shared/fixtures/btlm.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("POCKETLM_FIXTURES").map(PathBuf::from).unwrap_or_else(|| shared_dir().join("fixtures/btlm"))
}

/// Every fixture folder (one with a config.json), sorted by name.
pub fn fixture_names() -> Vec<String> {
    let dir = fixtures_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures at {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures in {}", dir.display());
    names
}

/// GPT-2 tokenizer folder: `POCKETLM_TOKENIZER_DIR` if set, else shared/tokenizer/gpt2.
pub fn tokenizer_dir() -> PathBuf {
    std::env::var_os("POCKETLM_TOKENIZER_DIR").map(PathBuf::from).unwrap_or_else(|| shared_dir().join("tokenizer/gpt2"))
}

pub fn tokenizer_json() -> PathBuf {
    tokenizer_dir().join("tokenizer.json")
}

/// Converts fixture `name` to a GGUF of the given type inside `tmp`.
pub fn convert_fixture(name: &str, ty: Preset, pad_inner_to: Option<usize>, tmp: &Path) -> PathBuf {
    let out = tmp.join(format!("{name}-{ty:?}-{pad_inner_to:?}.gguf"));
    let opts = ConvertOptions {
        model_dir: fixtures_dir().join(name),
        out: out.clone(),
        preset: ty,
        tokenizer: Some(tokenizer_json()),
        pad_inner_to,
    };
    convert(&opts, &mut |_| {}).unwrap_or_else(|e| panic!("convert {name}: {e}"));
    out
}

/// An array from a `.npy` file: shape and values as f64 (f32, f64 and i64 files).
pub struct Npy {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

pub fn read_npy(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}: not a .npy file", path.display());
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[hstart..hstart + hlen]).expect("npy header");
    assert!(header.contains("'fortran_order': False"), "{}: Fortran order", path.display());
    let descr = header.split("'descr': '").nth(1).and_then(|s| s.split('\'').next()).expect("descr");
    let shape_s = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).expect("shape");
    let shape: Vec<usize> =
        shape_s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().expect("dim")).collect();
    let body = &bytes[hstart + hlen..];
    let data: Vec<f64> = match descr {
        "<f4" => body.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        "<f8" => body.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
        "<i8" => body.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        other => panic!("{}: unsupported dtype {other}", path.display()),
    };
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{}", path.display());
    Npy { shape, data }
}

/// The golden outputs of one fixture.
pub struct Golden {
    pub input_ids: Vec<u32>,
    pub logits_last4: Npy,
    pub argmax_all: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub greedy_step_logits: Npy,
}

pub fn golden(name: &str) -> Golden {
    let d = fixtures_dir().join(name);
    let ids = |f: &str| read_npy(&d.join(f)).data.iter().map(|&x| x as u32).collect::<Vec<u32>>();
    Golden {
        input_ids: ids("input_ids.npy"),
        logits_last4: read_npy(&d.join("logits_last4.npy")),
        argmax_all: ids("argmax_all.npy"),
        greedy_ids: ids("greedy_ids.npy"),
        greedy_step_logits: read_npy(&d.join("greedy_step_logits.npy")),
    }
}

/// Largest |a - b| over two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).abs()).fold(0.0, f64::max)
}
