"""torch 1.13 (Debian's python3-torch, run with /usr/bin/python3.11) as a peer of dcpjs's reader.

  save DIR   save_state_dict (single file per rank) of flat tensors of every dtype (complex64 and
             complex128 among them), a transposed view,
             0-d and empty tensors, values, and a nested dict holding a tensor (1.13 pickles it as ONE
             bytes item); writes DIR/../expected-113.json. Prints one JSON line.

Debian's 1.13 cannot import torch.distributed._shard on Python 3.11 as shipped (a dataclass field
with a mutable default); the import hook below applies upstream's 2.0 fix (default_factory) when
that one module loads. It changes no checkpoint code and no format.
"""
import importlib.abc
import importlib.util
import json
import os
import sys

NAME = "torch.distributed._shard.sharded_tensor.metadata"


class _Fix(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name != NAME:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                self.origin = spec.origin
                return importlib.util.spec_from_file_location(name, spec.origin, loader=self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        src = open(self.origin).read().replace("field(default=TensorProperties())", "field(default_factory=TensorProperties)")
        exec(compile(src, self.origin, "exec"), module.__dict__)


sys.meta_path.insert(0, _Fix())

import torch  # noqa: E402
from torch.distributed._shard import checkpoint as dcp  # noqa: E402


def hexof(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def main():
    d = sys.argv[2]
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(13)
    base = torch.randn(4, 6, generator=g)
    sd = {
        "f64": torch.randn(3, generator=g).double(),
        "f32": torch.randn(2, 5, generator=g),
        "f16": torch.tensor([0.5, float("inf")]).half(),
        "bf16": torch.tensor([1.25, -0.0]).bfloat16(),
        "i64": torch.tensor([-(2**63), 2**63 - 1]),
        "i32": torch.tensor([1, -2, 3], dtype=torch.int32),
        "i16": torch.tensor([7], dtype=torch.int16),
        "i8": torch.tensor([-8], dtype=torch.int8),
        "u8": torch.tensor([200], dtype=torch.uint8),
        "b": torch.tensor([True, False]),
        "scalar": torch.tensor(3.0),
        "empty": torch.zeros(0, 2),
        "transposed": base.t(),
        "c64": torch.complex(torch.randn(5, generator=g), torch.tensor([0.0, -0.0, float("inf"), float("nan"), 1e-45])),
        "c128": torch.randn(2, 3, generator=g, dtype=torch.complex128),
        "step": 42,
        "name": "torch 1.13",
        "nested": {"lr": 0.5, "w": torch.arange(4, dtype=torch.float32)},
    }
    dcp.save_state_dict(sd, dcp.FileSystemWriter(d, single_file_per_rank=True), no_dist=True)
    out = {}
    for k, v in sd.items():
        if isinstance(v, torch.Tensor):
            out[k] = {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape), "hex": hexof(v)}
        elif isinstance(v, dict):
            out[k] = {"nested": {"lr": v["lr"], "w": hexof(v["w"])}}
        else:
            out[k] = {"value": v}
    json.dump(out, open(os.path.join(d, "..", "expected-113.json"), "w"))
    print(json.dumps({"ok": True, "version": torch.__version__, "files": sorted(os.listdir(d))}))


if __name__ == "__main__":
    main()
