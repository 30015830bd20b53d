"""Fixtures the HTTP tests and the http-load bench serve from a loopback nginx (torch 2.13, safetensors 0.8).

  torch-dcp DIR                        dcp.save of a small state dict (float32, bf16, fp16, int64, a
                                       sharded-looking 2-D tensor) with torch's FileSystemWriter
  hub-repo DIR SHARDS TENSORS BYTES    a Hugging Face sharded repository: model-0000i-of-0000N.safetensors
                                       (safetensors.torch.save_file) + model.safetensors.index.json,
                                       TENSORS tensors of about BYTES bytes each, cycling float32,
                                       bfloat16 and float16, spread evenly over SHARDS files
Prints one JSON line.
"""
import json
import os
import sys

import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch.distributed.checkpoint import FileSystemWriter

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def torch_dcp(d):
    g = torch.Generator().manual_seed(11)
    sd = {
        "weight": torch.randn(512, 256, generator=g),
        "bias": torch.randn(256, generator=g),
        "emb_bf16": torch.randn(300, 128, generator=g).to(torch.bfloat16),
        "head_fp16": torch.randn(128, 64, generator=g).to(torch.float16),
        "step": torch.tensor(12345, dtype=torch.int64),
    }
    dcp.save(sd, storage_writer=FileSystemWriter(d, thread_count=2), no_dist=True)
    return {"files": sorted(os.listdir(d)), "keys": sorted(sd)}


def hub_repo(d, shards, count, size):
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(5)
    names = [f"model.layers.{i}.weight" for i in range(count)]
    per = (count + shards - 1) // shards
    weight_map = {}
    total = 0
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {}
        for i, name in enumerate(names[s * per:(s + 1) * per], start=s * per):
            dtype = DTYPES[i % len(DTYPES)]
            n = max(1, size // torch.tensor([], dtype=dtype).element_size())
            cols = 64 if n % 64 == 0 else 1
            t = torch.randn(n, generator=g).to(dtype).reshape(n // cols, cols)
            part[name] = t
            weight_map[name] = fname
            total += t.numel() * t.element_size()
        save_file(part, os.path.join(d, fname), metadata={"format": "pt"})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return {"files": sorted(os.listdir(d)), "tensors": len(weight_map), "bytes": total}


def main():
    mode, d = sys.argv[1], sys.argv[2]
    if mode == "torch-dcp":
        out = torch_dcp(d)
    elif mode == "hub-repo":
        out = hub_repo(d, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
