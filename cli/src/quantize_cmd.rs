use crate::common::{on_progress, tensor_bar};
use pocketlm_core::convert::{requantize, Preset};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Input GGUF
    input: PathBuf,
    /// Output GGUF
    out: PathBuf,
    /// Type preset: f32, f16, q8_0, q4_0, q4_0_r16 (matrices 16 rows interleaved), q4_k, q4_k_m
    #[arg(long = "type")]
    ty: String,
}

pub fn run(a: Args) -> pocketlm_core::Result<()> {
    let preset = Preset::parse(&a.ty)?;
    let bar = tensor_bar();
    let hp = requantize(&a.input, &a.out, preset, &mut on_progress(&bar));
    bar.finish_and_clear();
    let hp = hp?;
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({}, {:.1} MiB; n_inner {} stored as {})",
        a.out.display(),
        preset.name(),
        crate::common::mib(size),
        hp.n_inner_original,
        hp.n_inner
    );
    Ok(())
}
