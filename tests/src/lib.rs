//! Shared helpers for the cross-crate tests: fixture locations, a minimal `.npy` reader,
//! conversion of a fixture folder to GGUF, and a writer of PyTorch checkpoints ([`torch_bin`]).

use pocketlm_core::convert::{convert, ConvertOptions, Preset};
use std::path::{Path, PathBuf};

pub mod torch_bin;

/// The repository's own test data (`tests/fixtures`): the trained btlm-mini model with its
/// reference outputs, the GPT-2 tokenizer vectors and a held-out text. Always present.
pub fn vendored_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The workplace's shared folder (the random-weight golden fixtures, the larger texts), when
/// present: `POCKETLM_SHARED` if set, else the first `shared/` beside an ancestor of this crate.
/// A clone on its own has none; tests that need it say so and skip.
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("POCKETLM_SHARED") {
        return Some(PathBuf::from(d)).filter(|d| d.is_dir());
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().map(|a| a.join("shared")).find(|s| s.join("fixtures").is_dir())
}

/// Prints (once per test binary) which fixture sets this run has, so a skipped set is never silent.
pub fn report_sets() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| match shared_dir() {
        Some(d) => eprintln!("fixture sets: vendored btlm-mini + shared random-weight fixtures ({})", d.display()),
        None => {
            eprintln!("fixture sets: vendored btlm-mini only; shared random-weight fixtures: skipped (no ../shared)")
        }
    });
}

/// The model every single-fixture test uses: the vendored trained btlm-mini.
pub const PRIMARY: &str = "btlm-mini";

/// The vendored trained model, [`PRIMARY`].
pub fn primary() -> Fixture {
    fixture(PRIMARY).expect("btlm-mini is vendored")
}

/// A model folder with golden outputs of the reference implementation.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    /// Hugging Face folder (config.json, weights, tokenizer files).
    pub model_dir: PathBuf,
    /// The golden `.npy` files (layout of shared/fixtures/btlm/README.md).
    pub golden_dir: PathBuf,
    /// tokenizer.json to convert with, for folders that carry none.
    pub tokenizer: Option<PathBuf>,
}

/// `btlm-mini` (vendored) or a shared fixture by name; None if that set is absent.
pub fn fixture(name: &str) -> Option<Fixture> {
    if name == PRIMARY {
        let d = vendored_dir().join("btlm-mini");
        return Some(Fixture {
            name: name.into(),
            model_dir: d.join("hf"),
            golden_dir: d.join("golden"),
            tokenizer: None,
        });
    }
    let dir = std::env::var_os("POCKETLM_FIXTURES")
        .map(PathBuf::from)
        .or_else(|| shared_dir().map(|s| s.join("fixtures/btlm")))?
        .join(name);
    dir.join("config.json").is_file().then(|| Fixture {
        name: name.into(),
        model_dir: dir.clone(),
        golden_dir: dir,
        tokenizer: Some(tokenizer_json()),
    })
}

/// A shared fixture a test needs, or None after printing that the test is skipped.
pub fn shared_fixture(name: &str, test: &str) -> Option<Fixture> {
    let f = fixture(name);
    if f.is_none() {
        eprintln!("skipped: {test} needs the shared fixture {name:?} (no ../shared)");
    }
    f
}

/// Every fixture with golden outputs: btlm-mini, then the shared ones (sorted) when present.
pub fn all_fixtures() -> Vec<Fixture> {
    report_sets();
    let mut out = vec![primary()];
    let shared = std::env::var_os("POCKETLM_FIXTURES")
        .map(PathBuf::from)
        .or_else(|| shared_dir().map(|s| s.join("fixtures/btlm")));
    if let Some(dir) = shared {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("config.json").exists())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        out.extend(names.iter().filter_map(|n| fixture(n)));
    }
    out
}

/// The GPT-2 tokenizer.json the CLI embeds (cli/assets), in the repository.
pub fn tokenizer_json() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/assets/gpt2-tokenizer.json")
}

/// The 673 GPT-2 text -> ids vectors (vendored).
pub fn tokenizer_vectors() -> PathBuf {
    vendored_dir().join("gpt2/test_vectors.json")
}

/// Converts a fixture to a GGUF of the given type inside `tmp`.
pub fn convert_fixture(f: &Fixture, ty: Preset, pad_inner_to: Option<usize>, tmp: &Path) -> PathBuf {
    let out = tmp.join(format!("{}-{ty:?}-{pad_inner_to:?}.gguf", f.name));
    let opts = ConvertOptions {
        model_dir: f.model_dir.clone(),
        out: out.clone(),
        preset: ty,
        tokenizer: f.tokenizer.clone(),
        pad_inner_to,
    };
    convert(&opts, &mut |_| {}).unwrap_or_else(|e| panic!("convert {}: {e}", f.name));
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

pub fn golden(f: &Fixture) -> Golden {
    let d = &f.golden_dir;
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
