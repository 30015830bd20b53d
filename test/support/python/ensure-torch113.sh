#!/usr/bin/env bash
# Makes sure Debian's torch 1.13 (python3-torch) is installed for /usr/bin/python3.11, and prints
# that python. Installs it with apt when missing (about 850 MB). Concurrent callers wait (flock).
set -euo pipefail
exec 9>/tmp/dcpjs-torch113.lock
flock 9
PY=/usr/bin/python3.11
if ! "$PY" -c 'import torch; assert torch.__version__.startswith("1.13")' 2>/dev/null; then
  echo "[torch 1.13] installing Debian's python3-torch with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || true
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-torch >&2
fi
echo "$PY"
