"""torch 2.13 and safetensors 0.8 as peers of dcpjs's dtypes: the golden round-trip table.

  torch-save DIR            dcp.save one tensor of every dtype torch's DCP saves (random bit patterns:
                            NaN payloads, ±Inf, subnormals, -0 among them), strided and offset views of
                            the types torch pickles with _rebuild_tensor_v3; DIR/../expected-dtypes.json
  torch-check DIR EXPECTED  dcp.load a (dcpjs-written) checkpoint into zeros of each dtype and shape,
                            and _load_state_dict_from_keys it; compare with EXPECTED bit for bit
  st-save DIR               safetensors.torch.save_file of every dtype torch can give safetensors, and a
                            hand-written file of the FP6 types (F6_E2M3, F6_E3M2: the library reads
                            them but writes none); DIR/expected.json {name: {dtype, shape, hex}} as the
                            file says (safetensors names, value-counting shapes)
  torch-unknown DIR         dcp.save {a, b, c, q, step} with q a quantized qint8 tensor, then rewrite
                            .metadata as if b were torch.quint8 and c torch.bits8 (dtypes dcpjs cannot
                            hold; torch's DCP cannot save those plain, so the pickle is edited); checks
                            that torch's dcp.load of {a} still works; DIR/../expected-unknown.json, and
                            DIR/../q.pt (torch.save of q)
  st-check DIR EXPECTED     every *.safetensors in DIR through safetensors.deserialize (the Rust
                            library's own validation, every dtype) and, where safetensors.torch maps
                            the dtype, load_file; compare with EXPECTED
Prints one JSON line.
"""
import glob
import json
import os
import struct
import sys

import safetensors
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

# Every dtype torch 2.13's DCP saves for a plain CPU tensor (bits*, int1-7/uint1-7 and the
# quantized types fail inside dcp.save itself).
TORCH_DTYPES = [
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "uint16", "uint32", "uint64", "complex32", "complex64", "complex128",
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
]
# The torch dtypes safetensors.torch.save_file writes, by their safetensors names.
SAFETENSORS = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "uint16": "U16", "uint32": "U32",
    "uint64": "U64", "complex64": "C64", "float8_e4m3fn": "F8_E4M3", "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2": "F8_E5M2", "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0",
    "float4_e2m1fn_x2": "F4",
}


def hexof(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def random_tensor(name, shape, g):
    dt = getattr(torch, name)
    if dt == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    n = 1
    for s in shape:
        n *= s
    raw = torch.randint(0, 256, (n * dt.itemsize,), dtype=torch.uint8, generator=g)
    t = raw.view(dt).reshape(shape)
    # A few fixed specials where the type has them: -0, +Inf, NaN as torch makes them.
    if dt.is_floating_point and dt.itemsize >= 2:
        t.view(-1)[:3] = torch.tensor([-0.0, float("inf"), float("nan")]).to(dt)
    return t


def describe(sd):
    return {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape), "hex": hexof(v)} for k, v in sd.items()}


def torch_state():
    g = torch.Generator().manual_seed(24)
    sd = {f"t.{name}": random_tensor(name, (3, 4), g) for name in TORCH_DTYPES}
    # _rebuild_tensor_v3 views: a transpose (strided gather) and a slice (storage offset in elements).
    sd["view.uint16.t"] = random_tensor("uint16", (4, 5), g).t()
    sd["view.float8_e5m2.sliced"] = random_tensor("float8_e5m2", (6, 4), g)[2:5]
    sd["view.complex64.t"] = random_tensor("complex64", (2, 3), g).t()
    sd["scalar.uint64"] = torch.tensor(2**64 - 1, dtype=torch.uint64)
    sd["empty.complex128"] = torch.zeros(0, 3, dtype=torch.complex128)
    return sd


def torch_check(d, expected_file):
    expected = json.load(open(expected_file))
    target = {k: torch.zeros(v["shape"], dtype=getattr(torch, v["dtype"])) for k, v in expected.items()}
    dcp.load(target, checkpoint_id=d, no_dist=True)
    got = describe(target)
    mismatches = [f"dcp.load: {k}" for k, v in expected.items() if got.get(k) != v]
    keys = describe(_load_state_dict_from_keys(checkpoint_id=d))
    mismatches += [f"_load_state_dict_from_keys: {k}" for k, v in expected.items() if keys.get(k) != v]
    return {"ok": not mismatches, "mismatches": mismatches, "checked": len(expected)}


def write_fp6(path, g):
    """A safetensors file of FP6 tensors, written by hand (safetensors 0.8 reads F6 but cannot write it)."""
    specs = [("f6.e2m3", "F6_E2M3", [2, 8]), ("f6.e3m2", "F6_E3M2", [3, 4]), ("f6.e2m3.row", "F6_E2M3", [4])]
    header, data, out = {}, b"", {}
    for name, dtype, shape in specs:
        n = 1
        for s in shape:
            n *= s
        raw = torch.randint(0, 256, (n * 6 // 8,), dtype=torch.uint8, generator=g).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        out[name] = {"dtype": dtype, "shape": shape, "hex": raw.hex()}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    # The library's own parser accepts it (sizes, offsets, byte boundaries).
    safetensors.deserialize(open(path, "rb").read())
    return out


NOT_IN_LOAD_FILE = ("F8_E8M0", "F4", "F6_E2M3", "F6_E3M2")


def st_save(d):
    g = torch.Generator().manual_seed(80)
    sd = {f"t.{name}": random_tensor(name, (3, 4), g) for name in SAFETENSORS}
    # load_file refuses a whole file holding F8_E8M0 or F4 (its _TYPES lacks them): those two go in
    # a folder of their own, so that load_file checks every other dtype.
    groups = {"torch": {k: v for k, v in sd.items() if SAFETENSORS[k[2:]] not in NOT_IN_LOAD_FILE},
              "packed": {k: v for k, v in sd.items() if SAFETENSORS[k[2:]] in NOT_IN_LOAD_FILE}}
    for group, tensors in groups.items():
        os.makedirs(os.path.join(d, group), exist_ok=True)
        path = os.path.join(d, group, "model.safetensors")
        save_file(tensors, path, metadata={"format": "pt"})
        expected = {}
        for name, info in safetensors.deserialize(open(path, "rb").read()):
            expected[name] = {"dtype": info["dtype"], "shape": list(info["shape"]), "hex": bytes(info["data"]).hex()}
        json.dump(expected, open(os.path.join(d, group, "expected.json"), "w"))
    os.makedirs(os.path.join(d, "fp6"), exist_ok=True)
    json.dump(write_fp6(os.path.join(d, "fp6", "model.safetensors"), g), open(os.path.join(d, "fp6", "expected.json"), "w"))
    return {"ok": True, "groups": {k: len(v) for k, v in groups.items()}}


def st_check(d, expected_file):
    expected = json.load(open(expected_file))
    got, torch_got = {}, {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        data = open(f, "rb").read()
        for name, info in safetensors.deserialize(data):
            got[name] = {"dtype": info["dtype"], "shape": list(info["shape"]), "hex": bytes(info["data"]).hex()}
        # safetensors.torch.load_file maps all but F8_E8M0, F4 and F6 (KeyError in its _TYPES).
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8 : 8 + n])
        if all(v["dtype"] not in NOT_IN_LOAD_FILE for k, v in header.items() if k != "__metadata__"):
            torch_got.update(describe(load_file(f)))
    mismatches = [f"deserialize: {k}" for k, v in expected.items() if got.get(k) != v]
    checked_torch = 0
    for k, v in expected.items():
        if k in torch_got:
            checked_torch += 1
            if torch_got[k]["hex"] != v["hex"] or SAFETENSORS.get(torch_got[k]["dtype"]) != v["dtype"]:
                mismatches.append(f"load_file: {k}")
    return {"ok": not mismatches, "mismatches": mismatches, "checked": len(got), "load_file": checked_torch}


def torch_unknown(d):
    import pickle

    g = torch.Generator().manual_seed(5)
    sd = {"a": torch.randn(3, 4, generator=g), "b": torch.arange(6, dtype=torch.uint8).reshape(2, 3),
          "c": torch.arange(4, dtype=torch.uint8), "step": 7,
          "q": torch.quantize_per_tensor(torch.randn(4, generator=g), 0.1, 0, torch.qint8)}
    dcp.save(sd, checkpoint_id=d, no_dist=True)
    path = os.path.join(d, ".metadata")
    md = pickle.load(open(path, "rb"))
    md.state_dict_metadata["b"].properties.dtype = torch.quint8
    md.state_dict_metadata["c"].properties.dtype = torch.bits8
    pickle.dump(md, open(path, "wb"))
    target = {"a": torch.zeros(3, 4)}
    dcp.load(target, checkpoint_id=d, no_dist=True)
    assert torch.equal(target["a"], sd["a"])
    json.dump({"a": describe({"a": sd["a"]})["a"]}, open(os.path.join(d, "..", "expected-unknown.json"), "w"))
    torch.save(sd["q"], os.path.join(d, "..", "q.pt"))
    return {"ok": True, "torch_loads_a": True}


def main():
    cmd, d = sys.argv[1], sys.argv[2]
    if cmd == "torch-save":
        sd = torch_state()
        dcp.save(sd, checkpoint_id=d, no_dist=True)
        json.dump(describe(sd), open(os.path.join(d, "..", "expected-dtypes.json"), "w"))
        out = {"ok": True, "version": torch.__version__}
    elif cmd == "torch-check":
        out = torch_check(d, sys.argv[3])
    elif cmd == "torch-unknown":
        out = torch_unknown(d)
    elif cmd == "st-save":
        out = st_save(d)
    elif cmd == "st-check":
        out = st_check(d, sys.argv[3])
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
