//! The checkpoint readers `convert` runs on a Hugging Face folder: PyTorch `pytorch_model.bin`
//! (zip + pickle, through pytorch-reader) and `model.safetensors`. The first byte picks the
//! file name (even: .bin, odd: .safetensors), the rest is the file; every tensor it lists is
//! read as f32. Any input must give `Ok` or `Err`: no panic, abort or unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketlm_core::convert::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else { return };
    let Ok(dir) = tempfile::tempdir() else { return };
    let name = if pick % 2 == 0 { "pytorch_model.bin" } else { "model.safetensors" };
    if std::fs::write(dir.path().join(name), file).is_err() {
        return;
    }
    if let Ok(ckpt) = Checkpoint::open(dir.path()) {
        let names: Vec<String> = ckpt.names().take(64).map(str::to_string).collect();
        for n in &names {
            let _ = ckpt.shape(n);
            let _ = ckpt.read_f32(n);
        }
    }
});
