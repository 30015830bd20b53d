"""The real safetensors 0.8 and torch 2.13 as peers of dcpjs's safetensors support.

  write-files DIR              safetensors.torch.save_file of every dtype, 0-d and empty; DIR/expected.json
  hf-writer DIR [distributed]  torch DCP save through HuggingFaceStorageWriter (save_distributed or not)
  check-export DIR EXPECTED [sharded]
                               load dcpjs's export with safetensors.torch.load_file and with
                               dcp.load(storage_reader=HuggingFaceStorageReader); sharded: run
                               consolidate_safetensors_files and load the result; compare with EXPECTED
Prints one JSON line.
"""
import glob
import json
import os
import sys
import tempfile

import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter
from torch.distributed.checkpoint._consolidate_hf_safetensors import consolidate_safetensors_files

DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}


def hexof(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def describe(sd):
    return {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape), "hex": hexof(v)} for k, v in sd.items()}


def tensors():
    g = torch.Generator().manual_seed(7)
    sd = {}
    for name, dt in DTYPES.items():
        if dt == torch.bool:
            t = torch.randint(0, 2, (3, 5), generator=g).bool()
        elif dt.is_floating_point:
            t = torch.randn(3, 5, generator=g).to(dt)
        else:
            t = torch.randint(-100 if dt != torch.uint8 else 0, 100, (3, 5), generator=g).to(dt)
        sd[f"t.{name}"] = t
    sd["scalar"] = torch.tensor(2.5, dtype=torch.float32)
    sd["empty"] = torch.zeros(0, 4, dtype=torch.float16)
    sd["int64.extremes"] = torch.tensor([-(2**63), 2**63 - 1, 0], dtype=torch.int64)
    sd["nan.inf"] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0], dtype=torch.float32)
    return sd


def hf_reader_mismatches(d, expected, label):
    """dcp.load through HuggingFaceStorageReader(d) into zeros; the keys that differ from EXPECTED."""
    target = {k: torch.zeros(v["shape"], dtype=DTYPES[v["dtype"]]) for k, v in expected.items()}
    dcp.load(target, storage_reader=HuggingFaceStorageReader(d), no_dist=True)
    got = describe(target)
    return [f"{label}: {k}" for k, v in expected.items() if got.get(k) != v]


def main():
    cmd, d = sys.argv[1], sys.argv[2]
    if cmd == "write-files":
        sd = tensors()
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        json.dump(describe(sd), open(os.path.join(d, "expected.json"), "w"))
        print(json.dumps({"ok": True}))
    elif cmd == "hf-writer":
        distributed = len(sys.argv) > 3 and sys.argv[3] == "distributed"
        g = torch.Generator().manual_seed(11)
        sd = {"layer.weight": torch.randn(6, 4, generator=g), "layer.bias": torch.randn(6, generator=g).to(torch.bfloat16),
              "embed": torch.randn(10, 3, generator=g).to(torch.float16)}
        dcp.save(sd, storage_writer=HuggingFaceStorageWriter(d, save_distributed=distributed), no_dist=True)
        json.dump(describe(sd), open(os.path.join(d, "..", "expected-" + os.path.basename(d) + ".json"), "w"))
        print(json.dumps({"ok": True, "files": sorted(os.listdir(d))}))
    elif cmd == "check-export":
        expected = json.load(open(sys.argv[3]))
        sharded = len(sys.argv) > 4 and sys.argv[4] == "sharded"
        out = {"ok": True, "mismatches": []}
        src = d
        if sharded:
            # HuggingFaceStorageReader reads the sharded layout itself …
            out["mismatches"] += hf_reader_mismatches(d, expected, "HuggingFaceStorageReader (sharded)")
            # … and consolidate_safetensors_files turns it into full tensors
            src = tempfile.mkdtemp()
            consolidate_safetensors_files(d, src, {k: 1 for k in expected})
        loaded = {}
        for f in sorted(glob.glob(os.path.join(src, "*.safetensors"))):
            loaded.update(load_file(f))
        got = describe(loaded)
        for k, v in expected.items():
            if got.get(k) != v:
                out["mismatches"].append(f"load_file: {k}")
        out["mismatches"] += hf_reader_mismatches(src, expected, "HuggingFaceStorageReader")
        out["ok"] = not out["mismatches"]
        print(json.dumps(out))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
