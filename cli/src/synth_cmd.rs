use crate::common::{on_progress, tensor_bar, tokenizer_spec};
use pocketlm_core::convert::{synth::synth, Preset};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Model shape: btlm-3b-8k (2.65 B parameters), btlm-small, btlm-tiny
    #[arg(long, default_value = "btlm-3b-8k")]
    preset: String,
    /// Type preset: f32, f16, q8_0, q4_0, q4_0_r16 (matrices 16 rows interleaved), q4_k, q4_k_m
    #[arg(long = "type", default_value = "q4_0")]
    ty: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// tokenizer.json (default: the GPT-2 tokenizer built into pocketlm)
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Output GGUF
    #[arg(short, long)]
    out: PathBuf,
}

pub fn run(a: Args) -> pocketlm_core::Result<()> {
    let preset = Preset::parse(&a.ty)?;
    let spec = tokenizer_spec(a.tokenizer.as_deref())?;
    let bar = tensor_bar();
    let t0 = std::time::Instant::now();
    let hp = synth(&a.preset, preset, a.seed, &spec, &a.out, &mut on_progress(&bar));
    bar.finish_and_clear();
    let hp = hp?;
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} in {:.1} s: {} ({} layers, n_embd {}, n_inner {} stored {}), {}, {:.1} MiB",
        a.out.display(),
        t0.elapsed().as_secs_f64(),
        a.preset,
        hp.n_layer,
        hp.n_embd,
        hp.n_inner_original,
        hp.n_inner,
        preset.name(),
        crate::common::mib(size)
    );
    Ok(())
}
