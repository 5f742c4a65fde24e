//! The PyTorch checkpoint writer (`pocketlm_tests::torch_bin`) checked against an independent
//! reader, pytorch-reader: what it writes must read back with the names, types, shapes and bytes
//! it was given, and the real btlm-mini checkpoint must survive a rewrite byte for byte.

use pocketlm_tests::torch_bin::{
    alibi_slopes, btlm_tensors, state_dict, write_random_btlm, write_sharded, BtlmDims, Dtype, Layout, StorageSpec,
    TensorEntry, TorchBin,
};
use pytorch_reader::{DType, PickleValue, PytorchReader};
use std::io::Read;
use std::path::{Path, PathBuf};

fn reader_dtype(d: Dtype) -> DType {
    match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn read(reader: &PytorchReader, name: &str) -> Vec<u8> {
    reader.get(name).unwrap_or_else(|| panic!("no {name}")).read().unwrap()
}

/// Entry names in archive order, and the raw `data.pkl`.
fn zip_entries(path: &Path) -> (Vec<String>, Vec<u8>) {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut names = Vec::new();
    let mut pickle = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        let name = entry.name().unwrap().into_owned();
        if name.ends_with("/data.pkl") {
            entry.read_to_end(&mut pickle).unwrap();
        }
        names.push(name);
    }
    (names, pickle)
}

fn values(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 - n as f32 / 2.0) * scale).collect()
}

#[test]
fn round_trips_every_dtype() {
    let tensors = vec![
        ("a.weight".to_string(), vec![3, 4], values(12, 0.37)),
        ("a.bias".to_string(), vec![4], values(4, -1.1)),
        ("b".to_string(), vec![2, 3, 4, 5], values(120, 0.013)),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let path = tmp.path().join(format!("{dtype:?}.bin"));
        state_dict(&tensors, dtype, &[]).write(&path).unwrap();
        let reader = PytorchReader::new(&path).unwrap();
        assert_eq!(reader.len(), tensors.len());
        for (name, shape, vals) in &tensors {
            let t = reader.get(name).unwrap();
            assert_eq!(t.dtype(), reader_dtype(dtype), "{name}");
            assert_eq!(t.shape(), &shape[..], "{name}");
            assert_eq!(t.read().unwrap(), dtype.encode(vals), "{name} {dtype:?}");
        }
    }
}

#[test]
fn half_types_round_to_nearest_even() {
    // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties go to the even 1.0; 1 + 3 * 2^-8 is
    // halfway between 1 + 2^-7 and 1 + 2^-6: to the even 1 + 2^-6.
    assert_eq!(Dtype::BF16.encode(&[1.003_906_3, 1.011_718_8]), [0x80, 0x3f, 0x82, 0x3f]);
    // f16 has 10 mantissa bits: 1 + 2^-11 ties to 1.0.
    assert_eq!(Dtype::F16.encode(&[1.0 + 2f32.powi(-11)]), [0x00, 0x3c]);
    assert_eq!(Dtype::F32.encode(&[1.5]), 1.5f32.to_le_bytes());
}

#[test]
fn archive_is_laid_out_like_torch() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pytorch_model.bin");
    // Eleven storages, so that key order ("0", "1", "10", "2", ...) differs from index order.
    let tensors: Vec<_> = (0..11).map(|i| (format!("t{i}"), vec![i + 1], values(i + 1, 0.5))).collect();
    let bin = TorchBin { byteorder: true, ..state_dict(&tensors, Dtype::F32, &[]) };
    bin.write(&path).unwrap();
    let (names, pickle) = zip_entries(&path);
    let mut want = vec!["pytorch_model/data.pkl".to_string(), "pytorch_model/byteorder".to_string()];
    let mut keys: Vec<String> = (0..11).map(|i| i.to_string()).collect();
    keys.sort();
    want.extend(keys.iter().map(|k| format!("pytorch_model/data/{k}")));
    want.push("pytorch_model/version".to_string());
    assert_eq!(names, want);
    assert_eq!(&pickle[..2], [0x80, 2], "protocol 2");
    assert_eq!(pickle.last(), Some(&b'.'), "STOP");
    let reader = PytorchReader::new(&path).unwrap();
    assert_eq!(reader.metadata().pytorch_version.as_deref().map(str::trim), Some("3"));

    // Every storage's bytes start on a 64-byte boundary, as torch aligns them for mmap.
    let file = std::fs::read(&path).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    for i in 0..zip.len() {
        let entry = zip.by_index(i).unwrap();
        let start = entry.data_start().expect("data start") as usize;
        assert_eq!(start % 64, 0, "{}", entry.name().unwrap());
        if let Some(key) = entry.name().unwrap().strip_prefix("pytorch_model/data/") {
            let k: usize = key.parse().unwrap();
            assert_eq!(&file[start..start + 4 * (k + 1)], &Dtype::F32.encode(&tensors[k].2)[..]);
        }
    }

    // An explicit root is used as given; without one, the root follows the file name.
    let named = tmp.path().join("other.bin");
    TorchBin { root: Some("archive".into()), ..bin.clone() }.write(&named).unwrap();
    assert!(zip_entries(&named).0.iter().all(|n| n.starts_with("archive/")));
    let stem = tmp.path().join("model.pt");
    bin.write(&stem).unwrap();
    assert!(zip_entries(&stem).0.iter().all(|n| n.starts_with("model/")));
}

#[test]
fn more_than_a_thousand_entries_pickle_in_batches() {
    // Python's pickler adds dict items 1000 at a time (MARK ... SETITEMS), a last lone one with
    // SETITEM: both paths must read back.
    let tensors: Vec<_> = (0..1001).map(|i| (format!("t.{i}"), vec![1], vec![i as f32])).collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("many.bin");
    state_dict(&tensors, Dtype::F32, &[]).write(&path).unwrap();
    let reader = PytorchReader::new(&path).unwrap();
    assert_eq!(reader.len(), 1001);
    assert_eq!(f32s(&read(&reader, "t.999")), [999.0]);
    assert_eq!(f32s(&read(&reader, "t.1000")), [1000.0]);
}

#[test]
fn tied_tensors_share_one_storage() {
    let tensors =
        vec![("wte".to_string(), vec![4, 3], values(12, 0.25)), ("ln.weight".to_string(), vec![3], vec![1.0; 3])];
    let bin = state_dict(&tensors, Dtype::BF16, &[("lm_head", "wte")]);
    assert_eq!(bin.storages.len(), 2);
    assert_eq!(bin.tensors.last().map(|t| (t.name.as_str(), t.storage)), Some(("lm_head", 0)));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tied.bin");
    bin.write(&path).unwrap();
    let (names, pickle) = zip_entries(&path);
    assert_eq!(names.iter().filter(|n| n.contains("/data/")).count(), 2, "one entry per storage: {names:?}");
    assert!(pickle.windows(7).any(|w| w == b"lm_head"));
    let reader = PytorchReader::new(&path).unwrap();
    assert_eq!(reader.get("lm_head").unwrap().shape(), [4, 3]);
    assert_eq!(read(&reader, "lm_head"), read(&reader, "wte"));
    assert_eq!(read(&reader, "wte"), Dtype::BF16.encode(&tensors[0].2));
}

#[test]
fn views_with_offset_and_stride_gather_the_right_elements() {
    // One f32 storage 0..12 seen as a 3x4 matrix, its transpose, a strided slice, a scalar and a
    // 1-D tail: pytorch-reader gathers each view into row-major order.
    let base: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let view = |name: &str, shape: &[usize], offset, stride: Option<Vec<usize>>| TensorEntry {
        offset,
        stride,
        ..TensorEntry::contiguous(name, Dtype::F32, shape, 0)
    };
    let bin = TorchBin {
        storages: vec![(Dtype::F32, Dtype::F32.encode(&base))],
        tensors: vec![
            view("m", &[3, 4], 0, None),
            view("m_t", &[4, 3], 0, Some(vec![1, 4])),
            view("col1_from_row1", &[2], 5, Some(vec![4])),
            view("scalar", &[], 7, None),
            view("tail", &[3], 9, None),
            view("rows_1_2", &[2, 4], 4, None),
        ],
        ..TorchBin::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("views.bin");
    bin.write(&path).unwrap();
    let reader = PytorchReader::new(&path).unwrap();
    let got = |name: &str| {
        let t = reader.get(name).unwrap();
        (t.shape().to_vec(), f32s(&t.read().unwrap()))
    };
    assert_eq!(got("m"), (vec![3, 4], base.clone()));
    let transposed: Vec<f32> = (0..4).flat_map(|c| (0..3).map(move |r| (r * 4 + c) as f32)).collect();
    assert_eq!(got("m_t"), (vec![4, 3], transposed));
    assert_eq!(got("col1_from_row1"), (vec![2], vec![5.0, 9.0]));
    assert_eq!(got("scalar"), (vec![], vec![7.0]));
    assert_eq!(got("tail"), (vec![3], vec![9.0, 10.0, 11.0]));
    assert_eq!(got("rows_1_2"), (vec![2, 4], base[4..12].to_vec()));
}

#[test]
fn sharded_save_matches_transformers() {
    let tensors = vec![
        ("transformer.wte.weight".to_string(), vec![8, 4], values(32, 0.1)),
        ("transformer.ln_f.weight".to_string(), vec![4], vec![1.0; 4]),
        ("transformer.ln_f.bias".to_string(), vec![4], values(4, 0.01)),
    ];
    let bin = state_dict(&tensors, Dtype::F32, &[("lm_head.weight", "transformer.wte.weight")]);
    let shards = bin
        .split(&[&["transformer.wte.weight", "lm_head.weight"], &["transformer.ln_f.weight", "transformer.ln_f.bias"]])
        .unwrap();
    assert_eq!(shards[0].storages.len(), 1, "the tie stays one storage");
    let tmp = tempfile::tempdir().unwrap();
    write_sharded(tmp.path(), &shards).unwrap();

    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("pytorch_model.bin.index.json")).unwrap())
            .unwrap();
    // The tied head counts once: 32 + 4 + 4 floats.
    assert_eq!(index["metadata"]["total_size"], 40 * 4);
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), 4);
    assert_eq!(map["lm_head.weight"], "pytorch_model-00001-of-00002.bin");
    assert_eq!(map["transformer.ln_f.bias"], "pytorch_model-00002-of-00002.bin");
    for (name, file) in map {
        let path = tmp.path().join(file.as_str().unwrap());
        let (entries, _) = zip_entries(&path);
        assert!(entries[0].starts_with(&format!("{}/", path.file_stem().unwrap().to_string_lossy())));
        let reader = PytorchReader::new(&path).unwrap();
        let source = if name == "lm_head.weight" { "transformer.wte.weight" } else { name.as_str() };
        let want = &tensors.iter().find(|t| t.0 == source).unwrap().2;
        assert_eq!(f32s(&read(&reader, name)), *want, "{name}");
    }
    assert!(bin.split(&[&["missing"]]).is_err());
}

#[test]
fn extra_globals_are_pickled_and_kept_opaque_by_the_reader() {
    let tensors = vec![("w".to_string(), vec![2], vec![1.0, 2.0])];
    let bin = TorchBin { extra_globals: vec![("os".into(), "system".into())], ..state_dict(&tensors, Dtype::F32, &[]) };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("evil.bin");
    bin.write(&path).unwrap();
    let (_, pickle) = zip_entries(&path);
    assert!(pickle.windows(11).any(|w| w == b"cos\nsystem\n"), "GLOBAL os system in the pickle");
    let reader = PytorchReader::new(&path).unwrap();
    assert_eq!(reader.keys(), ["w"]);
    assert_eq!(f32s(&read(&reader, "w")), [1.0, 2.0]);
    let PickleValue::Dict(root) = PytorchReader::read_pickle_data(&path, None).unwrap() else { panic!("not a dict") };
    assert!(matches!(&root["evil"], PickleValue::Unsupported(_)), "{:?}", root["evil"]);
}

#[test]
fn streamed_layout_declares_what_it_is_told() {
    // A storage whose bytes are shorter than the pickle claims: the writer does not check, the
    // reader must refuse the tensor.
    let layout = Layout {
        storages: vec![StorageSpec { dtype: Dtype::F32, numel: 4 }],
        tensors: vec![TensorEntry::contiguous("w", Dtype::F32, &[4], 0)],
        ..Layout::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("short.bin");
    layout.write_with(&path, |_, out| out.write_all(&Dtype::F32.encode(&[1.0, 2.0]))).unwrap();
    let refused = PytorchReader::new(&path).map_err(|e| e.to_string()).and_then(|r| read_all(&r));
    assert!(refused.is_err(), "a short storage read back: {refused:?}");
}

fn read_all(reader: &PytorchReader) -> Result<(), String> {
    reader.tensors().values().try_for_each(|t| t.read().map(drop)).map_err(|e| e.to_string())
}

#[test]
fn random_btlm_checkpoint_reads_back() {
    let dims = BtlmDims { vocab_size: 64, n_embd: 32, n_layer: 2, n_head: 4, n_inner: 40 };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pytorch_model.bin");
    write_random_btlm(&path, &dims, Dtype::BF16, 7).unwrap();
    let again = tmp.path().join("again.bin");
    write_random_btlm(&again, &dims, Dtype::BF16, 7).unwrap();
    let reader = PytorchReader::new(&path).unwrap();
    let other = PytorchReader::new(&again).unwrap();

    let layout = btlm_tensors(&dims);
    assert_eq!(reader.len(), layout.len());
    for (name, shape) in &layout {
        let t = reader.get(name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(t.shape(), &shape[..], "{name}");
        let want = if name.ends_with("slopes") { DType::F32 } else { DType::BF16 };
        assert_eq!(t.dtype(), want, "{name}");
        assert_eq!(t.read().unwrap(), read(&other, name), "{name}: same seed, same values");
    }
    assert_eq!(read(&reader, "lm_head.weight"), read(&reader, "transformer.wte.weight"));
    assert_eq!(f32s(&read(&reader, "transformer.relative_pe.slopes")), alibi_slopes(4));
    let bf16s = |name: &str| -> Vec<f32> {
        read(&reader, name).chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
    };
    assert!(bf16s("transformer.h.1.ln_2.weight").iter().all(|&v| v == 1.0));
    let w = bf16s("transformer.wte.weight");
    let mean = w.iter().sum::<f32>() / w.len() as f32;
    let std = (w.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / w.len() as f32).sqrt();
    assert!(mean.abs() < 0.003 && (std - 0.02).abs() < 0.002, "mean {mean} std {std}");
    assert_ne!(read(&reader, "transformer.h.0.mlp.c_fc.weight"), read(&reader, "transformer.h.0.mlp.c_fc2.weight"));
}

/// btlm-mini's `pytorch_model.bin` (a real `save_pretrained` output), if present: the copy
/// vendored in tests/fixtures, else shared/models (`POCKETLM_SHARED` or beside an ancestor).
fn btlm_mini() -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vendored = here.join("fixtures/btlm-mini/hf/pytorch_model.bin");
    let env = std::env::var_os("POCKETLM_SHARED").map(PathBuf::from);
    let shared = env.into_iter().chain(here.ancestors().map(|a| a.join("shared")));
    std::iter::once(vendored)
        .chain(shared.map(|s| s.join("models/btlm-mini/hf/pytorch_model.bin")))
        .find(|p| p.is_file())
}

fn mini_dims(bin: &Path) -> BtlmDims {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bin.with_file_name("config.json")).unwrap()).unwrap();
    let get = |k: &str| config[k].as_u64().unwrap_or_else(|| panic!("config {k}")) as usize;
    BtlmDims {
        vocab_size: get("vocab_size"),
        n_embd: get("n_embd"),
        n_layer: get("n_layer"),
        n_head: get("n_head"),
        n_inner: get("n_inner"),
    }
}

#[test]
fn btlm_layout_matches_btlm_mini() {
    let Some(path) = btlm_mini() else {
        eprintln!("skipped: no btlm-mini pytorch_model.bin (tests/fixtures or shared/models)");
        return;
    };
    let dims = mini_dims(&path);
    let reader = PytorchReader::new(&path).unwrap();
    let mut got: Vec<(String, Vec<usize>, DType)> =
        reader.tensors().values().map(|t| (t.name.clone(), t.shape().to_vec(), t.dtype())).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(String, Vec<usize>, DType)> = btlm_tensors(&dims)
        .into_iter()
        .map(|(n, s)| {
            let d = if n.ends_with("slopes") { DType::F32 } else { DType::BF16 };
            (n, s, d)
        })
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    assert_eq!(f32s(&read(&reader, "transformer.relative_pe.slopes")), alibi_slopes(dims.n_head));
    assert_eq!(read(&reader, "lm_head.weight"), read(&reader, "transformer.wte.weight"), "tied head");
}

#[test]
fn btlm_mini_rewrite_reads_back_identical() {
    let Some(path) = btlm_mini() else {
        eprintln!("skipped: no btlm-mini pytorch_model.bin (tests/fixtures or shared/models)");
        return;
    };
    let dims = mini_dims(&path);
    let original = PytorchReader::new(&path).unwrap();
    // Every bf16 tensor through f32 and back (exact), lm_head tied to the embedding; the f32
    // ALiBi slopes as a storage of their own, as BTLM keeps them.
    let mut bf16 = Vec::new();
    let mut slopes = None;
    for (name, shape) in btlm_tensors(&dims) {
        let t = original.get(&name).unwrap();
        let bytes = t.read().unwrap();
        match t.dtype() {
            DType::BF16 if name != "lm_head.weight" => {
                let vals = bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
                bf16.push((name, shape, vals));
            }
            DType::F32 => slopes = Some((name, shape, bytes)),
            _ => {}
        }
    }
    let mut bin = state_dict(&bf16, Dtype::BF16, &[("lm_head.weight", "transformer.wte.weight")]);
    let (name, shape, bytes) = slopes.expect("slopes");
    bin.tensors.push(TensorEntry::contiguous(&name, Dtype::F32, &shape, bin.storages.len()));
    bin.storages.push((Dtype::F32, bytes));

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pytorch_model.bin");
    bin.write(&out).unwrap();
    let rewritten = PytorchReader::new(&out).unwrap();
    assert_eq!(rewritten.len(), original.len());
    assert_eq!(zip_entries(&out).0.iter().filter(|n| n.contains("/data/")).count(), original.len() - 1);
    for t in original.tensors().values() {
        let r = rewritten.get(&t.name).unwrap_or_else(|| panic!("no {}", t.name));
        assert_eq!((r.dtype(), r.shape()), (t.dtype(), t.shape()), "{}", t.name);
        assert_eq!(r.read().unwrap(), t.read().unwrap(), "{}", t.name);
    }
}
