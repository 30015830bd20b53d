#!/usr/bin/env bash
# Makes sure a Python venv with torch 2.13 (CPU), safetensors, numpy and zstandard exists, and prints its
# folder. The machine's pip configuration points at a local wheel folder, so this needs no network
# (about 50 s the first time, ~1 GB). Concurrent callers wait for one another (flock).
#
#   test/support/python/ensure-torch-venv.sh [DIR]   # default: $DCPJS_TORCH_VENV or ~/.cache/dcpjs/torch-2.13-venv
set -euo pipefail
DIR=${1:-${DCPJS_TORCH_VENV:-$HOME/.cache/dcpjs/torch-2.13-venv}}
mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9
ok() { "$DIR/bin/python" -c 'import torch, safetensors, numpy, zstandard; assert torch.__version__.startswith("2.13"), torch.__version__' 2>/dev/null; }
if ! ok; then
  echo "[torch] installing torch 2.13 (cpu), safetensors and numpy into $DIR" >&2
  rm -rf "$DIR"
  python3 -m venv "$DIR"
  args=()
  # The local index lists every wheel; using it alone avoids waiting on an unreachable PyPI.
  if [ -d /opt/pypi/simple ]; then args=(--index-url file:///opt/pypi/simple); fi
  "$DIR/bin/python" -m pip install -q "${args[@]}" "torch==2.13.0+cpu" safetensors numpy zstandard >&2
  ok
fi
echo "$DIR"
