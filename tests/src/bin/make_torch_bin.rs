//! Writes a full-size BTLM-3B-8K checkpoint folder with random bf16 weights, laid out like
//! cerebras/btlm-3b-8k-base (`config.json` and one 5.3 GB `pytorch_model.bin`), so that the memory
//! a conversion or load of the real model takes can be measured without downloading it. The
//! weights are generated as they are written, so this tool itself needs a few MiB.
//!
//! Usage: `make_torch_bin --btlm-3b OUT_DIR`. The tokenizer files are not written: copy them in.

use pocketlm_tests::torch_bin::{write_random_btlm, BtlmDims, Dtype};
use std::path::Path;
use std::process::ExitCode;

/// The published `config.json` of cerebras/btlm-3b-8k-base, key for key: no `alibi_scaling` and
/// no `tie_word_embeddings` (so the head is tied by transformers' default), and
/// `mup_output_alpha` as the float Python printed.
/// cerebras/btlm-3b-8k-base's config.json as published (shared/docs/btlm-spec.md §1).
const CONFIG: &str = include_str!("../../fixtures/btlm-3b-8k-base/config.json");

/// Fixed, so that two runs write the same file.
const SEED: u64 = 0x5eed_b71a;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flag, out] = args.as_slice() else {
        eprintln!("usage: make_torch_bin --btlm-3b OUT_DIR");
        return ExitCode::from(2);
    };
    if flag != "--btlm-3b" {
        eprintln!("usage: make_torch_bin --btlm-3b OUT_DIR (unknown option {flag})");
        return ExitCode::from(2);
    }
    match run(Path::new(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make_torch_bin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), CONFIG)?;
    let bin = dir.join("pytorch_model.bin");
    write_random_btlm(&bin, &BtlmDims::BTLM_3B_8K, Dtype::BF16, SEED)?;
    let size = std::fs::metadata(&bin)?.len();
    println!("{}: {size} bytes ({:.2} GB)", bin.display(), size as f64 / 1e9);
    Ok(())
}
