"""PyTorch DCP's own planner functions on a simulated world, for dcpjs's `pnpm bench scale`.

usage: scale_torch.py fsdp|replicated RANKS TENSORS
Builds every rank's SavePlan of WriteItems (no tensors, no process group) in the layout dcpjs's
scale bench uses (FSDP: every tensor [RANKS*2, 64] float32 sharded along dim 0, 2 rows per rank;
replicated: every rank holds every [64, 64] tensor whole), then times the coordinator's
functions: dedup_save_plans, create_default_global_save_plan, _validate_global_plan; pickles the
gathered plans (what gather_object sends) and the Metadata (what .metadata holds); and one rank's
load plan (create_read_items_for_chunk_list per tensor for FSDP, create_default_local_load_plan on
meta tensors for replicated). Prints one JSON line of CPU seconds (time.process_time) and bytes.
"""
import json
import pickle
import resource
import sys
import time

import torch
from torch.distributed.checkpoint._dedup_save_plans import dedup_save_plans
from torch.distributed.checkpoint.default_planner import (
    _validate_global_plan,
    create_default_global_save_plan,
    create_default_local_load_plan,
)
from torch.distributed.checkpoint.metadata import (
    ChunkStorageMetadata,
    MetadataIndex,
    TensorProperties,
)
from torch.distributed.checkpoint.planner import SavePlan, WriteItem, WriteItemType
from torch.distributed.checkpoint.planner import TensorWriteData
from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list
from torch.distributed.checkpoint.filesystem import _StorageInfo

layout, ranks, tensors = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
COLS, ROWS_PER_RANK, REPLICATED_ROWS = 64, 2, 64
props = TensorProperties(dtype=torch.float32)


def fqn(t):
    return f"model.layers.{t}.mlp.weight"


def local_plan(rank):
    items = []
    if layout == "fsdp":
        size = torch.Size([ranks * ROWS_PER_RANK, COLS])
        offsets = torch.Size([rank * ROWS_PER_RANK, 0])
        sizes = torch.Size([ROWS_PER_RANK, COLS])
        kind = WriteItemType.SHARD
    else:
        size = torch.Size([REPLICATED_ROWS, COLS])
        offsets = torch.Size([0, 0])
        sizes = size
        kind = WriteItemType.TENSOR
    for t in range(tensors):
        items.append(
            WriteItem(
                index=MetadataIndex(fqn(t), offsets),
                type=kind,
                tensor_data=TensorWriteData(
                    chunk=ChunkStorageMetadata(offsets=offsets, sizes=sizes), properties=props, size=size
                ),
            )
        )
    return SavePlan(items)


out = {"layout": layout, "ranks": ranks, "tensors": tensors, "torch": torch.__version__}
t0 = time.process_time()
plans = [local_plan(r) for r in range(ranks)]
out["localPlanS"] = time.process_time() - t0
out["items"] = sum(len(p.items) for p in plans)

t0 = time.process_time()
payloads = [pickle.dumps(p) for p in plans]
out["gatherEncodeS"] = time.process_time() - t0
out["gatherBytes"] = sum(len(b) for b in payloads)
t0 = time.process_time()
plans = [pickle.loads(b) for b in payloads]
out["gatherDecodeS"] = time.process_time() - t0
del payloads

t0 = time.process_time()
deduped = dedup_save_plans(plans)
out["dedupS"] = time.process_time() - t0
t0 = time.process_time()
global_plans, metadata = create_default_global_save_plan(deduped)
out["globalS"] = time.process_time() - t0
t0 = time.process_time()
errors = _validate_global_plan(global_plans, metadata)
out["validateS"] = time.process_time() - t0
if errors:
    raise SystemExit(f"invalid plan: {errors[:3]}")
out["chunks"] = sum(len(m.chunks) for m in metadata.state_dict_metadata.values())

# What FileSystemWriter.finish pickles into .metadata: one _StorageInfo per item.
storage = {}
for rank, plan in enumerate(global_plans):
    offset = 0
    for item in plan.items:
        length = item.tensor_data.chunk.sizes.numel() * 4
        storage[item.index] = _StorageInfo(f"__{rank}_0.distcp", offset, length)
        offset += length
metadata.storage_data = storage
t0 = time.process_time()
blob = pickle.dumps(metadata)
out["encodeS"] = time.process_time() - t0
out["metadataBytes"] = len(blob)
t0 = time.process_time()
decoded = pickle.loads(blob)
out["decodeS"] = time.process_time() - t0


def load_plan(rank):
    t0 = time.process_time()
    if layout == "fsdp":
        local = [
            ChunkStorageMetadata(
                offsets=torch.Size([rank * ROWS_PER_RANK, 0]), sizes=torch.Size([ROWS_PER_RANK, COLS])
            )
        ]
        n = 0
        for t in range(tensors):
            n += len(create_read_items_for_chunk_list(fqn(t), decoded.state_dict_metadata[fqn(t)], local))
    else:
        sd = {fqn(t): torch.empty(REPLICATED_ROWS, COLS, device="meta") for t in range(tensors)}
        n = len(create_default_local_load_plan(sd, decoded).items)
    return time.process_time() - t0, n


out["loadPlanS"], out["loadItems"] = load_plan(min(1, ranks - 1))
out["loadPlanNextS"], _ = load_plan(ranks - 1)
out["peakRssMiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
