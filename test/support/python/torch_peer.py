"""torch 2.13's DCP as a peer of dcpjs's PyTorch-format reader.

  check DIR EXPECTED  load a dcpjs-written torch-format checkpoint with _load_state_dict_from_keys
                      and dcp.load (flat keys) and compare with EXPECTED ({fqn: {dtype, shape, hex}|{value}})
  save DIR MODE     dcp.save a state dict (every dtype, 0-d, empty, NaN/±Inf, int64 extremes,
                    transposed and sliced views, nested values, an Adam optimizer state_dict) with
                    MODE = single | per-item | threads | distributed-2 (2 gloo ranks, DTensor-free
                    ShardedTensor-free: each rank saves row shards as plain chunks via a planner)
                    and write DIR/../expected-<mode>.json: {fqn: {dtype, shape, hex} | {value}}
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


def state():
    g = torch.Generator().manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.randn(16, 4, generator=g)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    base = torch.randn(5, 7, generator=g)
    tensors = {
        "f64": torch.randn(3, 2, generator=g).double(),
        "f32": torch.randn(4, 3, generator=g),
        "f16": torch.tensor([1.5, float("nan"), float("inf"), -float("inf")]).half(),
        "bf16": torch.tensor([2.25, -0.0, float("inf"), float("nan")]).bfloat16(),
        "i64": torch.tensor([-(2**63), 2**63 - 1, 2**53 + 1, 0]),
        "i32": torch.arange(-3, 3, dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(7.5, dtype=torch.float64),
        "empty": torch.zeros(0, 3, dtype=torch.int8),
        "transposed": base.t(),
        "sliced": base[1:4, ::2],
    }
    values = {"step": 100, "big": 2**40, "name": "pytorch ✓", "lr": 0.125, "nothing": None, "flags": [True, False]}
    return {"model": model.state_dict(), "optim": opt.state_dict(), "t": tensors, "v": values}


def expected(sd, prefix=""):
    out = {}
    for k, v in sd.items():
        key = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out[key] = {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape), "hex": hexof(v)}
        elif isinstance(v, dict):
            out.update(expected(v, f"{key}."))
        elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(expected(x, f"{key}.{i}.") if isinstance(x, dict) else {f"{key}.{i}": {"value": x}})
        else:
            out[key] = {"value": v}
    return out


def check(d, expected_file):
    """Load a dcpjs-written torch-format checkpoint with torch's own readers and compare."""
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

    expected = json.load(open(expected_file))
    mismatches = []
    loaded = _load_state_dict_from_keys(checkpoint_id=d)
    flat = expected_flat = {}
    def walk(v, prefix=""):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{prefix}{k}.")
        elif isinstance(v, list) and any(isinstance(x, (dict, torch.Tensor)) for x in v):
            for i, x in enumerate(v):
                walk(x, f"{prefix}{i}.")
        else:
            flat[prefix[:-1]] = v
    walk(loaded)
    for k, e in expected.items():
        got = flat.get(k)
        if "hex" in e:
            if not isinstance(got, torch.Tensor) or hexof(got) != e["hex"] or list(got.shape) != e["shape"]:
                mismatches.append(f"_load_state_dict_from_keys: {k}")
        elif got != e["value"]:
            mismatches.append(f"_load_state_dict_from_keys: {k} = {got!r}")
    dtypes = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
              "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}
    target = {k: torch.zeros(e["shape"], dtype=dtypes[e["dtype"]]) for k, e in expected.items() if "hex" in e}
    dcp.load(target, checkpoint_id=d, no_dist=True)
    for k, t in target.items():
        if hexof(t) != expected[k]["hex"]:
            mismatches.append(f"dcp.load: {k}")
    print(json.dumps({"ok": not mismatches, "mismatches": mismatches}))


def _exit_rank():
    """Ends a spawned rank at once, its work flushed: gloo's C++ teardown at interpreter exit can
    still abort a rank after the barrier ("terminate called without an active exception", seen in
    CI on 2026-11-30), which mp.spawn reports as a failed rank."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_full():
    g = torch.Generator().manual_seed(5)
    return {
        "rows": torch.randn(8, 6, generator=g),
        "cols": torch.randint(-1000, 1000, (4, 10), generator=g),
        "uneven": torch.randn(7, 5, generator=g).bfloat16(),
        "rep": torch.randn(3, generator=g),
        "bias": torch.randn(5, generator=g).double(),
        "step": 77,
    }


def _dist_rank(rank, world, d, port):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    full = _dist_full()
    sd = {
        "rows": distribute_tensor(full["rows"], mesh, [Shard(0)]),
        "cols": distribute_tensor(full["cols"], mesh, [Shard(1)]),
        "uneven": distribute_tensor(full["uneven"], mesh, [Shard(0)]),
        "rep": distribute_tensor(full["rep"], mesh, [Replicate()]),
        "bias": full["bias"],
        "step": full["step"],
    }
    dcp.save(sd, checkpoint_id=d)
    dist.barrier()  # every rank done before any tears gloo down (else a rank may abort at exit)
    dist.destroy_process_group()
    _exit_rank()


def _check_dist_rank(rank, world, d, expected_file, port, out_file):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    expected = json.load(open(expected_file))
    dtypes = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
              "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}
    target = {}
    for k, e in expected.items():
        if "hex" in e and len(e["shape"]) >= 2 and e["shape"][1] >= world:
            target[k] = distribute_tensor(torch.zeros(e["shape"], dtype=dtypes[e["dtype"]]), mesh, [Shard(1)])
    dcp.load(target, checkpoint_id=d)
    mismatches = [k for k, t in target.items() if hexof(t.full_tensor()) != expected[k]["hex"]]
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump({"mismatches": mismatches, "loaded": sorted(target)}, f)
    dist.barrier()  # every rank done before any tears gloo down (else a rank may abort at exit)
    dist.destroy_process_group()
    _exit_rank()


def check_dist(d, expected_file):
    """Load a dcpjs-written torch-format checkpoint with 2 gloo ranks into DTensors sharded by columns."""
    import tempfile
    import torch.multiprocessing as mp
    out_file = os.path.join(tempfile.mkdtemp(), "out.json")
    port = _free_port()
    mp.spawn(_check_dist_rank, args=(2, d, expected_file, port, out_file), nprocs=2, join=True)
    out = json.load(open(out_file))
    print(json.dumps({"ok": not out["mismatches"], **out}))


def main():
    if sys.argv[1] == "check":
        return check(sys.argv[2], sys.argv[3])
    if sys.argv[1] == "check-dist":
        return check_dist(sys.argv[2], sys.argv[3])
    d, mode = sys.argv[2], sys.argv[3]
    sd = state()
    if mode == "single":
        dcp.save(sd, storage_writer=FileSystemWriter(d), no_dist=True)
    elif mode == "per-item":
        dcp.save(sd, storage_writer=FileSystemWriter(d, single_file_per_rank=False), no_dist=True)
    elif mode == "threads":
        dcp.save(sd, storage_writer=FileSystemWriter(d, thread_count=2), no_dist=True)
    elif mode == "zstd":
        from torch.distributed.checkpoint._extension import ZStandard
        dcp.save(sd, storage_writer=FileSystemWriter(d, _extensions=[ZStandard()]), no_dist=True)
    elif mode == "no-collectives":
        dcp.save(sd, checkpoint_id=d, no_dist=True, use_collectives=False)
    elif mode == "distributed":
        import torch.multiprocessing as mp
        port = _free_port()
        mp.spawn(_dist_rank, args=(2, d, port), nprocs=2, join=True)
        full = _dist_full()
        json.dump(expected(full), open(os.path.join(d, "..", "expected-distributed.json"), "w"))
        print(json.dumps({"ok": True, "files": sorted(os.listdir(d))}))
        return
    else:
        raise SystemExit(f"unknown mode {mode}")
    json.dump(expected(sd), open(os.path.join(d, "..", f"expected-{mode}.json"), "w"))
    print(json.dumps({"ok": True, "files": sorted(os.listdir(d))}))


if __name__ == "__main__":
    main()
