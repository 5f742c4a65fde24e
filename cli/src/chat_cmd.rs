//! `pocketlm chat`: an interactive multi-turn chat in the terminal. Answers stream as they are
//! generated; the KV cache is kept across turns, so each turn reads only its own new tokens.
//! Ctrl-C stops the current answer (at the prompt it ends the program); `/reset`, `/save FILE`,
//! `/load FILE` and `/quit` are commands.

use pocketlm_core::atomic_file::write_atomic;
use pocketlm_core::chat::{ChatFormat, Conversation, Message, Role};
use pocketlm_core::session::{CancelHandle, GenerateOptions, Session, SessionOptions, StopReason};
use pocketlm_core::{Error, KvType, Model};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file
    #[arg(short, long)]
    model: PathBuf,
    /// A system message / preamble before the first turn
    #[arg(short, long)]
    system: Option<String>,
    /// Most tokens per answer
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    n_predict: usize,
    #[command(flatten)]
    sampling: crate::sampling_args::SamplingArgs,
    #[command(flatten)]
    draft: crate::sampling_args::DraftArgs,
    /// Context size in tokens (the whole conversation)
    #[arg(short = 'c', long, default_value_t = 4096)]
    ctx_size: usize,
    /// KV cache type: f16, q8_0, q4 or f32
    #[arg(long = "cache-type", alias = "ctk", default_value = "f16")]
    cache_type: String,
    /// Worker threads (0 = one per physical core)
    #[arg(short = 't', long, default_value_t = 0)]
    threads: usize,
}

pub fn run(a: Args) -> pocketlm_core::Result<()> {
    pocketlm_core::threads::pool(a.threads)?.install(|| chat(a))
}

fn chat(a: Args) -> pocketlm_core::Result<()> {
    let model = Arc::new(Model::load(&a.model)?);
    let sopts = SessionOptions { n_ctx: a.ctx_size, kv_type: KvType::parse(&a.cache_type)?, ..Default::default() };
    let mut chat = Conversation::new(Session::new(model.clone(), &sopts)?, ChatFormat::for_model(&model));
    let system: Vec<Message> = a.system.iter().map(|s| Message::new(Role::System, s.clone())).collect();
    chat.set_messages(system.clone());
    let running = on_ctrl_c();
    let opts = GenerateOptions {
        max_tokens: a.n_predict,
        sampling: a.sampling.params(),
        draft: a.draft.tokens(),
        ..Default::default()
    };
    opts.sampling.validate().map_err(Error::InvalidArgument)?;
    eprintln!(
        "chat with {} ({} tokens of context). Ctrl-C stops an answer; /reset, /save FILE, /load FILE, /quit.",
        model.hparams.name,
        chat.session().n_ctx()
    );
    let (stdin, mut out) = (std::io::stdin(), std::io::stdout());
    let mut line = String::new();
    loop {
        let _ = write!(out, "> ");
        let _ = out.flush();
        line.clear();
        if stdin.lock().read_line(&mut line).map_err(|e| Error::Io { path: "stdin".into(), source: e })? == 0 {
            let _ = writeln!(out);
            return Ok(());
        }
        let input = line.trim_end_matches(['\n', '\r']);
        let result = match input.split_once(' ').unwrap_or((input, "")) {
            ("" | " ", _) => continue,
            ("/quit" | "/exit", _) => return Ok(()),
            ("/reset", _) => {
                chat.reset();
                eprintln!("(conversation cleared)");
                Ok(())
            }
            ("/save", file) if !file.trim().is_empty() => save(&chat, Path::new(file.trim())),
            ("/load", file) if !file.trim().is_empty() => load(&mut chat, Path::new(file.trim())),
            ("/save" | "/load", _) => Err(Error::InvalidArgument(format!("{input}: give a file name"))),
            _ => answer(&mut chat, input, &opts, &running, &mut out),
        };
        // A failed turn is reported and the chat goes on: the history is as before it.
        if let Err(e) = result {
            eprintln!("error: {e}");
        }
    }
}

fn answer(
    chat: &mut Conversation,
    input: &str,
    opts: &GenerateOptions,
    running: &Mutex<Option<CancelHandle>>,
    out: &mut std::io::Stdout,
) -> pocketlm_core::Result<()> {
    let cancel = CancelHandle::new();
    *running.lock().unwrap_or_else(|p| p.into_inner()) = Some(cancel.clone());
    let opts = GenerateOptions { cancel, ..opts.clone() };
    let reply = chat.send(input, &opts, &mut |piece| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    });
    *running.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let reply = reply?;
    let _ = writeln!(out);
    if reply.stats.stop_reason == StopReason::Cancelled {
        eprintln!("[stopped]");
    }
    eprintln!(
        "({} new prompt tokens, {} from the cache; {} tokens at {:.1} tok/s)",
        reply.prefilled,
        reply.reused,
        reply.stats.generated_tokens,
        reply.stats.generation_tokens_per_s()
    );
    Ok(())
}

/// The KV cache in `file` (a session file) and the messages beside it, in `file.messages.json`.
fn save(chat: &Conversation, file: &Path) -> pocketlm_core::Result<()> {
    chat.session().save(file)?;
    let json = serde_json::to_vec_pretty(chat.messages()).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let sidecar = messages_file(file);
    write_atomic(&sidecar, |w| w.write_all(&json).map_err(|e| Error::Io { path: sidecar.clone(), source: e }))?;
    eprintln!("(saved {} messages to {} and {})", chat.messages().len(), file.display(), sidecar.display());
    Ok(())
}

fn load(chat: &mut Conversation, file: &Path) -> pocketlm_core::Result<()> {
    let sidecar = messages_file(file);
    let text = std::fs::read(&sidecar).map_err(|e| Error::Io { path: sidecar.clone(), source: e })?;
    let messages: Vec<Message> = serde_json::from_slice(&text)
        .map_err(|e| Error::InvalidArgument(format!("{}: not a list of chat messages: {e}", sidecar.display())))?;
    chat.session_mut().restore(file)?;
    eprintln!("(loaded {} messages, {} tokens of context)", messages.len(), chat.session().tokens().len());
    chat.set_messages(messages);
    Ok(())
}

fn messages_file(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".messages.json");
    PathBuf::from(name)
}

/// Ctrl-C cancels the answer being generated, if any; at the prompt it ends the program with
/// the shell's status 130, as usual.
fn on_ctrl_c() -> Arc<Mutex<Option<CancelHandle>>> {
    let running: Arc<Mutex<Option<CancelHandle>>> = Arc::default();
    #[cfg(unix)]
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([libc::SIGINT]) {
        let running = running.clone();
        std::thread::spawn(move || {
            for _ in signals.forever() {
                match running.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    Some(cancel) => cancel.cancel(),
                    None => {
                        pocketlm_core::atomic_file::remove_unfinished();
                        std::process::exit(130);
                    }
                }
            }
        });
    }
    running
}
