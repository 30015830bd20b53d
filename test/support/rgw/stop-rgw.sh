#!/usr/bin/env bash
# Stops the cluster started by start-rgw.sh STATE_DIR: only the PIDs in its PID files, then
# removes STATE_DIR (set KEEP_STATE=1 to keep its logs).
set -uo pipefail
STATE=${1:?usage: stop-rgw.sh STATE_DIR}
live() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$s" ] && [ "$s" != Z ]; }
for name in ceph-client.rgw.a ceph-osd.0 ceph-mon.a; do
  pf=$STATE/run/$name.pid
  [ -f "$pf" ] || continue
  pid=$(cat "$pf")
  if live "$pid"; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 100); do live "$pid" || break; sleep 0.1; done
    live "$pid" && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$pf"
done
[ "${KEEP_STATE:-0}" = 1 ] || rm -rf "$STATE"
