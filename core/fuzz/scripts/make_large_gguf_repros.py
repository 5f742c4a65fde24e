#!/usr/bin/env python3
"""Writes the GGUF files that show GgufHeader::parse reserving memory proportional to the *claimed*
counts (up to ~32-128x the file size) instead of to the data it has parsed. They are larger than
libFuzzer's -max_len, so the fuzzer cannot produce them; see README.md, finding 2.

All files are sparse (a few KB on disk). Usage: make_large_gguf_repros.py [OUT_DIR] (default /tmp)
then e.g. `pocketlm info OUT_DIR/gguf-big-array-1g.gguf` (aborts: "memory allocation of
34359736800 bytes failed").
"""
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
GIB = 1 << 30


def write(name, header, size):
    path = os.path.join(out, name)
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(size)
    print(f"{path}: {size} bytes, header {header.hex()}")


def kv_prefix(n_kv=1):
    # magic, version 3, 0 tensors, n_kv metadata entries
    return b"GGUF" + struct.pack("<IQQ", 3, 0, n_kv)


# 1. One u64 array claiming as many elements as there are bytes left: reader.rs:121 reserves
#    32 B per claimed element (32 GiB for a 1 GiB file) before reading any.
h = kv_prefix() + struct.pack("<Q", 1) + b"a" + struct.pack("<I", 9)
h += struct.pack("<IQ", 10, GIB - len(h) - 12)
write("gguf-big-array-1g.gguf", h, GIB)

# 2. Four nested arrays (the depth limit), each claiming the remaining byte count: four such
#    reservations are live at once (~128x the file size; 5.1 GB for a 40 MB file).
size = 40_000_000
h = kv_prefix() + struct.pack("<Q", 1) + b"a" + struct.pack("<I", 9)
for ety in (9, 9, 9, 10):
    h += struct.pack("<IQ", ety, size - len(h) - 12)
write("gguf-nested-arrays-40m.gguf", h, size)

# 3. A metadata count of remaining/12: reader.rs:157-158 reserve ~56 B + a hash slot per claimed
#    entry (5 GB + ~3 GB for a 1 GiB file) before reading the first key.
write("gguf-many-kv-1g.gguf", kv_prefix((GIB - 24) // 12), GIB)
