//! A model file truncated or rewritten in place while it is open (issue 12, item 7): the
//! process survives and the next forward pass fails with `ModelFileChanged`, naming the file.
//! Replacing it by rename (the safe way, which `convert` and `quantize` use) keeps the open
//! model working on the old weights.

use pocketlm_core::convert::Preset;
use pocketlm_core::error::Error;
use pocketlm_core::gguf::GgufFile;
use pocketlm_core::sampling::SamplingParams;
use pocketlm_core::session::{GenerateOptions, Session, SessionOptions};
use pocketlm_core::Model;
use pocketlm_tests::{convert_fixture, golden, primary};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn greedy_ids(model: &Arc<Model>, prompt: &[u32]) -> pocketlm_core::Result<Vec<u32>> {
    let mut s = Session::new(model.clone(), &SessionOptions::default())?;
    let opts =
        GenerateOptions { max_tokens: 8, sampling: SamplingParams::greedy(), stop_at_eos: false, ..Default::default() };
    let mut ids = Vec::new();
    s.generate_ids(prompt, &opts, &mut |id| {
        ids.push(id);
        true
    })?;
    Ok(ids)
}

/// A private copy of the vendored model as F32 GGUF in `dir`.
fn model_copy(dir: &Path, name: &str) -> PathBuf {
    let src = convert_fixture(&primary(), Preset::F32, None, dir);
    let dst = dir.join(name);
    std::fs::copy(src, &dst).unwrap();
    dst
}

fn assert_changed(r: pocketlm_core::Result<Vec<u32>>, path: &Path, what: &str) {
    match r {
        Err(e @ Error::ModelFileChanged { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(path.to_str().unwrap()) && msg.contains("rename"), "{what}: {msg}");
            println!("{what}: {msg}");
        }
        Err(e) => panic!("{what}: expected ModelFileChanged, got {e}"),
        Ok(ids) => panic!("{what}: generation went on with a changed file: {ids:?}"),
    }
}

#[test]
fn truncating_the_open_model_is_an_error_not_a_sigbus() {
    let tmp = tempfile::tempdir().unwrap();
    let g = golden(&primary());
    let path = model_copy(tmp.path(), "model.gguf");
    let model = Arc::new(Model::load(&path).unwrap());
    assert_eq!(greedy_ids(&model, &g.input_ids).unwrap(), g.greedy_ids[..8]);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 3).unwrap();
    assert_changed(greedy_ids(&model, &g.input_ids), &path, "truncated");
    // And stays so: the model must be opened again.
    assert_changed(greedy_ids(&model, &g.input_ids), &path, "truncated, second call");
}

/// The guard itself: reading every byte of a truncated mapping does not kill the process (the
/// pages past the end read as zeros) and marks the file as changed.
#[test]
fn reading_past_the_end_of_a_truncated_mapping_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let path = model_copy(tmp.path(), "model.gguf");
    let file = GgufFile::open(&path).unwrap();
    file.check_unchanged().unwrap();
    let t = file.header.tensors.iter().max_by_key(|t| t.offset).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
    let sum: u64 = file.tensor_bytes(t).iter().map(|&b| b as u64).sum();
    let tail = &file.tensor_bytes(t)[t.n_bytes as usize - 64..];
    assert!(tail.iter().all(|&b| b == 0), "pages past the new end read as zeros");
    println!("read {} bytes of {} past the new end (sum {sum})", t.n_bytes, t.name);
    assert!(matches!(file.check_unchanged(), Err(Error::ModelFileChanged { .. })));
}

#[test]
fn overwriting_the_open_model_in_place_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let g = golden(&primary());
    let path = model_copy(tmp.path(), "model.gguf");
    let model = Arc::new(Model::load(&path).unwrap());
    assert_eq!(greedy_ids(&model, &g.input_ids).unwrap(), g.greedy_ids[..8]);
    // What `cp other.gguf model.gguf` does to the bytes, at the same size: new contents.
    let header_end = model.file.header.data_offset;
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(header_end)).unwrap();
    f.write_all(&vec![0x3c; 4096]).unwrap();
    f.sync_all().unwrap();
    assert_changed(greedy_ids(&model, &g.input_ids), &path, "overwritten in place");
}

#[test]
fn replacing_the_open_model_by_rename_keeps_it_working() {
    let tmp = tempfile::tempdir().unwrap();
    let g = golden(&primary());
    let path = model_copy(tmp.path(), "model.gguf");
    let model = Arc::new(Model::load(&path).unwrap());
    let other = tmp.path().join("new.gguf.tmp");
    std::fs::write(&other, b"not even a model").unwrap();
    std::fs::rename(&other, &path).unwrap();
    assert_eq!(greedy_ids(&model, &g.input_ids).unwrap(), g.greedy_ids[..8], "the old file is still mapped");
    model.file.check_unchanged().unwrap();
}
