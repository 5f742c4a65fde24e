//! `pocketlm`: convert, inspect and run BTLM models.

mod bench_cmd;
mod chat_cmd;
mod common;
mod constraint_args;
mod convert_cmd;
mod info_cmd;
mod perplexity_cmd;
mod punct_data_cmd;
mod punctuate_cmd;
mod quantize_cmd;
mod run_cmd;
mod sampling_args;
mod serve;
mod synth_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "pocketlm", version, about = "On-device runtime for BTLM-3B-8K")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Convert a Hugging Face BTLM folder to a GGUF file
    Convert(convert_cmd::Args),
    /// Show a model's hyperparameters and tensors
    Info(info_cmd::Args),
    /// Convert a GGUF to another weight type
    Quantize(quantize_cmd::Args),
    /// Generate text from a prompt
    Run(run_cmd::Args),
    /// Chat in the terminal, multi-turn, with the KV cache kept across turns
    Chat(chat_cmd::Args),
    /// Serve the model over an OpenAI-compatible HTTP API
    Serve(serve::Args),
    /// Write a random-weight model of real shape (for benchmarks)
    Synth(synth_cmd::Args),
    /// Measure prompt and generation speed, memory and bandwidth use
    Bench(bench_cmd::Args),
    /// Perplexity over a text file; KL divergence against a reference model's saved logits
    Perplexity(perplexity_cmd::Args),
    /// Punctuation and capitals for speech-recognition text (optionally with its audio)
    Punctuate(punctuate_cmd::Args),
    /// The punctuation model's dataset, packing and evaluation tools
    PunctData(punct_data_cmd::Args),
}

/// `pocketlm info M | head -1` must end quietly when the reader goes away, as Unix tools do.
/// Rust ignores SIGPIPE, so a print to a closed pipe would panic; restore the default action
/// (the process ends with the signal, no message). Only for commands that write to stdout and
/// hold nothing that could be lost half-written: files are written to a temporary name and
/// renamed, so a killed `convert` or `quantize` leaves no partial output under its real name.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal disposition to SIG_DFL at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Ctrl-C, SIGTERM or SIGHUP during `convert`, `quantize`, `synth` or a save: remove the
/// temporary file being written (the destination keeps its old contents), then exit with the
/// shell's 128 + signal, as the default action would have.
fn clean_up_on_signals() {
    #[cfg(unix)]
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP]) {
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                pocketlm_core::atomic_file::remove_unfinished();
                std::process::exit(128 + sig);
            }
        });
    }
}

fn main() -> ExitCode {
    default_sigpipe();
    // llama.cpp spells the cache type `-ctk`, which clap would read as `-c tk`.
    let args = std::env::args().map(|a| if a == "-ctk" { "--cache-type".to_string() } else { a });
    let cli = Cli::parse_from(args);
    if !matches!(cli.cmd, Cmd::Chat(_) | Cmd::Serve(_)) {
        clean_up_on_signals(); // chat's Ctrl-C stops an answer, serve's drains the server
    }
    let result = match cli.cmd {
        Cmd::Convert(a) => convert_cmd::run(a),
        Cmd::Info(a) => info_cmd::run(a),
        Cmd::Quantize(a) => quantize_cmd::run(a),
        Cmd::Run(a) => run_cmd::run(a),
        Cmd::Chat(a) => chat_cmd::run(a),
        Cmd::Serve(a) => serve::run(a),
        Cmd::Synth(a) => synth_cmd::run(a),
        Cmd::Bench(a) => bench_cmd::run(a),
        Cmd::Perplexity(a) => perplexity_cmd::run(a),
        Cmd::Punctuate(a) => punctuate_cmd::run(a),
        Cmd::PunctData(a) => punct_data_cmd::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
