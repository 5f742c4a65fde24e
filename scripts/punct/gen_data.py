#!/usr/bin/python3
"""Synthetic speech for the punctuation model: text -> labelled words -> espeak-ng speech with
word timings from its event API. Writes shards of raw audio + one JSON line per utterance; the
per-word acoustic features are then computed by PocketLM's own Rust code
(`pocketlm punct-data features`), the same code that runs on the device.

    scripts/punct/gen_data.py --texts A.txt B.txt --out DIR --utterances 8000 --seed 1 \
        [--voices train|unseen] [--workers 2] [--text-only]

Reproducible from the seed: each worker synthesizes a fixed list of utterances in a fixed
order in its own espeak-ng instance (espeak's output depends on the calls before it in the same
process, so the order is what makes it repeatable). Needs Debian's espeak-ng (libespeak-ng1).
"""
import argparse
import ctypes
import json
import multiprocessing as mp
import os
import random
import re
import struct
import sys
import time

LABELS = ["none", "comma", "period", "question"]
# Utterance-internal marks and what they count as; "!" is merged into period (see README).
MARK_CLASS = {",": 1, ";": 1, ":": 1, "-": 1, ".": 2, "!": 2, "?": 3}

TRAIN_VOICES = ["en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland"]
UNSEEN_VOICES = ["en-us-nyc", "en-gb-x-gbclan"]
TRAIN_VARIANTS = ["", "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "croak"]
UNSEEN_VARIANTS = ["klatt", "klatt2", "klatt3", "m7", "f5"]


# ---------------------------------------------------------------- text

def sentences(path):
    """Sentences of a text file, one string each, with their punctuation."""
    text = open(path, encoding="utf-8").read()
    text = text.replace("\r", "")
    # Paragraphs: blank-line separated; rst/markdown headings and code lines dropped.
    out = []
    for para in re.split(r"\n\s*\n", text):
        lines = [l for l in para.split("\n") if l.strip() and not re.match(r"^\s*([=\-~*#`>|.]|\d+:\d+)", l)]
        para = " ".join(l.strip() for l in lines)
        para = para.replace("--", ", ").replace("\u2014", ", ")
        # An abbreviation's period is spelling, not a sentence end (espeak reads "Mr" as
        # "mister" either way; Persuasion writes "Mr", Pride and Prejudice "Mr.").
        para = re.sub(r"\b(Mr|Mrs|Ms|Dr|St|Messrs)\.", r"\1", para)
        para = re.sub(r"[\"\u201c\u201d\u2018\u2019()\[\]_*`]", " ", para)
        para = para.replace("'", "'")
        for s in re.findall(r"[^.?!]+[.?!]+", para):
            s = " ".join(s.split())
            if 3 <= len(s.split()) <= 40 and re.fullmatch(r"[A-Za-z ,;:.?!'-]+", s):
                out.append(s)
    return out


def label_words(sentence):
    """(words, labels): lower-cased words without punctuation, and the class of the strongest
    mark after each word (? > . ! > , ; : -)."""
    words, labels = [], []
    for tok in sentence.split():
        core = re.sub(r"[^A-Za-z']", "", tok).strip("'").lower()
        marks = re.sub(r"[A-Za-z']", "", tok)
        cls = max([MARK_CLASS.get(c, 0) for c in marks] + [0])
        if not core:
            if words:  # a stray mark belongs to the word before it
                labels[-1] = max(labels[-1], cls)
            continue
        words.append(core)
        labels.append(cls)
    return words, labels


def make_utterances(sents, n, rng):
    """n utterances of 1-3 consecutive sentences (at most 45 words); 30 % start at a question."""
    questions = [i for i, s in enumerate(sents) if "?" in s]
    utts = []
    while len(utts) < n:
        i = rng.choice(questions) if questions and rng.random() < 0.3 else rng.randrange(len(sents))
        k = rng.choice([1, 1, 2, 2, 3])
        words, labels, text = [], [], []
        for s in sents[i:i + k]:
            w, l = label_words(s)
            if len(words) + len(w) > 45:
                break
            words += w
            labels += l
            text.append(s)
        if len(words) >= 3:
            utts.append({"words": words, "labels": labels, "text": " ".join(text)})
    return utts


# ---------------------------------------------------------------- espeak-ng

class Event(ctypes.Structure):
    class Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", Id)]


EV_WORD, EV_END, EV_PHONEME = 1, 5, 7
CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))


class Espeak:
    def __init__(self):
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        self.rate = self.lib.espeak_Initialize(2, 0, None, 1)  # synchronous, phoneme events
        if self.rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self.samples, self.events = [], []

        def cb(wav, n, ev):
            if wav and n > 0:
                self.samples.append(bytes(ctypes.cast(wav, ctypes.POINTER(ctypes.c_short * n)).contents))
            i = 0
            while ev[i].type != 0:
                e = ev[i]
                name = e.id.string.decode("latin-1") if e.type == EV_PHONEME else ""
                self.events.append((e.type, e.text_position, e.length, e.sample, name))
                i += 1
            return 0

        self.cb = CALLBACK(cb)
        self.lib.espeak_SetSynthCallback(self.cb)

    def say(self, text, voice, rate, pitch, prange, gap):
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice}")
        for param, value in ((1, rate), (3, pitch), (4, prange), (7, gap)):
            self.lib.espeak_SetParameter(param, value, 0)
        self.samples, self.events = [], []
        data = text.encode("utf-8") + b"\0"
        rc = self.lib.espeak_Synth(data, len(data), 0, 1, 0, 1, None, None)
        if rc != 0:
            raise RuntimeError(f"espeak_Synth failed ({rc})")
        return b"".join(self.samples), self.events


def word_times(text, words, events, n_samples, rate):
    """Start and end (seconds) of each word of `text` from espeak's events: a word starts at its
    WORD event and ends at the first pause phoneme after it (else at the next word's start).
    Tokens espeak merged into one spoken word share its time evenly."""
    # Character offset (1-based, as espeak counts) of each token of the text.
    offsets, pos = [], 0
    for tok in text.split():
        pos = text.index(tok, pos)
        if re.sub(r"[^A-Za-z']", "", tok).strip("'"):
            offsets.append(pos + 1)
        pos += len(tok)
    assert len(offsets) == len(words), (text, words)
    wev = [e for e in events if e[0] == EV_WORD and e[2] > 0]
    bounds = []  # (sample start, sample end) per word event
    for j, e in enumerate(wev):
        nxt = wev[j + 1][3] if j + 1 < len(wev) else n_samples
        end = nxt
        for t, _, _, s, name in events:
            if t == EV_PHONEME and e[3] < s <= nxt and name.startswith("_") and s > e[3]:
                end = s
                break
        bounds.append((e[3], end, e[1]))
    if not bounds:
        return None
    # Each token goes to the last event starting at or before its character.
    owner = []
    for off in offsets:
        k = 0
        for j, b in enumerate(bounds):
            if b[2] <= off:
                k = j
        owner.append(k)
    start, end = [0.0] * len(words), [0.0] * len(words)
    i = 0
    while i < len(words):
        j = i
        while j + 1 < len(words) and owner[j + 1] == owner[i]:
            j += 1
        s0, s1, _ = bounds[owner[i]]
        n = j - i + 1
        for k in range(n):
            start[i + k] = (s0 + (s1 - s0) * k / n) / rate
            end[i + k] = (s0 + (s1 - s0) * (k + 1) / n) / rate
        i = j + 1
    return start, end


# ---------------------------------------------------------------- workers

def worker(args):
    wid, utts, out, voices, variants, rates, seed = args
    rng = random.Random(seed * 1000 + wid)
    es = Espeak()
    audio = open(os.path.join(out, f"shard-{wid:02d}.pcm"), "wb")
    meta = open(os.path.join(out, f"shard-{wid:02d}.jsonl"), "w")
    offset = 0
    for n, u in enumerate(utts):
        var = rng.choice(variants)
        voice = u.get("voice") or (rng.choice(voices) + (f"+{var}" if var else ""))
        params = dict(rate=rng.randint(*rates), pitch=rng.randint(25, 75), prange=rng.randint(20, 95),
                      gap=rng.choice([0, 0, 0, 1, 2]))
        pcm, events = es.say(u["text"], voice, **params)
        times = word_times(u["text"], u["words"], events, len(pcm) // 2, es.rate)
        if times is None:
            continue
        audio.write(pcm)
        rec = dict(words=u["words"], labels=u["labels"], start=[round(t, 4) for t in times[0]],
                   end=[round(t, 4) for t in times[1]], offset=offset, samples=len(pcm) // 2,
                   sample_rate=es.rate, voice=voice, **params)
        offset += len(pcm) // 2
        meta.write(json.dumps(rec) + "\n")
        if wid == 0 and (n % 20 == 0 or n + 1 == len(utts)):
            done = (n + 1) / len(utts)
            bar = "#" * int(30 * done)
            print(f"\r[{bar:<30}] {n + 1}/{len(utts)} utterances (worker 0)", end="", file=sys.stderr, flush=True)
    audio.close()
    meta.close()
    return wid


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--utterances", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--voices", choices=["train", "unseen"], default="train")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--text-only", action="store_true",
                    help="write OUT/text.jsonl (words and labels, no speech) for train.py --text-extra")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    sents = []
    for p in a.texts:
        sents += sentences(p)
    if not sents:
        sys.exit("no usable sentences in " + " ".join(a.texts))
    utts = make_utterances(sents, a.utterances, rng)
    os.makedirs(a.out, exist_ok=True)
    if a.text_only:
        # Text-only utterances train the text path (the model's fallback without audio) on far
        # more text than espeak could read in the time: no audio, so no features to compute.
        path = os.path.join(a.out, "text.jsonl")
        with open(path + ".tmp", "w") as f:
            for u in utts:
                f.write(json.dumps({"words": u["words"], "labels": u["labels"]}) + "\n")
        os.replace(path + ".tmp", path)
        print(f"{len(utts)} text-only utterances, {len(sents)} sentences -> {path}", file=sys.stderr)
        return
    if a.voices == "train":
        voices, variants, rates = TRAIN_VOICES, TRAIN_VARIANTS, (140, 220)
    else:
        voices, variants, rates = UNSEEN_VOICES, UNSEEN_VARIANTS, (120, 260)
    t0 = time.time()
    jobs = [(w, utts[w::a.workers], a.out, voices, variants, rates, a.seed) for w in range(a.workers)]
    with mp.Pool(a.workers) as pool:
        pool.map(worker, jobs)
    n_words = sum(len(u["words"]) for u in utts)
    print(f"\n{len(utts)} utterances, {n_words} words, {len(sents)} sentences in {time.time() - t0:.0f} s -> {a.out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
