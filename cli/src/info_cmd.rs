use pocketlm_core::gguf::GgufFile;
use pocketlm_core::model::HParams;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file
    model: PathBuf,
    /// Also list every metadata key
    #[arg(long)]
    metadata: bool,
}

pub fn run(a: Args) -> pocketlm_core::Result<()> {
    let file = GgufFile::open(&a.model)?;
    let hp = HParams::from_gguf(&file.header).map_err(|e| file.err(e))?;
    let h = &file.header;
    println!(
        "file        {} ({:.1} MiB, GGUF v{})",
        a.model.display(),
        file.file_size() as f64 / (1 << 20) as f64,
        h.version
    );
    println!("name        {}", printable(&hp.name));
    println!("layers      {}", hp.n_layer);
    println!("n_embd      {}  ({} heads of {})", hp.n_embd, hp.n_head, hp.head_dim());
    println!("n_inner     {} (stored {})", hp.n_inner_original, hp.n_inner);
    println!("context     {} (trained)", hp.n_ctx_train);
    println!("mup         embeddings x{}  logits x{}  q.k x{}", hp.emb_scale, hp.out_scale, hp.qk_scale);
    println!("alibi       scaling {:?}  slopes {:?}", hp.alibi_scaling, hp.alibi_slopes);
    if a.metadata {
        println!("\nmetadata:");
        for (k, v) in &h.metadata {
            println!("  {:<45} {}", printable(k), printable(&v.summary()));
        }
    }
    println!("\n{:<28} {:>6} {:>20} {:>12}", "tensor", "type", "shape", "bytes");
    let mut total = 0u64;
    let mut params = 0u64;
    for t in &h.tensors {
        let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
        println!("{:<28} {:>6} {:>20} {:>12}", printable(&t.name), t.ty.name(), dims.join(" x "), t.n_bytes);
        total += t.n_bytes;
        params += t.n_elements();
    }
    println!(
        "\n{} tensors, {:.3} B parameters, {:.1} MiB of weights ({:.2} bits/weight)",
        h.tensors.len(),
        params as f64 / 1e9,
        total as f64 / (1 << 20) as f64,
        total as f64 * 8.0 / params.max(1) as f64
    );
    Ok(())
}

/// Strings from the file as they may be shown on a terminal: control characters (escape
/// sequences, newlines that would forge lines) are printed escaped, as Rust's `{:?}` would.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}
