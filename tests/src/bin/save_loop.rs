//! `save_loop MODEL.gguf FILE`: saves two different sessions to FILE, alternately, forever.
//! tests/kill_during_save.rs kills it with SIGKILL at random moments and checks that FILE is
//! always a whole, loadable session (the previous one or the new one), never a torn write.

use pocketlm_core::session::{Session, SessionOptions};
use pocketlm_core::Model;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, file] = args.as_slice() else {
        eprintln!("usage: save_loop MODEL.gguf FILE");
        return ExitCode::from(2);
    };
    let run = || -> pocketlm_core::Result<()> {
        let model = Arc::new(Model::load(model)?);
        let mut sessions = Vec::new();
        for n in [7u32, 30] {
            let mut s = Session::new(model.clone(), &SessionOptions { n_ctx: 64, ..Default::default() })?;
            s.prefill(&(1..=n).collect::<Vec<u32>>())?;
            sessions.push(s);
        }
        println!("ready");
        loop {
            for s in &sessions {
                s.save(std::path::Path::new(file))?;
            }
        }
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
