#!/usr/bin/env python3
"""The table of scripts/bench-vs-llamacpp.sh: one line per type and round, then the means.

Inputs, in the results folder, per type TY and round R:
  pocketlm-TY-R.jsonl   `pocketlm bench --json` (speeds, peak RSS, in-run bandwidth)
  llama-TY-R.json       `llama-bench -o json`
  llama-TY-R.time       `/usr/bin/time -v` of that llama-bench run (peak RSS)
  bandwidth-TY-R.json   `pocketlm bench --bandwidth-only`, measured just before llama-bench
A decoded token reads every weight matrix once: PocketLM's tied head is its embedding; for
llama.cpp the bytes are its file's tensors minus `token_embd` (of which it reads one row).
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

import gguf


def cpu_name() -> str:
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                info.setdefault(k, v)
    fam, model = info.get("cpu family", "?"), info.get("model", "?")
    flags = info.get("flags", "").split()
    wanted = ["avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512vbmi", "asimddp", "i8mm"]
    have = [f for f in wanted if f in flags]
    return f"{info.get('model name', '?')} (family {fam}, model {model}; {' '.join(have)}), {os.cpu_count()} CPUs"


def llama_weight_bytes(path: str) -> int:
    r = gguf.GGUFReader(path)
    return sum(int(t.n_bytes) for t in r.tensors if t.name != "token_embd.weight")


def peak_rss_time(path: str) -> int:
    with open(path) as f:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", f.read())
    return int(m.group(1)) * 1024 if m else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--models", required=True)
    ap.add_argument("--types", required=True)
    a = ap.parse_args()
    types = a.types.split()
    rows, means = [], {}
    kernels = build = "?"
    pp_name = tg_name = "?"
    for ty in types:
        # q4_0_r16 (PocketLM's Q4_0 with interleaved rows) runs against llama.cpp's Q4_0.
        jais_ty = ty.removesuffix("_r16")
        lbytes = llama_weight_bytes(os.path.join(a.models, f"jais-btlm3b-{jais_ty}.gguf"))
        acc = {k: [] for k in ("ppP", "ppL", "tgP", "tgL", "pctP", "pctL", "rssP", "rssL")}
        for pfile in sorted(glob.glob(os.path.join(a.results, f"pocketlm-{ty}-*.jsonl"))):
            rnd = pfile.rsplit("-", 1)[1].split(".")[0]
            p = [json.loads(l) for l in open(pfile) if l.strip()]
            lj = json.load(open(os.path.join(a.results, f"llama-{ty}-{rnd}.json")))
            bw_l = json.load(open(os.path.join(a.results, f"bandwidth-{ty}-{rnd}.json")))["bandwidth_gbs"]
            rss_l = peak_rss_time(os.path.join(a.results, f"llama-{ty}-{rnd}.time"))
            p_pp = next(x for x in p if x["test"].startswith("pp"))
            p_tg = next(x for x in p if x["test"].startswith("tg"))
            l_pp = next(x for x in lj if x["n_prompt"] > 0 and x["n_gen"] == 0)
            l_tg = next(x for x in lj if x["n_gen"] > 0 and x["n_prompt"] == 0)
            kernels, build = p_pp.get("kernels", "?"), l_pp.get("build_commit", "?")
            pp_name, tg_name = p_pp["test"], p_tg["test"]
            bw_p = p_tg["bandwidth_gbs"]
            pct_p = p_tg["ceiling_pct"]
            pct_l = 100.0 * l_tg["avg_ts"] / (bw_l * 1e9 / lbytes)
            vals = dict(ppP=p_pp["tokens_per_s"], ppL=l_pp["avg_ts"], tgP=p_tg["tokens_per_s"], tgL=l_tg["avg_ts"],
                        pctP=pct_p, pctL=pct_l, rssP=p_tg["peak_rss_bytes"] / 2**20, rssL=rss_l / 2**20)
            for k, v in vals.items():
                acc[k].append(v)
            rows.append((ty, rnd, vals, bw_p, bw_l))
        means[ty] = {k: statistics.mean(v) for k, v in acc.items() if v}

    print(f"CPU: {cpu_name()}")
    print(f"PocketLM kernels: {kernels}; llama.cpp build {build}")
    print()
    print(f"| type | round | PocketLM {pp_name} | llama.cpp {pp_name} | ratio | PocketLM {tg_name} | llama.cpp {tg_name} | ratio "
          "| bandwidth GB/s (P / L run) | % of ceiling P / L | peak RSS MiB P / L |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for ty, rnd, v, bw_p, bw_l in rows:
        print(f"| {ty} | {rnd} | {v['ppP']:.2f} | {v['ppL']:.2f} | {v['ppP'] / v['ppL']:.2f}x | {v['tgP']:.2f} | "
              f"{v['tgL']:.2f} | {v['tgP'] / v['tgL']:.2f}x | {bw_p:.1f} / {bw_l:.1f} | {v['pctP']:.0f}% / {v['pctL']:.0f}% | "
              f"{v['rssP']:.0f} / {v['rssL']:.0f} ({v['rssP'] / v['rssL']:.2f}x) |")
    for ty, m in means.items():
        if not m:
            continue
        print(f"| **{ty}** | mean | {m['ppP']:.2f} | {m['ppL']:.2f} | **{m['ppP'] / m['ppL']:.2f}x** | {m['tgP']:.2f} | "
              f"{m['tgL']:.2f} | **{m['tgP'] / m['tgL']:.2f}x** | | {m['pctP']:.0f}% / {m['pctL']:.0f}% | "
              f"{m['rssP']:.0f} / {m['rssL']:.0f} (**{m['rssP'] / m['rssL']:.2f}x**) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
