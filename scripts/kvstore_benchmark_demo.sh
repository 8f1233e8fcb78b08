#!/usr/bin/env bash
# kvstore under load (issue 3 foundation demo): start
# the kvstore enclave app on the EMULATED SGX platform, drive it with an unmodified
# redis-benchmark, and print what the enclave holds.

set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build}
BIN="$BUILD/bin"
PORT=${PORT:-6390}
REQUESTS=${REQUESTS:-200000}

[ -x "$BIN/constmig" ] || { echo "demo: $BIN/constmig missing: run scripts/setup.sh first" >&2; exit 1; }

echo "== constmig demo: kvstore in an emulated SGX enclave =="
"$BIN/constmig" platform
"$BIN/constmig" run --app kvstore --port "$PORT" --max-memory 1G --stats-interval 0 > /tmp/constmig-demo.$$.json &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  redis-cli -p "$PORT" PING >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$PORT" PING >/dev/null || { echo "demo: kvstore did not start" >&2; exit 1; }

echo "== redis-benchmark -c 50 -P 16 -t ping,set,get,incr -n $REQUESTS -r 100000 =="
redis-benchmark -p "$PORT" -c 50 -P 16 -t ping,set,get,incr -n "$REQUESTS" -r 100000 -q
echo "== what the enclave holds =="
echo "DBSIZE: $(redis-cli -p "$PORT" DBSIZE)"
redis-cli -p "$PORT" INFO memory | tr -d '\r' | grep -E 'used_memory:|maxmemory:' || true
kill -INT $PID
wait $PID || true
trap - EXIT
echo "== constmig run stats =="
cat /tmp/constmig-demo.$$.json
rm -f /tmp/constmig-demo.$$.json
