"""PyTorch DCP peer for dcpjs's local benchmarks: torch 2.13 (the cached venv) or Debian's 1.13.

usage: torch_dcp.py save|load DIR COUNT MIB [cold|warm] [THREADS]
       torch_dcp.py save|load DIR SHAPES.json 0 [cold|warm] [THREADS]
(COUNT float32 tensors of MIB MiB each, or float32 tensors of the shapes a JSON list gives.)
Prints one JSON line: {"seconds": <this run>, "prep": <script start -> run start>, "cpu": <CPU
seconds of the run>, "bytes": <state dict bytes>, "torch": <version>}.
"""
import copy
import dataclasses
import json
import os
import shutil
import sys
import time

SCRIPT_START = time.perf_counter()

if sys.executable.startswith("/usr/bin/"):
    # Debian's torch 1.13: its sharded_tensor/metadata.py gives a dataclass field an unhashable
    # default, which Python 3.11 rejects; turn such defaults into default_factory before torch
    # imports it (the fix upstream made in 2.0).
    _field = dataclasses.field

    def _patched_field(*args, **kwargs):
        default = kwargs.get("default", dataclasses.MISSING)
        if default is not dataclasses.MISSING and type(default).__hash__ is None:
            kwargs.pop("default")
            kwargs["default_factory"] = lambda d=default: copy.deepcopy(d)
        return _field(*args, **kwargs)

    dataclasses.field = _patched_field
import torch  # noqa: E402

MODERN = not torch.__version__.startswith("1.")
if MODERN:
    import torch.distributed.checkpoint as dcp  # noqa: E402
else:
    import torch.distributed._shard.checkpoint as dcp  # noqa: E402

mode, path = sys.argv[1], sys.argv[2]
shapes = None
if sys.argv[3].endswith(".json"):
    with open(sys.argv[3]) as f:
        shapes = json.load(f)
    count, mib = len(shapes), 0
else:
    count, mib = int(sys.argv[3]), int(sys.argv[4])
cold = len(sys.argv) > 5 and sys.argv[5] == "cold"
threads = int(sys.argv[6]) if len(sys.argv) > 6 else 1
rows = mib * 1024 * 1024 // 4 // 1024


def state(fill):
    if shapes is not None:
        return {f"t{i}": (torch.rand(s) if fill else torch.zeros(s)) for i, s in enumerate(shapes)}
    return {f"w{i}": (torch.rand(rows, 1024) if fill else torch.zeros(rows, 1024)) for i in range(count)}


if mode == "save":
    sd = state(True)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    cpu0, t0 = time.process_time(), time.perf_counter()
    if MODERN:
        dcp.save(sd, storage_writer=dcp.FileSystemWriter(path, thread_count=threads, sync_files=True), no_dist=True)
    else:
        dcp.save_state_dict(sd, dcp.FileSystemWriter(path, single_file_per_rank=True, sync_files=True), no_dist=True)
    seconds = time.perf_counter() - t0
else:
    sd = state(False)
    if cold:
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3")
        except OSError:
            for name in os.listdir(path):
                fd = os.open(os.path.join(path, name), os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
    cpu0, t0 = time.process_time(), time.perf_counter()
    if MODERN:
        dcp.load(sd, storage_reader=dcp.FileSystemReader(path), no_dist=True)
    else:
        dcp.load_state_dict(sd, dcp.FileSystemReader(path), no_dist=True)
    seconds = time.perf_counter() - t0
cpu = time.process_time() - cpu0
nbytes = sum(t.numel() * 4 for t in sd.values())
print(
    json.dumps(
        {"seconds": seconds, "prep": t0 - SCRIPT_START, "cpu": cpu, "bytes": nbytes, "torch": torch.__version__}
    )
)
