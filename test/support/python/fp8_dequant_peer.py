"""torch 2.13's QuantizedHuggingFaceStorageReader as the peer of dcpjs's dequantizing reader.

  write DIR                  safetensors 0.8 save_file: two files and model.safetensors.index.json with
                             block-scaled float8_e4m3fn weights (shapes not multiples of 128, a scale in
                             the other file, bf16 scales, NaN / inf / huge / subnormal scales, every
                             FP8 byte) and plain tensors
  read DIR OUT TARGET DEST   dcp.load(no_dist) of every tensor into DEST-dtype zeros through
                             QuantizedHuggingFaceStorageReader(target_dtype=TARGET); OUT: {fqn: {dtype, shape, hex}}
Prints one JSON line.
"""
import json
import os
import sys

import torch
import torch.distributed.checkpoint as dcp
from safetensors import safe_open
from safetensors.torch import save_file
from torch.distributed.checkpoint.quantized_hf_storage import QuantizedHuggingFaceStorageReader

FILES = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def hexof(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def fp8(g, rows, cols):
    # every byte pattern (NaN 0x7f / 0xff, subnormals, ±0) at random places
    return torch.randint(0, 256, (rows, cols), generator=g, dtype=torch.uint8).view(torch.float8_e4m3fn)


def scales(g, rows, cols):
    return (2.0 ** torch.randint(-20, 12, (rows, cols), generator=g).float()) * (
        1 + torch.rand(rows, cols, generator=g)
    )


def write(d):
    g = torch.Generator().manual_seed(24)
    up = fp8(g, 300, 200)
    up_s = scales(g, 3, 2)
    up_s[0, 1] = float("nan")
    up_s[1, 0] = float("inf")  # inf × 0 → NaN, inf × x → ±inf
    up_s[1, 1] = 3.0e36  # overflows to ±inf
    up_s[2, 0] = 1.0e-42  # a subnormal scale: products round into float32's subnormals
    up_s.view(torch.int32)[2, 1] |= -(2**31)  # a negative scale (-0 × …)
    o = fp8(g, 256, 384)
    o_s = scales(g, 2, 3)
    down = fp8(g, 130, 129)
    down_s = scales(g, 2, 2).to(torch.bfloat16)
    gate = fp8(g, 1100, 1000)  # 4.4 MB as float32: its FP8 → float32 cast runs on a worker thread
    gate_s = scales(g, 9, 8)
    first = {
        "model.layers.0.mlp.up_proj.weight": up,
        "model.layers.0.mlp.up_proj.weight_scale_inv": up_s,
        "model.layers.0.self_attn.o_proj.weight_scale_inv": o_s,
        "model.layers.0.input_layernorm.weight": torch.randn(200, generator=g).to(torch.bfloat16),
    }
    second = {
        "model.layers.0.self_attn.o_proj.weight": o,
        "model.layers.1.mlp.down_proj.weight": down,
        "model.layers.1.mlp.down_proj.weight_scale_inv": down_s,
        "model.layers.1.mlp.gate_proj.weight": gate,
        "model.layers.1.mlp.gate_proj.weight_scale_inv": gate_s,
        "model.embed_tokens.weight": torch.randn(10, 8, generator=g),
    }
    os.makedirs(d, exist_ok=True)
    save_file(first, os.path.join(d, FILES[0]))
    save_file(second, os.path.join(d, FILES[1]))
    weight_map = {k: FILES[0] for k in first} | {k: FILES[1] for k in second}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return {"tensors": sorted(weight_map)}


def read(d, out, target, dest):
    sd = {}
    for name in FILES:
        with safe_open(os.path.join(d, name), framework="pt") as f:
            for k in f.keys():
                sd[k] = torch.zeros(f.get_slice(k).get_shape(), dtype=getattr(torch, dest))
    reader = QuantizedHuggingFaceStorageReader(d, target_dtype=getattr(torch, target))
    dcp.load(sd, storage_reader=reader, no_dist=True)
    result = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape), "hex": hexof(v)} for k, v in sd.items()}
    with open(out, "w") as f:
        json.dump(result, f)
    return {"tensors": sorted(result)}


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "write":
        print(json.dumps(write(sys.argv[2])))
    elif cmd == "read":
        print(json.dumps(read(*sys.argv[2:6])))
    else:
        raise SystemExit(f"unknown command {cmd}")
