"""torch 2.13's dcp.save of tensors large enough for dcpjs to read their items in place.

  save DIR   dcp.save {big: float32 [512, 512] (1 MiB), half: bfloat16 [640, 512], t: a transposed
             float32 [512, 512] view, s: rows 100..611 of a float32 [1024, 512] (a view of a larger
             storage), small: float32 [8]} and write DIR/../expected.json ({fqn: {dtype, shape, hex}})
Prints one JSON line.
"""
import json
import os
import sys

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter


def hexof(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def main():
    d = sys.argv[2]
    g = torch.Generator().manual_seed(11)
    sd = {
        "big": torch.randn(512, 512, generator=g),
        "half": torch.randn(640, 512, generator=g).bfloat16(),
        "t": torch.randn(512, 512, generator=g).t(),
        "s": torch.randn(1024, 512, generator=g)[100:612],
        "small": torch.randn(8, generator=g),
    }
    dcp.save(sd, storage_writer=FileSystemWriter(d), no_dist=True)
    out = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape), "hex": hexof(v)} for k, v in sd.items()}
    json.dump(out, open(os.path.join(d, "..", "expected.json"), "w"))
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    main()
