"""boto3 TransferManager peer for dcpjs's S3 benchmarks (Debian's python3-boto3).

usage: boto3_transfer.py upload|download BUCKET PREFIX OBJECTS MIB_PER_OBJECT PART_MIB CONCURRENCY
Endpoint and credentials come from S3_ENDPOINT and the AWS_* variables.
Prints one JSON line: {"seconds": <this run>, "bytes": <total>}.
"""
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

mode, bucket, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
objects, mib, part_mib, concurrency = (int(x) for x in sys.argv[4:8])
client = boto3.client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT"],
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    config=Config(max_pool_connections=concurrency * 2, s3={"addressing_style": "path"}),
)
config = TransferConfig(multipart_threshold=part_mib << 20, multipart_chunksize=part_mib << 20, max_concurrency=concurrency)
size = mib << 20
keys = [f"{prefix}/boto3_{i}.bin" for i in range(objects)]

if mode == "upload":
    payloads = [os.urandom(size) for _ in keys]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(objects) as pool:
        list(pool.map(lambda kp: client.upload_fileobj(io.BytesIO(kp[1]), bucket, kp[0], Config=config), zip(keys, payloads)))
else:
    buffers = [io.BytesIO() for _ in keys]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(objects) as pool:
        list(pool.map(lambda kb: client.download_fileobj(bucket, kb[0], kb[1], Config=config), zip(keys, buffers)))
    assert all(b.getbuffer().nbytes == size for b in buffers)
print(json.dumps({"seconds": time.perf_counter() - t0, "bytes": objects * size}))
