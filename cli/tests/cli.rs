//! The `pocketlm` binary end to end on the vendored trained btlm-mini: convert (from its PyTorch
//! checkpoint), info, run --ids, perplexity.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's vendored test data (tests/fixtures): a clone needs nothing else.
fn vendored() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The trained btlm-mini as Cerebras ships BTLM (bf16 pytorch_model.bin, tokenizer files).
fn mini() -> PathBuf {
    vendored().join("btlm-mini/hf")
}

fn pocketlm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pocketlm")).args(args).output().expect("run pocketlm")
}

/// Converts btlm-mini's PyTorch checkpoint to an f32 GGUF with the binary, in `dir`.
fn convert_mini(dir: &Path) -> PathBuf {
    let out = dir.join("btlm-mini.gguf");
    let (m, o) = (mini(), out.to_str().unwrap().to_string());
    let run = pocketlm(&["convert", m.to_str().unwrap(), &o, "--type", "f32"]);
    assert!(run.status.success(), "convert: {}", String::from_utf8_lossy(&run.stderr));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("pytorch_model.bin"), "the report names the weights read: {err}");
    out
}

fn npy_i64(path: &Path) -> Vec<i64> {
    let b = std::fs::read(path).unwrap();
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    b[10 + hlen..].chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn convert_info_and_greedy_run_by_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let out = convert_mini(tmp.path());
    let golden = vendored().join("btlm-mini/golden");

    // A reader that goes away (`| head -1`) ends the program quietly, not with a panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketlm"))
        .args(["info", out.to_str().unwrap(), "--metadata"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let done = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&done.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&done.stderr));

    let o = pocketlm(&["info", out.to_str().unwrap()]);
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(info.contains("blk.1.ffn_gate.weight") && info.contains("n_inner     682"), "{info}");

    let prompt: Vec<String> = npy_i64(&golden.join("input_ids.npy")).iter().map(|x| x.to_string()).collect();
    let want: Vec<String> = npy_i64(&golden.join("greedy_ids.npy")).iter().map(|x| x.to_string()).collect();
    let o = pocketlm(&[
        "run",
        "-m",
        out.to_str().unwrap(),
        "--ids",
        "-p",
        &prompt.join(","),
        "-n",
        "16",
        "--temp",
        "0",
        "--ignore-eos",
        "--cache-type",
        "f32",
    ]);
    assert!(o.status.success(), "run: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), want.join(","));
    let timing = String::from_utf8_lossy(&o.stderr);
    assert!(timing.contains("tok/s") && timing.contains("generation: 16 tokens"), "{timing}");

    // Text mode streams something and reports timing.
    let o = pocketlm(&["run", "-m", out.to_str().unwrap(), "-p", "Hello world", "-n", "8", "--seed", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!o.stdout.is_empty());
}

#[test]
fn bad_input_is_a_clear_error_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let bogus = tmp.path().join("bogus.gguf");
    std::fs::write(&bogus, b"definitely not a model").unwrap();
    let o = pocketlm(&["run", "-m", bogus.to_str().unwrap(), "-p", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bogus.gguf") && err.contains("not a GGUF file"), "{err}");

    // A folder without config.json: the error names the file.
    let o = pocketlm(&["convert", tmp.path().to_str().unwrap(), tmp.path().join("x.gguf").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("config.json"));
    assert!(!tmp.path().join("x.gguf").exists() && !tmp.path().join("x.gguf.partial").exists());

    let o = pocketlm(&["run", "-m", bogus.to_str().unwrap(), "--ids", "-p", "1,x"]);
    assert_eq!(o.status.code(), Some(1));

    // Options out of range are typed errors naming the option (issue 12: these panicked or hung).
    let model = convert_mini(tmp.path());
    let m = model.to_str().unwrap();
    let text = vendored().join("text/austen_persuasion.txt");
    let t = text.to_str().unwrap();
    let (mini_path, pad_out) = (mini(), tmp.path().join("pad.gguf").to_str().unwrap().to_string());
    let mini_dir = mini_path.to_str().unwrap();
    for (args, needle) in [
        (vec!["run", "-m", m, "-p", "Hi", "-c", "32", "-n", "100", "--keep", "18446744073709551615"], "keep"),
        (vec!["run", "-m", m, "-p", "Hi", "-t", "100000"], "threads"),
        (vec!["run", "-m", m, "-p", "Hi", "--alibi-scaling", "fixed:inf"], "fixed:FACTOR"),
        (vec!["run", "-m", m, "-p", "Hi", "--alibi-scaling", "dynamic", "--alibi-train-len", "0"], "alibi-train-len"),
        (vec!["run", "-m", m, "--ids", "-p", "1,,2"], "\"\" is not a token id"),
        (vec!["run", "-m", m, "-p", "Hi", "-c", "1000000000"], "out of memory"),
        (vec!["run", "-m", m, "-p", "Hi", "-c", "4294967295"], "bytes"),
        (vec!["run", "-m", m, "-p", "Hi", "-c", "18446744073709551615"], "bytes"),
        (vec!["bench", "-m", m, "-r", "0"], "repetition"),
        (vec!["convert", mini_dir, &pad_out, "--pad-inner", "1000000000000"], "--pad-inner"),
        (vec!["convert", mini_dir, &pad_out, "--pad-inner", "18446744073709551615"], "--pad-inner"),
        (vec!["run", "-m", m, "-p", "Hi", "-f", t], "cannot be used with"),
        (vec!["bench", "-m", m, "-c", "1"], "-c 1"),
        (vec!["bench", "-m", m, "-d", "18446744073709551615"], "overflows"),
        (vec!["bench", "-m", m, "-p", "18446744073709551615", "-d", "1"], "overflows"),
        (vec!["bench", "-m", m, "-d", "1000000000"], "out of memory"),
        (vec!["perplexity", "-m", m, "-f", t, "-c", "0"], "stride"),
        (vec!["perplexity", "-m", m, "-f", t, "-c", "1"], "stride"),
        (vec!["perplexity", "-m", m, "-f", t, "-c", "64", "--stride", "0"], "stride"),
    ] {
        let o = pocketlm(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(matches!(o.status.code(), Some(1) | Some(2)), "{args:?}: {err}"); // 2: clap usage errors
        assert!(err.contains(needle) && !err.contains("panicked"), "{args:?}: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().contains("pad.gguf")), "no output or temporary file: {left:?}");

    // Items 13 and 14: a folder given as the model, and NaN in the weights (generation stops
    // with an error instead of printing "!!!!", token 0, forever).
    let bytes = std::fs::read(&model).unwrap();
    let h = pocketlm_core::gguf::GgufHeader::parse(&bytes).unwrap();
    let t = h.tensor("blk.0.attn_qkv.weight").unwrap();
    let at = (h.data_offset + t.offset) as usize;
    let mut nan = bytes.clone();
    nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let nan_path = tmp.path().join("nan.gguf");
    std::fs::write(&nan_path, nan).unwrap();
    let dir = tmp.path().to_str().unwrap();
    for (args, needle) in [
        (vec!["run", "-m", dir, "-p", "Hi"], "is a directory"),
        (vec!["info", dir], "is a directory"),
        (vec!["run", "-m", nan_path.to_str().unwrap(), "-p", "Hi", "-n", "8"], "non-finite value NaN in the logit"),
    ] {
        let o = pocketlm(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle) && !err.contains("panicked"), "{args:?}: {err}");
        assert!(!String::from_utf8_lossy(&o.stdout).contains('!'), "{args:?}: printed token 0");
    }
}

/// Issue 12 item 5: a reader that goes away (`pocketlm info M | head -1`) ends the program
/// quietly by SIGPIPE, as Unix tools do: no panic message, no error text.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let model = convert_mini(tmp.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketlm"))
        .args(["info", model.to_str().unwrap(), "--metadata"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the model is even open, so the first line meets a closed
    // pipe (a panic here was "failed printing to stdout: Broken pipe").
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(err.is_empty(), "stderr: {err}");
    assert!(status.success() || status.signal() == Some(libc_sigpipe()), "{status:?}");
}

#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13 // SIGPIPE on Linux, Android, macOS and iOS
}

#[test]
fn perplexity_kl_divergence_and_long_context_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let out = convert_mini(tmp.path());
    let m = out.to_str().unwrap();
    let text = vendored().join("text/austen_persuasion.txt");
    let logits = tmp.path().join("ref.logits");
    let o = pocketlm(&[
        "perplexity",
        "-m",
        m,
        "-f",
        text.to_str().unwrap(),
        "-c",
        "64",
        "--chunks",
        "2",
        "--save-logits",
        logits.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && stdout.contains("perplexity:") && stdout.contains("over 64 tokens"), "{stdout}");
    // A saved reference survives a run that fails, and cannot be both input and output.
    let saved = std::fs::read(&logits).unwrap();
    let bogus = tmp.path().join("bogus.logits");
    std::fs::write(&bogus, b"not logits").unwrap();
    let (t, l, b) = (text.to_str().unwrap(), logits.to_str().unwrap(), bogus.to_str().unwrap());
    for (kl, needle) in [(b, "bogus.logits"), (l, "same file")] {
        let o = pocketlm(&[
            "perplexity",
            "-m",
            m,
            "-f",
            t,
            "-c",
            "64",
            "--chunks",
            "2",
            "--save-logits",
            l,
            "--kl-divergence",
            kl,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(needle), "{err}");
        assert!(std::fs::read(&logits).unwrap() == saved, "{needle}: the existing file is untouched");
    }
    // Against itself.
    let o = pocketlm(&[
        "perplexity",
        "-m",
        m,
        "-f",
        text.to_str().unwrap(),
        "-c",
        "64",
        "--chunks",
        "2",
        "--kl-divergence",
        logits.to_str().unwrap(),
    ]);
    // Only the f16 storage of the reference differs: a random model's flat distribution has
    // near-ties that f16 rounding can flip.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let num = |key: &str, end: char| -> f64 {
        stdout.split(key).nth(1).and_then(|s| s.split(end).next()).and_then(|s| s.parse().ok()).unwrap()
    };
    assert!(num("mean ", ' ') < 1e-4 && num("agreement ", '%') >= 90.0, "{stdout}");
    // Mismatched settings are refused.
    let o = pocketlm(&[
        "perplexity",
        "-m",
        m,
        "-f",
        text.to_str().unwrap(),
        "-c",
        "32",
        "--chunks",
        "2",
        "--kl-divergence",
        logits.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));

    // Long context flags, q8_0 cache, and a session file resumed by a second run.
    let sess = tmp.path().join("chat.plms");
    let args = |p: &str| -> Vec<String> {
        [
            "run",
            "-m",
            m,
            "-p",
            p,
            "-n",
            "8",
            "--temp",
            "0",
            "--ctx-size",
            "512",
            "--cache-type",
            "q8_0",
            "--alibi-scaling",
            "dynamic",
            "--alibi-train-len",
            "64",
            "--keep",
            "4",
            "--session",
            sess.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let o = Command::new(env!("CARGO_BIN_EXE_pocketlm")).args(args("Hello there")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(sess.exists());
    let o = Command::new(env!("CARGO_BIN_EXE_pocketlm")).args(args(" and more")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("restored"), "{err}");
    // A prompt from a file (-f), as for prompts longer than a command line allows.
    let prompt = tmp.path().join("prompt.txt");
    std::fs::write(&prompt, "Once upon a time").unwrap();
    let o = pocketlm(&["run", "-m", m, "-f", prompt.to_str().unwrap(), "-n", "4"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("prompt: 5 tokens"), "{err}"); // btlm-mini's own vocabulary
    let o = pocketlm(&["run", "-m", m, "-p", "x", "--mem-budget", "1M"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("memory budget"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Strings from a model file cannot drive the terminal: `info` escapes control characters in
/// the model name (a file could otherwise clear the screen or forge output lines).
#[test]
fn info_escapes_control_characters_from_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("evil");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(mini()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
    }
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg = cfg.replacen('{', "{\n  \"_name_or_path\": \"x\\u001b[2J\\nlayers      999\",", 1);
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let out = tmp.path().join("evil.gguf");
    let o = pocketlm(&["convert", dir.to_str().unwrap(), out.to_str().unwrap(), "--type", "f16"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = pocketlm(&["info", out.to_str().unwrap(), "--metadata"]);
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(!info.contains('\u{1b}'), "escape sequence printed raw: {info:?}");
    assert!(info.contains("x\\u{1b}[2J\\nlayers      999"), "{info}");
    assert_eq!(info.lines().filter(|l| l.starts_with("layers")).count(), 1, "no forged line: {info}");
}

/// Ctrl-C while a model is being written removes the temporary file and leaves the previous
/// output as it was (issue 12, item 10); the exit status is the shell's 128 + SIGINT.
#[cfg(unix)]
#[test]
fn ctrl_c_during_a_write_leaves_no_partial_file_and_the_old_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model.gguf");
    std::fs::write(&out, b"previous").unwrap();
    let partials = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".partial"))
            .count()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketlm"))
        .args(["synth", "--preset", "btlm-small", "--type", "q4_k", "-o", out.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while partials() == 0 {
        assert!(child.try_wait().unwrap().is_none(), "synth finished before it could be interrupted");
        assert!(std::time::Instant::now() < deadline, "no temporary file appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(50)); // mid-write
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(partials(), 0, "the temporary file was removed");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous", "the old output survives");
}

/// `chat`: turns reuse the KV cache, /save and /load keep the conversation, and Ctrl-C stops
/// the answer being generated without ending the program.
#[cfg(unix)]
#[test]
fn chat_keeps_the_cache_saves_loads_and_ctrl_c_stops_only_the_answer() {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let model = convert_mini(tmp.path());
    let save = tmp.path().join("talk.session");
    let script =
        format!("Who is Anne?\nAnd her father?\n/save {0}\n/reset\n/load {0}\nGo on.\n/quit\n", save.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketlm"))
        .args(["chat", "-m", model.to_str().unwrap(), "--temp", "0", "-n", "12", "-s", "About Jane Austen."])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let reused: Vec<usize> =
        err.lines().filter_map(|l| l.split(" new prompt tokens, ").nth(1)?.split(' ').next()?.parse().ok()).collect();
    assert_eq!(reused.len(), 3, "three answers: {err}");
    assert_eq!(reused[0], 0, "{err}");
    assert!(reused[1] > 30 && reused[2] > reused[1], "later turns come from the cache (also after /load): {err}");
    assert!(err.contains("loaded 5 messages"), "{err}");
    assert!(save.exists() && tmp.path().join("talk.session.messages.json").exists());

    // Ctrl-C in the middle of a long answer: the answer stops, the program goes on.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketlm"))
        .args(["chat", "-m", model.to_str().unwrap(), "--temp", "0", "-n", "3000", "-c", "4096"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    stdin.write_all(b"Tell me everything.\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while seen.lock().unwrap().len() < 40 {
        assert!(std::time::Instant::now() < deadline, "no answer streamed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    stdin.write_all(b"/quit\n").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "the program survives Ctrl-C: {status:?} {err}");
    assert!(err.contains("[stopped]"), "{err}");
    let generated: usize = err.split(" tokens at ").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(generated < 3000, "stopped early: {generated} tokens");
}

#[test]
fn run_with_a_json_schema_grammar_or_regex_prints_matching_output() {
    let tmp = tempfile::tempdir().unwrap();
    let model = convert_mini(tmp.path());
    let m = model.to_str().unwrap();
    let schema = tmp.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"name":{"type":"string"},"n":{"type":"integer","minimum":1,"maximum":5}},
            "required":["name","n"],"additionalProperties":false}"#,
    )
    .unwrap();
    let s = schema.to_str().unwrap();
    for n in ["8", "60"] {
        let o = pocketlm(&["run", "-m", m, "-p", "Data:", "-n", n, "--temp", "1", "--json-schema", s]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("-n {n}: {e}"));
        assert!(v["name"].is_string() && (1..=5).contains(&v["n"].as_i64().unwrap()), "-n {n}: {v}");
    }
    let grammar = tmp.path().join("yes-no.lark");
    std::fs::write(&grammar, "start: \"yes\" | \"no\"\n").unwrap();
    let o = pocketlm(&["run", "-m", m, "-p", "Answer:", "-n", "9", "--grammar", grammar.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.trim_end() == "yes" || out.trim_end() == "no", "{out}");
    let o = pocketlm(&["run", "-m", m, "-p", "Code:", "-n", "9", "--regex", "[A-F]{4}"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.trim_end().len() == 4 && out.trim_end().bytes().all(|b| (b'A'..=b'F').contains(&b)), "{out}");

    // A broken schema names the file; two constraints at once are refused by the parser.
    std::fs::write(&schema, "{not json").unwrap();
    let o = pocketlm(&["run", "-m", m, "-p", "x", "--json-schema", s]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("schema.json") && err.contains("not JSON"), "{err}");
    let o = pocketlm(&["run", "-m", m, "-p", "x", "--json", "--regex", "a"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
}

/// A mono 16-bit WAV: `hound` is the CLI's reader, so the test writes the 44-byte header itself.
fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + data_len as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    samples.iter().for_each(|s| b.extend_from_slice(&s.to_le_bytes()));
    std::fs::write(path, b).unwrap();
}

/// `pocketlm punctuate` (issue 14): text only with the built-in model, with a WAV and word
/// timings, and its bad input.
#[test]
fn punctuate_text_and_audio() {
    let o = pocketlm(&["punctuate", "--text", "i think so"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("I think so"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    let (wav, words) = (tmp.path().join("utt.wav"), tmp.path().join("words.json"));
    let rate = 16000;
    let samples: Vec<i16> = (0..rate * 2)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let voiced = (0.1..0.6).contains(&t) || (1.0..1.5).contains(&t);
            if voiced {
                (9000.0 * (2.0 * std::f32::consts::PI * 150.0 * t).sin()) as i16
            } else {
                0
            }
        })
        .collect();
    write_wav(&wav, rate as u32, &samples);
    std::fs::write(&words, r#"[{"word":"yes","start":0.1,"end":0.6},{"word":"indeed","start":1.0,"end":1.5}]"#)
        .unwrap();
    let (w, j) = (wav.to_str().unwrap(), words.to_str().unwrap());
    let o = pocketlm(&["punctuate", "--audio", w, "--words", j, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["audio"], true);
    assert_eq!(doc["words"].as_array().unwrap().len(), 2);
    assert!(doc["words"][1]["probabilities"]["question"].as_f64().unwrap() >= 0.0);

    std::fs::write(&words, r#"[{"word":"yes","start":0.1,"end":5.0}]"#).unwrap();
    let missing = tmp.path().join("missing.wav");
    let bad_json = tmp.path().join("bad.json");
    std::fs::write(&bad_json, "[{\"word\": 3}]").unwrap();
    for (args, needle) in [
        (vec!["punctuate", "--audio", w, "--words", j], "after the end of the audio"),
        (vec!["punctuate", "--audio", missing.to_str().unwrap(), "--words", j], "missing.wav"),
        (vec!["punctuate", "--words", bad_json.to_str().unwrap()], "bad.json"),
        (vec!["punctuate", "--text", "   "], "empty"),
        (vec!["punctuate"], "--text"),
        (vec!["punctuate", "-m", w, "--text", "hi"], "utt.wav"),
    ] {
        let o = pocketlm(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle) && !err.contains("panicked"), "{args:?}: {err}");
    }
}
