#!/usr/bin/env python3
"""Server and structured-output numbers (a benchmark, not a test): run on an idle machine.

  scripts/bench-serve.py --bin target/release/pocketlm --model btlm-3b-q4_0.gguf [--threads 2]

Measures, on one model and machine:
  1. the server's per-request overhead over the CLI for the same greedy generation (wall time
     of the HTTP request minus the CLI's own prompt + generation time);
  2. time to first token of the 3rd turn of a chat, with the slot's cached prefix and without
     (the same request after an unrelated one evicted the cache);
  3. aggregate decode throughput with 1, 2 and 4 parallel slots (as many concurrent clients);
  4. the cost per token of the grammar mask (run with --json / a nested --json-schema vs none).
Prints a Markdown table; uses only the standard library.
"""
import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="target/release/pocketlm")
ap.add_argument("--model", required=True)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--tokens", type=int, default=32)
args = ap.parse_args()
T = ["-t", str(args.threads)] if args.threads else []
PROMPT = "The history of the English novel begins with"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, parallel):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [args.bin, "serve", "-m", args.model, "--port", str(self.port), "--parallel", str(parallel), "-c", "2048", *T],
            stderr=subprocess.DEVNULL,
        )
        for _ in range(3000):
            try:
                urllib.request.urlopen(self.url("/health"), timeout=1)
                return
            except Exception:
                time.sleep(0.1)
        raise SystemExit("the server did not become healthy")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, path, body):
        req = urllib.request.Request(self.url(path), json.dumps(body).encode(), {"Content-Type": "application/json"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:
            out = json.loads(r.read())
        return out, time.perf_counter() - t0

    def first_token(self, body):
        """Seconds to the first streamed content chunk, and the whole streamed text."""
        req = urllib.request.Request(
            self.url("/v1/chat/completions"), json.dumps({**body, "stream": True}).encode(),
            {"Content-Type": "application/json"})
        t0 = time.perf_counter()
        first, text = None, ""
        with urllib.request.urlopen(req, timeout=600) as r:
            for line in r:
                line = line.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if delta:
                    first = first or time.perf_counter() - t0
                    text += delta
        return first, text

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def cli(extra, n=None):
    """The CLI's own prompt + generation seconds, tokens generated, tok/s, constraint ms/token."""
    o = subprocess.run([args.bin, "run", "-m", args.model, "-p", PROMPT, "-n", str(n or args.tokens), "--temp", "0",
                        *T, *extra], capture_output=True, text=True, check=True)
    m = re.search(r"prompt: (\d+) tokens, ([\d.]+) tok/s \| generation: (\d+) tokens, ([\d.]+) tok/s", o.stderr)
    pt, ps, gt, gs = int(m[1]), float(m[2]), int(m[3]), float(m[4])
    c = re.search(r"constraint: ([\d.]+) ms per token", o.stderr)
    return pt / ps + (gt / gs if gs else 0), gt, gs, float(c[1]) if c else 0.0


rows = []

# 1. Per-request overhead: the same greedy generation through the CLI and the server.
cli_s, cli_n, _, _ = min((cli([]) for _ in range(3)), key=lambda r: r[0])
srv = Server(1)
# Warm the slot with unrelated text: warming with PROMPT would let the first measured request
# reuse its cached prefix and make the overhead look smaller than it is.
srv.post("/v1/completions", {"prompt": "Unrelated text to evict the cache.", "max_tokens": 2, "temperature": 0})
walls = []
for _ in range(3):
    # An unrelated request in between, so no request reuses the previous one's cache.
    out, wall = srv.post("/v1/completions", {"prompt": PROMPT, "max_tokens": args.tokens, "temperature": 0})
    walls.append((wall, out["usage"]["completion_tokens"]))
    srv.post("/v1/completions", {"prompt": "Unrelated text to evict the cache.", "max_tokens": 1})
wall, srv_n = min(walls)
rows.append(("server overhead per request (same greedy generation)",
             f"{(wall - cli_s) * 1000:.0f} ms ({wall:.2f} s HTTP vs {cli_s:.2f} s in the CLI, {srv_n}/{cli_n} tokens)"))

# 2. Time to first token of the 3rd chat turn, with and without the cached prefix.
turns = ["Who wrote Persuasion?", "When was it published?", "Who is its heroine?"]
msgs = [{"role": "system", "content": "A conversation about English novels of the nineteenth century."}]
for user in turns[:2]:
    msgs.append({"role": "user", "content": user})
    out, _ = srv.post("/v1/chat/completions", {"messages": msgs, "max_tokens": 24, "temperature": 0})
    msgs.append({"role": "assistant", "content": out["choices"][0]["message"]["content"]})
msgs.append({"role": "user", "content": turns[2]})
third = {"messages": msgs, "max_tokens": 8, "temperature": 0}
warm, _ = srv.first_token(third)
srv.post("/v1/completions", {"prompt": "Unrelated text to evict the cache.", "max_tokens": 1})
cold, _ = srv.first_token(third)
tok = srv.post("/tokenize", {"content": json.dumps(msgs)})[0]["tokens"]
rows.append(("TTFT, 3rd chat turn, prefix reused", f"{warm * 1000:.0f} ms"))
rows.append(("TTFT, 3rd chat turn, from scratch", f"{cold * 1000:.0f} ms (~{len(tok)} tokens of history)"))
srv.stop()

# 3. Throughput with 1, 2 and 4 slots, as many concurrent clients.
for parallel in (1, 2, 4):
    srv = Server(parallel)
    srv.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 2})
    done = []

    def client(i):
        out, _ = srv.post("/v1/completions", {"prompt": f"{i}. {PROMPT}", "max_tokens": args.tokens,
                                              "temperature": 0.8, "seed": i})
        done.append(out["usage"]["completion_tokens"])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    rows.append((f"throughput, {parallel} slot(s), {parallel} client(s)",
                 f"{sum(done) / wall:.2f} tok/s aggregate ({sum(done)} tokens incl. prefill in {wall:.1f} s)"))
    srv.stop()

# 4. The grammar mask: decode speed with and without a constraint.
schema = {"type": "object", "properties": {
    "title": {"type": "string"}, "year": {"type": "integer", "minimum": 1700, "maximum": 1950},
    "people": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "role": {"enum": ["hero", "heroine", "other"]}},
        "required": ["name", "role"], "additionalProperties": False}}},
    "required": ["title", "year", "people"], "additionalProperties": False}
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(schema, f)
n = 128
base = max((cli(["--ignore-eos"], n) for _ in range(2)), key=lambda r: r[2])
for name, extra in [("--json", ["--json"]), ("nested --json-schema", ["--json-schema", f.name])]:
    r = max((cli(extra, n) for _ in range(2)), key=lambda r: r[2])
    rows.append((f"constraint ({name}), per token",
                 f"{r[3]:.2f} ms measured inside generation; {r[2]:.2f} vs {base[2]:.2f} tok/s unconstrained, "
                 f"{r[1]} tokens"))

print(f"model {args.model}, {args.tokens} tokens per request, threads {args.threads or 'default'}\n")
print("| measurement | result |\n|---|---|")
for k, v in rows:
    print(f"| {k} | {v} |")
