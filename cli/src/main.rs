//! `pocketlm`: convert, inspect and run BTLM models.

mod convert_cmd;
mod info_cmd;
mod run_cmd;

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
    /// Generate text from a prompt
    Run(run_cmd::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Convert(a) => convert_cmd::run(a),
        Cmd::Info(a) => info_cmd::run(a),
        Cmd::Run(a) => run_cmd::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
