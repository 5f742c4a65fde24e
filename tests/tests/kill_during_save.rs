//! A process killed (SIGKILL) in the middle of saving a session leaves the previous file whole:
//! saves go to a temporary file that is renamed into place. 25 kills at random moments; after
//! each, the file restores and holds one of the two sessions the process was writing.

use pocketlm_core::convert::Preset;
use pocketlm_core::session::{Session, SessionOptions};
use pocketlm_core::Model;
use pocketlm_tests::*;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn sigkill_during_save_never_leaves_a_torn_file() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = convert_fixture(&primary(), Preset::F16, None, tmp.path());
    let model = Arc::new(Model::load(&gguf).unwrap());
    let file = tmp.path().join("chat.plms");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for round in 0..25 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_save_loop"))
            .args([gguf.as_os_str(), file.as_os_str()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "round {round}");
        std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        if !file.exists() {
            continue; // killed before the first save finished: nothing to check
        }
        let mut s = Session::new(model.clone(), &SessionOptions { n_ctx: 64, ..Default::default() }).unwrap();
        s.restore(&file).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(matches!(s.tokens().len(), 7 | 30), "round {round}: {} tokens", s.tokens().len());
    }
    assert!(file.exists(), "some round got past its first save");
}
