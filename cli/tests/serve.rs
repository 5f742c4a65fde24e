//! `pocketlm serve` against the real binary on 127.0.0.1, with a minimal HTTP/1.1 client (so
//! the test sees the bytes a client gets: status, headers, SSE framing).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn convert_mini(dir: &Path) -> PathBuf {
    let out = dir.join("mini.gguf");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/btlm-mini/hf");
    let o = Command::new(env!("CARGO_BIN_EXE_pocketlm"))
        .args(["convert", src.to_str().unwrap(), out.to_str().unwrap(), "--type", "f32"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(model: &Path, extra: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_pocketlm"))
            .args(["serve", "-m", model.to_str().unwrap(), "--port", &port.to_string()])
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while s.get("/health").0 != 200 {
            assert!(Instant::now() < deadline, "the server did not become healthy");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn request(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
        let mut c = loop {
            match TcpStream::connect(("127.0.0.1", self.port)) {
                Ok(c) => break c,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        // A server may answer (413) and close before reading a huge body: keep what it said.
        let _ = c.write_all(req.as_bytes());
        let mut raw = Vec::new();
        let _ = c.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        (status, head.to_string(), body)
    }

    fn get(&self, path: &str) -> (u16, String) {
        let (s, _, b) = self.request("GET", path, "", "");
        (s, b)
    }

    fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (s, _, b) = self.request("POST", path, "", body);
        (s, serde_json::from_str(&b).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {b:?}")))
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines().find_map(|l| l.strip_prefix(&format!("pocketlm_{name} "))?.parse().ok()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The `data:` payloads of an SSE body, checking the framing on the way.
fn sse_events(body: &str) -> Vec<String> {
    let events: Vec<String> = body.split("\n\n").filter(|e| !e.trim().is_empty()).map(str::to_string).collect();
    for e in &events {
        assert!(e.starts_with("data: ") && !e.contains('\n'), "SSE event framing: {e:?}");
    }
    events.iter().map(|e| e["data: ".len()..].to_string()).collect()
}

#[test]
fn openai_endpoints_streaming_prefix_reuse_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = convert_mini(tmp.path());
    let s = Server::start(&model, &["--parallel", "2"]);

    assert_eq!(s.request("POST", "/v1/models", "", "").0, 405, "POST on a GET route");
    let (st, m) = s.get("/v1/models");
    assert_eq!(st, 200);
    assert!(m.contains("\"id\":\"mini\""), "{m}");

    // Completion: usage counts what was generated; the same seed gives the same text.
    let req = r#"{"model":"mini","prompt":"Anne Elliot was","max_tokens":12,"temperature":1.0,"seed":7}"#;
    let (st, a) = s.post("/v1/completions", req);
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["object"], "text_completion");
    assert_eq!(a["usage"]["completion_tokens"], 12);
    assert_eq!(a["choices"][0]["finish_reason"], "length");
    let (_, b) = s.post("/v1/completions", req);
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"], "seeded sampling is reproducible");
    let ids = serde_json::json!({ "prompt": [4023, 1453], "max_tokens": 3, "temperature": 0 });
    let (st, c) = s.post("/v1/completions", &ids.to_string());
    assert_eq!((st, c["usage"]["prompt_tokens"].as_u64()), (200, Some(2)), "{c}");

    // Chat, streamed and not: the same greedy answer; SSE chunks end with [DONE] and usage.
    let chat = |stream: bool| {
        serde_json::json!({
            "messages": [{"role": "system", "content": "About Persuasion."}, {"role": "user", "content": "Who is Anne?"}],
            "max_tokens": 10, "temperature": 0, "stream": stream, "stream_options": {"include_usage": true}
        })
        .to_string()
    };
    let (st, whole) = s.post("/v1/chat/completions", &chat(false));
    assert_eq!(st, 200, "{whole}");
    let content = whole["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    let (st, head, body) = s.request("POST", "/v1/chat/completions", "", &chat(true));
    assert_eq!(st, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    let events = sse_events(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    let chunks: Vec<serde_json::Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed.trim_end(), content, "streamed and whole answers agree");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], whole["usage"]["completion_tokens"], "{usage}");

    // The next turn of that chat reuses the slot's cache: only the new turn is prefilled.
    let before = (s.metric("prompt_tokens_total"), s.metric("prefilled_tokens_total"));
    let turn2 = serde_json::json!({
        "messages": [{"role": "system", "content": "About Persuasion."}, {"role": "user", "content": "Who is Anne?"},
                     {"role": "assistant", "content": content}, {"role": "user", "content": "And Wentworth?"}],
        "max_tokens": 4, "temperature": 0
    });
    let (st, r) = s.post("/v1/chat/completions", &turn2.to_string());
    assert_eq!(st, 200, "{r}");
    let prompt = s.metric("prompt_tokens_total") - before.0;
    let prefilled = s.metric("prefilled_tokens_total") - before.1;
    println!("turn 2: {prompt} prompt tokens, {prefilled} prefilled");
    assert!(prefilled < prompt / 2.0, "turn 2 prefilled {prefilled} of {prompt}");

    // Tokenize / detokenize round trip.
    let (_, t) = s.post("/tokenize", r#"{"content":"Hello world"}"#);
    let (_, d) = s.post("/detokenize", &serde_json::json!({ "tokens": t["tokens"] }).to_string());
    assert_eq!(d["content"], "Hello world");

    // Constrained output: json_schema (cut short by max_tokens too), json_object, grammar, regex.
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "integer"}}},
        "required": ["name", "tags"], "additionalProperties": false
    });
    for (max_tokens, seed) in [(60, 1), (60, 2), (12, 3)] {
        let req = serde_json::json!({
            "messages": [{"role": "user", "content": "A record?"}], "max_tokens": max_tokens, "seed": seed,
            "temperature": 1.0, "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
        });
        let (st, r) = s.post("/v1/chat/completions", &req.to_string());
        assert_eq!(st, 200, "{r}");
        let text = r["choices"][0]["message"]["content"].as_str().unwrap();
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(v["name"].is_string() && v["tags"].is_array() && v.as_object().unwrap().len() == 2, "{v}");
        let finish = r["choices"][0]["finish_reason"].as_str().unwrap();
        assert!(finish == "stop" || (finish == "length" && r["usage"]["completion_tokens"] == max_tokens), "{r}");
    }
    let constrained = |field: serde_json::Value| {
        let mut req = serde_json::json!({"prompt": "Answer:", "max_tokens": 30, "temperature": 1.0, "seed": 5});
        req.as_object_mut().unwrap().extend(field.as_object().unwrap().clone());
        let (st, r) = s.post("/v1/completions", &req.to_string());
        assert_eq!(st, 200, "{r}");
        r["choices"][0]["text"].as_str().unwrap().to_string()
    };
    let obj = constrained(serde_json::json!({"response_format": {"type": "json_object"}}));
    assert!(serde_json::from_str::<serde_json::Value>(&obj).unwrap().is_object(), "{obj}");
    let yn = constrained(serde_json::json!({"grammar": "start: \"yes\" | \"no\""}));
    assert!(yn == "yes" || yn == "no", "{yn}");
    let digits = constrained(serde_json::json!({"regex": "[0-9]{3}-[0-9]{4}"}));
    assert!(digits.len() == 8 && digits.as_bytes()[3] == b'-', "{digits}");

    // Bad requests: OpenAI-style JSON errors, and the server keeps serving.
    let bad: [(&str, &str, u16, &str); 11] = [
        ("/v1/chat/completions", "{bad json", 400, "invalid request body"),
        ("/v1/chat/completions", r#"{"messages": "hi"}"#, 400, "invalid request body"),
        ("/v1/chat/completions", r#"{"messages": [], "max_tokens": 1}"#, 400, "messages is empty"),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4","messages":[{"role":"user","content":"x"}]}"#,
            404,
            "does not exist",
        ),
        ("/v1/completions", r#"{"prompt":"x","n":2}"#, 400, "n = 1"),
        ("/v1/completions", r#"{"prompt":"x","temperature":"hot"}"#, 400, "invalid request body"),
        ("/v1/completions", r#"{"prompt":[999999]}"#, 400, "outside the vocabulary"),
        ("/v1/completions", r#"{"prompt":"x","response_format":{"type":"xml"}}"#, 400, "response_format type"),
        ("/v1/completions", r#"{"prompt":"x","grammar":"start: missing"}"#, 400, "Lark grammar"),
        ("/v1/completions", r#"{"prompt":"x","grammar":"start: \"a\"","regex":"b"}"#, 400, "one constraint"),
        (
            "/v1/completions",
            r#"{"prompt":"x","response_format":{"type":"json_schema","json_schema":{"schema":{"type":"nope"}}}}"#,
            400,
            "JSON schema",
        ),
    ];
    for (path, body, status, needle) in bad {
        let (st, e) = s.post(path, body);
        assert_eq!(st, status, "{body}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains(needle), "{body}: {e}");
    }
    // A prompt longer than the context: a 400 that says so, before any work.
    let long = format!(r#"{{"prompt":"{}","max_tokens":4}}"#, "the ".repeat(20_000));
    let (st, e) = s.post("/v1/completions", &long);
    assert_eq!(st, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("the context is"), "{e}");
    let huge = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(2 << 20));
    let (st, _, body) = s.request("POST", "/v1/completions", "", &huge);
    assert_eq!(st, 413, "{body}");
    assert!(body.contains("\"error\""), "a JSON error: {body}");
    assert_eq!(s.get("/health").0, 200);
}

#[test]
fn slots_queue_disconnects_api_key_and_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let model = convert_mini(tmp.path());
    let s = Server::start(&model, &["--parallel", "1", "--queue", "0", "--api-key", "sekrit"]);
    let auth = "Authorization: Bearer sekrit\r\n";
    let (st, _, body) = s.request("POST", "/v1/completions", "", r#"{"prompt":"x","max_tokens":1}"#);
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("invalid_api_key"), "{body}");
    assert_eq!(s.get("/health").0, 200, "health needs no key");

    // A long streaming request holds the only slot; with no queue, the next gets 503.
    let long = r#"{"prompt":"Once","max_tokens":3000,"temperature":0,"stream":true}"#;
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{long}",
        long.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 2048];
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    let (st, head, body) = s.request("POST", "/v1/completions", auth, r#"{"prompt":"x","max_tokens":1}"#);
    assert_eq!(st, 503, "{body}");
    assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
    let busy = s.request("GET", "/metrics", auth, "").2;
    assert!(busy.contains("pocketlm_slots_busy 1"), "{busy}");

    // The client goes away mid-stream: its generation stops and the slot serves the next one.
    drop(c);
    let t0 = Instant::now();
    loop {
        let (st, _, body) = s.request("POST", "/v1/completions", auth, r#"{"prompt":"x","max_tokens":2}"#);
        if st == 200 {
            break;
        }
        assert_eq!(st, 503, "{body}");
        assert!(t0.elapsed() < Duration::from_secs(10), "the disconnected client's slot was not freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let generated = s.request("GET", "/metrics", auth, "").2;
    let total: f64 =
        generated.lines().find_map(|l| l.strip_prefix("pocketlm_generated_tokens_total ")?.parse().ok()).unwrap();
    assert!(total < 3000.0, "the abandoned generation stopped early ({total} tokens in all)");

    // SIGTERM: the server drains and exits cleanly.
    let mut s = s;
    assert!(Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// 4 slots, 16 concurrent streaming clients x 5 requests: every request completes or gets a
/// clean 503, no answer is mixed with another's (each equals its prompt's greedy answer, taken
/// alone beforehand), and the server's memory stays within weights + 4 KV caches + slack.
#[test]
fn sixteen_concurrent_streaming_clients_on_four_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let model = convert_mini(tmp.path());
    let s = std::sync::Arc::new(Server::start(&model, &["--parallel", "4", "--queue", "8", "-c", "512"]));
    let prompts: Vec<String> = (0..16).map(|i| format!("Chapter {i}. Anne walked to")).collect();
    let body = |p: &str, stream: bool| {
        serde_json::json!({ "prompt": p, "max_tokens": 8, "temperature": 0, "stream": stream }).to_string()
    };
    let expected: Vec<String> = prompts
        .iter()
        .map(|p| s.post("/v1/completions", &body(p, false)).1["choices"][0]["text"].as_str().unwrap().to_string())
        .collect();
    let t0 = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let (s, p, want) = (s.clone(), prompts[i].clone(), expected[i].clone());
            std::thread::spawn(move || {
                let (mut ok, mut busy) = (0, 0);
                for _ in 0..5 {
                    let (st, _, raw) = s.request("POST", "/v1/completions", "", &body(&p, true));
                    match st {
                        200 => {
                            let events = sse_events(&raw);
                            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
                            let text: String = events[..events.len() - 1]
                                .iter()
                                .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap())
                                .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_string))
                                .collect();
                            assert_eq!(text, want, "client {i}: an answer that is not its own");
                            ok += 1;
                        }
                        503 => busy += 1,
                        other => panic!("client {i}: status {other}: {raw}"),
                    }
                }
                (ok, busy)
            })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for w in workers {
        let (o, b) = w.join().unwrap();
        (ok, busy) = (ok + o, busy + b);
    }
    let elapsed = t0.elapsed();
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", s.child.id()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix(" kB")?.trim().parse().ok())
        .unwrap();
    // Weights 20 MiB (f32) + 4 x 512-token f16 caches (4 MiB each) + runtime and buffers.
    println!("80 requests: {ok} completed, {busy} got 503, in {elapsed:.1?}; peak RSS {} MiB", rss_kib / 1024);
    assert_eq!(ok + busy, 80);
    assert!(ok >= 40, "most requests are served: {ok}");
    assert!(rss_kib < 256 * 1024, "peak RSS {rss_kib} KiB");
    assert!(elapsed < Duration::from_secs(240), "the run ends by itself");
    assert_eq!(s.get("/health").0, 200);
}
