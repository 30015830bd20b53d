#!/usr/bin/env bash
# Starts a throw-away single-node Ceph cluster with a RADOS Gateway (a real S3 server) on
# 127.0.0.1 for the test suite, and prints `KEY=VALUE` lines (S3_ENDPOINT, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION, RGW_PIDS) on stdout. Logs go to stderr.
#
#   test/support/rgw/start-rgw.sh STATE_DIR      # STATE_DIR is wiped and recreated
#   test/support/rgw/stop-rgw.sh STATE_DIR       # stops the daemons by their PID files
#
# One ceph-mon (msgr2, auth none), one ceph-osd (memstore: object data in RAM) and radosgw
# (beast), the way Ceph's vstart.sh builds a dev cluster. Installs Debian's ceph packages with
# apt when missing. Measured quirks are in docs/testing.md.
set -euo pipefail

STATE=${1:?usage: start-rgw.sh STATE_DIR}
ACCESS_KEY=${S3_RGW_ACCESS_KEY:-dcpjstestaccesskey}
SECRET_KEY=${S3_RGW_SECRET_KEY:-dcpjstestsecretkey0123456789}
MEM_BYTES=${S3_RGW_MEM_BYTES:-8589934592}
CONF=$STATE/ceph.conf
export CEPH_CONF=$CONF
# Debian's Ceph daemons use glibc malloc; without these, freed object buffers stay in the heap
# and the OSD's RSS only grows over a test run.
export MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072

log() { echo "[start-rgw] $*" >&2; }
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

if ! command -v radosgw >/dev/null || ! command -v ceph-osd >/dev/null || ! command -v ceph-mon >/dev/null; then
  log "installing ceph-mon ceph-osd radosgw ceph-common with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || true
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends ceph-mon ceph-osd radosgw ceph-common >&2
fi

rm -rf "$STATE"
mkdir -p "$STATE"/{run,log,crash,mon.a,osd.0,rgw}
MON_PORT=$(free_port)
RGW_PORT=$(free_port)
FSID=$(cat /proc/sys/kernel/random/uuid)

cat > "$CONF" <<CONF
[global]
        fsid = $FSID
        mon host = [v2:127.0.0.1:$MON_PORT]
        mon initial members = a
        ms bind msgr1 = false
        ms bind msgr2 = true
        ms mon client mode = crc secure
        auth cluster required = none
        auth service required = none
        auth client required = none
        osd pool default size = 1
        osd pool default min size = 1
        mon allow pool size one = true
        mon warn on pool no redundancy = false
        osd pool default pg num = 8
        osd pool default pgp num = 8
        osd pool default pg autoscale mode = off
        mon max pg per osd = 1000
        osd crush chooseleaf type = 0
        osd failsafe full ratio = .99
        mon osd full ratio = .99
        mon osd nearfull ratio = .99
        mon osd backfillfull ratio = .99
        mon data avail crit = 1
        mon data avail warn = 2
        run dir = $STATE/run
        pid file = $STATE/run/\$cluster-\$name.pid
        admin socket = $STATE/run/\$cluster-\$name.asok
        log file = $STATE/log/\$cluster-\$name.log
        crash dir = $STATE/crash
        keyring = $STATE/keyring
        log to stderr = false
        err to stderr = true
[mon]
        mon data = $STATE/mon.\$id
[osd]
        osd data = $STATE/osd.\$id
        public addr = 127.0.0.1
        cluster addr = 127.0.0.1
        osd objectstore = memstore
        memstore device bytes = $MEM_BYTES
        osd class load list = *
        osd class default list = *
        osd fast shutdown = true
[client.rgw.a]
        rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
        rgw data = $STATE/rgw
        rgw thread pool size = 128
        rgw gc obj min wait = 5
        rgw gc processor period = 5
        rgw dns name = 127.0.0.1
CONF

log "mon on port $MON_PORT"
ceph-authtool --create-keyring "$STATE/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$STATE/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
  --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
monmaptool --create --clobber --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$STATE/monmap" >/dev/null
ceph-mon --mkfs -i a -c "$CONF" --monmap "$STATE/monmap" --keyring "$STATE/keyring" 2>>"$STATE/log/setup.err"
ceph-mon -i a -c "$CONF"

log "osd (memstore)"
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(timeout 60 ceph -c "$CONF" osd new "$OSD_UUID" 2>>"$STATE/log/setup.err")
[ "$OSD_ID" = 0 ] || { log "unexpected osd id '$OSD_ID'"; exit 1; }
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" 2>>"$STATE/log/setup.err"
ceph-osd -c "$CONF" -i 0
for _ in $(seq 1 120); do
  timeout 10 ceph -c "$CONF" osd dump 2>/dev/null | grep -q '^osd.0 up' && break
  sleep 0.5
done
timeout 10 ceph -c "$CONF" osd dump | grep -q '^osd.0 up' || { log "osd.0 did not come up"; exit 1; }

log "rgw on port $RGW_PORT"
timeout 120 radosgw-admin -c "$CONF" user create --uid=dcpjs --display-name=dcpjs \
  --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >"$STATE/log/user.json" 2>>"$STATE/log/setup.err"
radosgw -c "$CONF" -n client.rgw.a
for _ in $(seq 1 240); do
  curl -fs -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break
  sleep 0.25
done
curl -fsS -o /dev/null "http://127.0.0.1:$RGW_PORT/" || { log "rgw did not answer on port $RGW_PORT"; exit 1; }
log "ready: http://127.0.0.1:$RGW_PORT"

echo "S3_ENDPOINT=http://127.0.0.1:$RGW_PORT"
echo "AWS_ACCESS_KEY_ID=$ACCESS_KEY"
echo "AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
echo "AWS_REGION=us-east-1"
echo "RGW_PIDS=$(cat "$STATE"/run/ceph-client.rgw.a.pid) $(cat "$STATE"/run/ceph-osd.0.pid) $(cat "$STATE"/run/ceph-mon.a.pid)"
