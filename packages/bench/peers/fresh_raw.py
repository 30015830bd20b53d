"""Raw Python peer of the fresh-process rows (packages/bench/src/fresh-process.ts starts it).

usage: fresh_raw.py SPEC.json
SPEC: {"mode": "save" | "load", "alloc": "numpy" | "bytearray",
       "files": [{"path": ..., "sizes": [bytes, ...]}, ...]}
Each file one sequential stream on its own thread (the GIL is released in readinto / write), each
size its own buffer: `load` reads into fresh buffers with `readinto`; `save` writes filled ones and
fsyncs. Fresh memory: `numpy.empty` leaves its pages untouched until the read writes them, as a
fresh `SharedArrayBuffer` does; `bytearray(n)` zero-fills them before the span, as `torch.zeros`.
Prints one JSON line: {"seconds": the span, "prep": script start -> span start, "cpu": CPU seconds
of the span}.
"""
import json
import os
import sys
import threading
import time

script_start = time.perf_counter()
import numpy as np  # noqa: E402

with open(sys.argv[1]) as f:
    spec = json.load(f)


def fresh(n):
    if spec["alloc"] == "bytearray":
        return memoryview(bytearray(n))
    return memoryview(np.empty(n, dtype=np.uint8))


buffers = [[fresh(n) for n in f["sizes"]] for f in spec["files"]]
if spec["mode"] == "save":
    block = np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    for bufs in buffers:
        for b in bufs:
            for at in range(0, len(b), len(block)):
                end = min(len(b), at + len(block))
                b[at:end] = block[: end - at]
    for f in spec["files"]:
        if os.path.exists(f["path"]):
            os.remove(f["path"])


errors = []


def stream(i):
    try:
        move(i)
    except BaseException as e:  # noqa: BLE001 - re-raised on the main thread
        errors.append(e)


def move(i):
    path = spec["files"][i]["path"]
    if spec["mode"] == "save":
        with open(path, "wb", buffering=0) as fh:
            for b in buffers[i]:
                done = 0
                while done < len(b):
                    done += fh.write(b[done:])
            os.fsync(fh.fileno())
    else:
        with open(path, "rb", buffering=0) as fh:
            for b in buffers[i]:
                done = 0
                while done < len(b):
                    n = fh.readinto(b[done:])
                    if not n:
                        raise EOFError(f"Expected {len(b)} bytes in {path}, got {done}")
                    done += n


threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(buffers))]
cpu0 = time.process_time()
t0 = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
seconds = time.perf_counter() - t0
if errors:
    raise errors[0]
cpu = time.process_time() - cpu0
print(json.dumps({"seconds": seconds, "prep": t0 - script_start, "cpu": cpu}))
