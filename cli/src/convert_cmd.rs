use pocketlm_core::convert::{convert, ConvertOptions, Preset};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model folder: config.json; model.safetensors or pytorch_model.bin (either may be
    /// sharded with an index); tokenizer.json or vocab.json + merges.txt
    model_dir: PathBuf,
    /// Output GGUF file
    out: PathBuf,
    /// Weight type preset: f32, f16, q8_0, q4_0, q4_0_r16 (matrices 16 rows interleaved), q4_k, q4_k_m
    #[arg(long = "type", default_value = "f16")]
    out_type: String,
    /// tokenizer.json to use instead of the folder's tokenizer files
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Zero-pad n_inner to a multiple of this (exact; 0 = no padding)
    #[arg(long, default_value_t = 0)]
    pad_inner: usize,
}

pub fn run(a: Args) -> pocketlm_core::Result<()> {
    let opts = ConvertOptions {
        model_dir: a.model_dir,
        out: a.out.clone(),
        preset: Preset::parse(&a.out_type)?,
        tokenizer: a.tokenizer,
        pad_inner_to: (a.pad_inner > 0).then_some(a.pad_inner),
    };
    let bar = crate::common::tensor_bar();
    let report = convert(&opts, &mut crate::common::on_progress(&bar));
    bar.finish_and_clear();
    let report = report?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    let weights: Vec<String> = report.weights.iter().map(|p| p.display().to_string()).collect();
    eprintln!("read {} (tokenizer: {})", weights.join(", "), report.tokenizer);
    let hp = &report.hparams;
    eprintln!(
        "wrote {} ({} tensors, {:.1} MiB): {} layers, n_embd {}, {} heads, n_inner {} (stored {}), vocab {}",
        a.out.display(),
        report.n_tensors,
        report.file_bytes as f64 / (1 << 20) as f64,
        hp.n_layer,
        hp.n_embd,
        hp.n_head,
        hp.n_inner_original,
        hp.n_inner,
        hp.n_vocab
    );
    Ok(())
}
