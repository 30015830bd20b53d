"""torch 2.13's `copy_` as the reference of dcpjs's cast on load (packages/core/src/model/cast.ts).

  table OUT.json   for each source dtype, a table of special values (NaN, ±Inf, subnormals, −0,
                   max/min, out of range for the integer types, values halfway between
                   representable floats, values that round twice) as its bytes, and for each
                   (source, destination) pair the bytes `torch.empty(n, dtype=dst).copy_(src)`
                   gives. Also copies each table tiled 67 times (the vectorised loop and its
                   scalar tail) and element by element: a cell where they disagree is listed in
                   "divergent" with every result seen (torch's own result depends on its loop there).
  save DIR         dcp.save a state dict of bfloat16, float16, float64, int64, int32, uint8 and bool
                   tensors of special values (2-d, 8 rows) and write DIR/../saved.json
                   {fqn: {dtype, shape, hex}}
  load DIR SPEC OUT   dcp.load DIR into zeroed targets SPEC {fqn: dtype} (its reader's copy_ casts)
                   and write OUT {fqn: {dtype, shape, hex}}
Prints one JSON line: {"ok": true, ...}.
"""
import json
import math
import struct
import sys

import torch

FLOATS = ["float64", "float32", "float16", "bfloat16"]
FP8 = ["float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu"]
INTS = ["int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64"]
COMPLEX = ["complex32", "complex64", "complex128"]
ALL = FLOATS + INTS + ["bool"] + FP8 + COMPLEX


def dt(name):
    return getattr(torch, name)


def hexof(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def f64_values():
    vals = [
        0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.1, -0.9, 0.99, 3.7, -3.7,
        math.inf, -math.inf,
        5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308,
        # float32: halfway cases, the largest, the overflow boundary, subnormals and their halfway
        1 + 2**-24, 1 + 3 * 2**-24, 1 + 2**-24 + 2**-50, 3.4028234663852886e38, 3.4028235677973366e38,
        3.4028235677973362e38, 1.401298464324817e-45, 7.006492321624085e-46, 7.006492321624087e-46,
        1.1754942106924411e-38,
        # float16: halfway cases, max, overflow boundary, subnormals
        1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-11 + 2**-40, 65504.0, 65519.0, 65519.99, 65520.0, 65536.0,
        5.960464477539063e-08, 2.9802322387695312e-08, 2.9802322387695315e-08, 6.097555160522461e-05,
        # bfloat16: halfway cases, overflow boundary
        1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-40, 3.3895313892515355e38, 3.3961775292304e38,
        9.183549615799121e-41,
        # integer boundaries
        127.0, 127.9, 128.0, -128.0, -128.9, -129.0, 255.0, 255.5, 256.0, 257.0, -1.5,
        32767.5, 32768.0, -32768.5, -32769.0, 65535.0, 65536.0, 2147483647.0, 2147483647.5,
        2147483648.0, -2147483648.0, -2147483649.0, 4294967295.0, 4294967296.0, 4294967301.0,
        2.0**53, 2.0**53 + 2, 2.0**62, 2.0**63, -(2.0**63), -(2.0**63) - 2048, 2.0**64, 1e20, -1e20, 1e30,
        # FP8 ranges
        448.0, 464.0, 480.0, 240.0, 57344.0, 61440.0, 2.0**-9, 2.0**-10, 2.0**-16, 2.0**-17, 2.0**127,
    ]
    nans = [0x7FF8000000000000, 0xFFF8000000000000]
    out = [struct.unpack("<q", struct.pack("<d", v))[0] for v in vals] + [
        struct.unpack("<q", struct.pack("<Q", b))[0] for b in nans
    ]
    return torch.tensor(out, dtype=torch.int64).view(torch.float64)


def bits_table(dtype, bits):
    width = torch.tensor([], dtype=dtype).element_size()
    raw = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[width]
    signed = [b - (1 << (8 * width)) if raw != torch.uint8 and b >= 1 << (8 * width - 1) else b for b in bits]
    return torch.tensor(signed, dtype=raw).view(dtype)


def source(name):
    base = f64_values()
    if name == "float64":
        return base
    if name in ("float32", "float16", "bfloat16"):
        d = dt(name)
        extra = {
            "float32": [0x00000001, 0x80000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7FC00000,
                        0xFFC00000, 0x3F800001, 0x3F801000, 0x3F803000, 0x3F808000, 0x3F818000, 0x4B000001,
                        0x4EFFFFFF, 0x4F000000, 0xCF000000, 0xDF000000, 0x5F000000, 0x477FEFFF, 0x477FF000],
            "float16": [0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7E00, 0xFE00, 0x3C01, 0x5BFF,
                        0x5C00, 0x57F8, 0x5FF8, 0x5800],
            "bfloat16": [0x0001, 0x8001, 0x007F, 0x0080, 0x7F7F, 0xFF7F, 0x7FC0, 0xFFC0, 0x3F81, 0x4F00,
                         0x4EFF, 0xCF00, 0x5F00, 0xDF00, 0x4300, 0x437F, 0x4380, 0x477F, 0x4780],
        }[name]
        return torch.cat([base.to(d), bits_table(d, extra)])
    if name in FP8:
        d = dt(name)
        return torch.arange(256, dtype=torch.int16).to(torch.uint8).view(d)
    if name == "bool":
        return torch.tensor([False, True])
    if name in COMPLEX:
        re = source({"complex32": "float16", "complex64": "float32", "complex128": "float64"}[name])
        return torch.complex(re, re.flip(0)).to(dt(name)) if name != "complex32" else torch.view_as_complex(
            torch.stack([re, re.flip(0)], -1)
        )
    ints = [0, 1, -1, 2, 127, 128, -128, -129, 255, 256, 257, 32767, 32768, -32768, -32769, 65535, 65536,
            2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32 - 1, 2**32 + 5, 2**53 + 1, 2**53 + 3,
            2**63 - 1, -(2**63), 2**24 + 1, 2**24 + 3, -(2**24) - 1, 2049, 2051, 257, 259, 65519, 65520,
            2**60 + 2**36 + 1, 2**60 + 2**36, 2**60 + 3 * 2**36, -(2**60) - 2**36 - 1, 2**62 + 2**38 + 1,
            1000, -1000, 447, 449, 465]
    return torch.tensor(ints, dtype=torch.int64).to(dt(name))


def copied(src, dst):
    return torch.empty(src.shape, dtype=dt(dst)).copy_(src)


def table(out_file):
    sources, results, divergent, unsupported = {}, {}, [], []
    cells = 0
    for s in ALL:
        src = source(s)
        sources[s] = {"hex": hexof(src), "n": src.numel()}
        results[s] = {}
        for d in ALL:
            if s in COMPLEX and d not in COMPLEX:
                continue  # dcpjs refuses complex → real (torch drops the imaginary part with a warning)
            try:
                whole = copied(src, d)
            except (RuntimeError, TypeError) as e:
                unsupported.append([s, d, str(e).splitlines()[0]])
                continue
            n = src.numel()
            tiled = copied(src.repeat(67), d).view(67, n)
            single = torch.stack([copied(src[i : i + 1], d)[0] for i in range(n)])
            width = whole.element_size()
            wb = bytes.fromhex(hexof(whole))
            for i in range(n):
                cells += 1
                w = wb[i * width : (i + 1) * width]
                seen = {w.hex()}
                seen |= {bytes.fromhex(hexof(tiled[r, i : i + 1])).hex() for r in range(67)}
                seen.add(hexof(single[i : i + 1]))
                if len(seen) > 1:
                    divergent.append({"src": s, "dst": d, "index": i, "seen": sorted(seen)})
            results[s][d] = hexof(whole)
    json.dump({"sources": sources, "results": results, "divergent": divergent, "unsupported": unsupported},
              open(out_file, "w"))
    print(json.dumps({"ok": True, "cells": cells, "divergent": len(divergent), "unsupported": unsupported}))


def saved_state():
    specials = f64_values()
    rows = 8
    n = (specials.numel() // rows) * rows
    base = specials[:n].view(rows, -1)
    return {
        "bf16": base.to(torch.bfloat16),
        "f16": base.to(torch.float16),
        "f64": base,
        "i64": source("int64")[:40].view(8, 5),
        "i32": source("int32")[:40].view(8, 5),
        "u8": source("uint8")[:40].view(8, 5),
        "b": torch.tensor([True, False] * 20).view(8, 5),
    }


def described(sd):
    return {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape), "hex": hexof(v)}
            for k, v in sd.items()}


def save(d):
    import os
    import torch.distributed.checkpoint as dcp

    sd = saved_state()
    dcp.save(sd, checkpoint_id=d, no_dist=True)
    json.dump(described(sd), open(os.path.join(os.path.dirname(d), "saved.json"), "w"))
    print(json.dumps({"ok": True}))


def load(d, spec_file, out_file):
    import torch.distributed.checkpoint as dcp

    spec = json.load(open(spec_file))
    meta = dcp.FileSystemReader(d).read_metadata().state_dict_metadata
    sd = {k: torch.zeros(tuple(meta[k].size), dtype=dt(v)) for k, v in spec.items()}
    dcp.load(sd, checkpoint_id=d, no_dist=True)
    json.dump(described(sd), open(out_file, "w"))
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    if sys.argv[1] == "table":
        table(sys.argv[2])
    elif sys.argv[1] == "save":
        save(sys.argv[2])
    elif sys.argv[1] == "load":
        load(sys.argv[2], sys.argv[3], sys.argv[4])
