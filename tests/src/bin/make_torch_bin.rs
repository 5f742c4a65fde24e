//! Writes a full-size BTLM-3B-8K checkpoint folder with random bf16 weights, laid out like
//! cerebras/btlm-3b-8k-base (`config.json` and one 5.3 GB `pytorch_model.bin`), so that the memory
//! a conversion or load of the real model takes can be measured without downloading it. The
//! weights are generated as they are written, so this tool itself needs a few MiB.
//!
//! Usage: `make_torch_bin --btlm-3b OUT_DIR`. The tokenizer files are not written: copy them in.
//! `make_torch_bin --fuzz-seeds OUT_DIR` writes the small checkpoints the `checkpoint` fuzz
//! target starts from (core/fuzz/seeds/checkpoint): a first byte picking the file name, then a
//! `pytorch_model.bin` or `model.safetensors` of a few tensors.

use pocketlm_tests::torch_bin::{state_dict, write_random_btlm, BtlmDims, Dtype};
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
    let result = match flag.as_str() {
        "--btlm-3b" => run(Path::new(out)),
        "--fuzz-seeds" => fuzz_seeds(Path::new(out)),
        _ => {
            eprintln!("usage: make_torch_bin --btlm-3b|--fuzz-seeds OUT_DIR (unknown option {flag})");
            return ExitCode::from(2);
        }
    };
    match result {
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

fn fuzz_seeds(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tensors = vec![
        ("transformer.wte.weight".to_string(), vec![4, 2], vec![0.5, -1.0, 2.0, 0.25, 1.5, -0.5, 3.0, 0.0]),
        ("transformer.ln_f.bias".to_string(), vec![2], vec![0.125, -2.0]),
        ("transformer.relative_pe.slopes".to_string(), vec![2, 1], vec![0.25, 0.0625]),
    ];
    let tied = [("lm_head.weight", "transformer.wte.weight")];
    for (name, dtype, tie) in
        [("bf16-tied", Dtype::BF16, &tied[..]), ("f32", Dtype::F32, &[][..]), ("f16", Dtype::F16, &[][..])]
    {
        let tmp = dir.join(format!("{name}.tmp"));
        state_dict(&tensors, dtype, tie).write(&tmp)?;
        let mut seed = vec![0u8]; // even: pytorch_model.bin
        seed.extend(std::fs::read(&tmp)?);
        std::fs::remove_file(&tmp)?;
        std::fs::write(dir.join(format!("{name}.bin.seed")), seed)?;
    }
    // safetensors: 8-byte header length, JSON header, data.
    let header = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}}"#;
    let mut seed = vec![1u8]; // odd: model.safetensors
    seed.extend((header.len() as u64).to_le_bytes());
    seed.extend(header.as_bytes());
    seed.extend([1.0f32, -2.0, 0.5, 4.0].iter().flat_map(|v| v.to_le_bytes()));
    seed.extend([0x3f80u16, 0xc000, 0x3f00].iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.join("small.safetensors.seed"), seed)?;
    println!("fuzz seeds in {}", dir.display());
    Ok(())
}
