#!/usr/bin/env bash
# The README's demo: a LIVE SERVICE moves between two hosts. A kvstore enclave app holding
# >= 1 GiB runs on host A (network namespace cmdemo-a) while a client keeps writing; constmig
# migrates it to host B (cmdemo-b) and prints the migration stats; the client follows the
# service to B and checks that no acknowledged write was lost.
# EMULATED SGX platform (docs/security.md). Needs root for the namespaces; falls back to
# loopback (saying so) where it cannot create them.
# Default: live (ConstMig) migration with the fault tracker; the target serves after the small
# state and fetches the heap behind the app's back.
#   DATA_MIB=1100 MODE=constmig TRACKER=fault scripts/demo.sh     (the default)
#   MODE=stop-and-copy scripts/demo.sh                            (the MigSGX-style baseline)
#   TRACKER=uffd scripts/demo.sh                                  (userfaultfd tracker)
#   TRACKER=access scripts/demo.sh                                (Access Tracker: compiled-in checks)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build}
BIN="$(pwd)/$BUILD/bin"
DATA_MIB=${DATA_MIB:-1100}
MODE=${MODE:-constmig}
TRACKER=${TRACKER:-fault}
[ -x "$BIN/constmig" ] || { echo "demo: $BIN/constmig missing: run scripts/setup.sh first" >&2; exit 1; }

D=$(mktemp -d /tmp/constmig-demo.XXXXXX)
PIDS=()
NETNS=0
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ "$NETNS" = 1 ] && scripts/netns-hosts.sh down --prefix cmdemo >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT

if scripts/netns-hosts.sh up --prefix cmdemo >/dev/null 2>"$D/netns.err"; then
  NETNS=1; A=10.77.0.1; B=10.77.0.2; PA=6390; PB=6390
  INA=(ip netns exec cmdemo-a); INB=(ip netns exec cmdemo-b)
  echo "== two hosts: network namespaces cmdemo-a ($A) and cmdemo-b ($B) joined by veth"
else
  A=127.0.0.1; B=127.0.0.1; PA=6390; PB=6391; INA=(); INB=()
  echo "== two hosts: LOOPBACK fallback ($(head -c 200 "$D/netns.err"))"
fi

# Two platforms, each with its own key, each trusting the other (like two machines).
for h in a b; do
  mkdir -p "$D/$h/trust"
  "$BIN/constmig" --state-dir "$D/$h" platform --export-key > "$D/$h.pem"
done
for h in a b; do cp "$D/a.pem" "$D/b.pem" "$D/$h/trust/"; done

echo "== host A: constmig run --app kvstore (enclave heap limit 2G)"
"${INA[@]}" "$BIN/constmig" --state-dir "$D/a" run --app kvstore --bind "$A" --port "$PA" \
  --max-memory 2G --control "$D/a.ctl" --stats-interval 0 > "$D/source.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -S "$D/a.ctl" ] && break; sleep 0.1; done
[ -S "$D/a.ctl" ] || { cat "$D/source.log"; exit 1; }
head -4 "$D/source.log"

KEYS=$((DATA_MIB * 1024 * 1024 / 4096))
echo "== filling the enclave store: $KEYS keys x 4000 B (~${DATA_MIB} MiB) with DEBUG POPULATE"
for ((first = 0; first < KEYS; first += 50000)); do
  n=$((KEYS - first < 50000 ? KEYS - first : 50000))
  r=$("${INA[@]}" redis-cli -h "$A" -p "$PA" DEBUG POPULATE "$n" "data$first" 4000)
  [ "$r" = OK ] || { echo "populate failed: $r"; exit 1; }
done
"$BIN/constmig" status --control "$D/a.ctl" | python3 -c 'import json,sys; h=json.load(sys.stdin)["heap"]; print("   enclave heap in use: %.0f MiB" % (h["in_use"] / 2**20))'

echo "== host B: constmig receive (same image, waits for the state)"
"${INB[@]}" "$BIN/constmig" --state-dir "$D/b" receive --app kvstore --bind "$B" --port "$PB" \
  --max-memory 2G --listen "$B:7000" --control "$D/b.ctl" --stats-interval 0 > "$D/target.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "waiting for an incoming" "$D/target.log" && break; sleep 0.1; done

echo "== a client writes continuously (4 connections)"
"${INA[@]}" scripts/demo_client.py --source "$A:$PA" --target "$B:$PB" --stop-file "$D/stop" > "$D/client.json" &
CLIENT=$!
sleep 1

echo "== constmig migrate --mode $MODE --tracker $TRACKER --to $B:7000"
"$BIN/constmig" migrate --control "$D/a.ctl" --to "$B:7000" --mode "$MODE" --tracker "$TRACKER" \
  > "$D/stats.json"
sleep 1
touch "$D/stop"
wait $CLIENT
python3 - "$D/stats.json" "$D/client.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2]))
mb = s["heap-bytes"] / 2**20
t = s.get("target", {})
live = s["mode"] == "constmig"
print(f"""== migration stats (QMP names)
   status           {s['status']} ({s['mode']}{', tracker ' + s.get('tracker', '') if live else ''})
   heap moved       {mb:.0f} MiB: {s['pages-pushed']} pages streamed, {s.get('postcopy-pages', 0)} sent on demand ({s['zero-pages']} zero pages sent as flags)
   setup-time       {s['setup-time']:.0f} ms   (handshake + attestation + target heap populated; app still running)
   downtime         {s.get('downtime', float('nan')):.1f} ms   (first ECALL held on A -> first ECALL served on B)
   total-time       {s['total-time']:.0f} ms
   transferred      {s['transferred'] / 2**20:.0f} MiB, heap stream {s.get('throughput-mbps', 0):.0f} MiB/s""")
if live:
    print(f"""   population-time  {t.get('population-time', 0):.0f} ms   (target resumed -> every page in; the app ran meanwhile)
   postcopy-requests {t.get('postcopy-requests', 0)} (faults {t.get('faults', 0)}), fault latency p50 {t.get('fault-latency-p50-us', 0):.0f} us, p99 {t.get('fault-latency-p99-us', 0):.0f} us
   postcopy-blocktime {t.get('postcopy-blocktime', 0):.0f} ms (sum over blocked threads)""")
print(f"""
== client
   acknowledged keys {c['acknowledged_keys']}, writes lost: {c['writes_lost']}, client-gap {c['client-gap-ms']} ms""")
sys.exit(0 if s['status'] == 'completed' and c['writes_lost'] == 0 else 1)
PY
echo "== DBSIZE on host B: $("${INB[@]}" redis-cli -h "$B" -p "$PB" DBSIZE)"
