#!/usr/bin/env bash
# Two hosts on one box (scripts/netns-hosts.sh, scripts/netns-exec.sh): bring them up (twice:
# idempotent), check the addresses exist only inside the namespaces, pass a TCP message from
# host a (10.77.0.1) to a server on host b (10.77.0.2) and back, check the loopback fallback,
# tear down (twice). Exit 77 (ctest SKIP) where network namespaces are unavailable.
#   tests/netns/netns_test.sh [SCRIPTS_DIR]
set -uo pipefail

scripts=${1:-$(cd "$(dirname "$0")/../../scripts" && pwd)}
hosts=$scripts/netns-hosts.sh
run=$scripts/netns-exec.sh
# A prefix of our own, so a developer's running "cmtest" pair is never touched.
prefix=cmt$(( ($$ + RANDOM) % 100000 ))
work=$(mktemp -d)
server_pid=""

cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  "$hosts" down --prefix "$prefix" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$hosts" up --prefix "$prefix" 2>&1)
rc=$?
if [ $rc -eq 3 ]; then
  echo "SKIP: network namespaces unavailable here: $out"
  exit 77
fi
[ $rc -eq 0 ] || fail "netns-hosts.sh up exited $rc: $out"
echo "$out"
"$hosts" up --prefix "$prefix" >/dev/null || fail "second 'up' (idempotent) failed"
"$hosts" status --prefix "$prefix" || fail "status after up"

# The addresses exist only inside the namespaces.
# (Outputs are captured first: `cmd | grep -q` under pipefail can fail on SIGPIPE.)
root_addrs=$(ip -o addr show)
[[ "$root_addrs" != *" 10.77.0."* ]] || fail "10.77.0.x leaked into the root namespace"
a_addrs=$(ip -n "$prefix-a" -o addr show)
[[ "$a_addrs" == *" 10.77.0.1/24 "* ]] || fail "10.77.0.1/24 missing in $prefix-a"
b_addrs=$(ip -n "$prefix-b" -o addr show)
[[ "$b_addrs" == *" 10.77.0.2/24 "* ]] || fail "10.77.0.2/24 missing in $prefix-b"

# Server on host b (binds its CONSTMIG_HOST_ADDR), client on host a (connects to its peer).
"$run" --prefix "$prefix" b python3 -c '
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ["CONSTMIG_HOST_ADDR"], 0))
s.listen(1)
s.settimeout(20)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("%s %d\n" % (os.environ["CONSTMIG_HOST_ADDR"], s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
c, peer = s.accept()
data = c.recv(100)
c.sendall(b"pong from %s to %s: %s" % (os.environ["CONSTMIG_HOST_ADDR"].encode(), peer[0].encode(), data))
c.close()
' "$work/server" &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/server" ] && break; sleep 0.1; done
[ -s "$work/server" ] || fail "server on host b did not start"
read -r server_addr port < "$work/server"
[ "$server_addr" = 10.77.0.2 ] || fail "host b's CONSTMIG_HOST_ADDR is '$server_addr', expected 10.77.0.2"

reply=$("$run" --prefix "$prefix" a python3 -c '
import os, socket, sys
assert os.environ["CONSTMIG_NETNS"] == "netns", os.environ["CONSTMIG_NETNS"]
s = socket.create_connection((os.environ["CONSTMIG_PEER_ADDR"], int(sys.argv[1])), timeout=10)
s.sendall(b"ping")
print(s.recv(200).decode())
' "$port") || fail "client on host a could not reach 10.77.0.2:$port"
wait "$server_pid" || fail "server exited with an error"
server_pid=""
echo "reply: $reply"
[ "$reply" = "pong from 10.77.0.2 to 10.77.0.1: ping" ] || fail "unexpected reply '$reply'"

# Loopback fallback, forced and for an absent namespace.
addr=$(CONSTMIG_NETNS=loopback "$run" --prefix "$prefix" a printenv CONSTMIG_HOST_ADDR)
[ "$addr" = 127.0.0.1 ] || fail "forced loopback gave '$addr'"
addr=$("$run" --prefix nosuchns a printenv CONSTMIG_HOST_ADDR 2>"$work/note")
[ "$addr" = 127.0.0.1 ] || fail "absent namespace gave '$addr'"
grep -q "running on the loopback" "$work/note" || fail "no fallback note on stderr"
"$run" --prefix "$prefix" b true || fail "exit status not passed through (true)"
"$run" --prefix "$prefix" b sh -c 'exit 5'; [ $? -eq 5 ] || fail "exit status not passed through (5)"

"$hosts" down --prefix "$prefix" >/dev/null || fail "down"
"$hosts" down --prefix "$prefix" >/dev/null || fail "second 'down' (idempotent) failed"
if "$hosts" status --prefix "$prefix" >/dev/null; then fail "status says up after down"; fi
left=$(ip netns list | awk '{print $1}')
[[ $'\n'"$left"$'\n' != *$'\n'"$prefix-"[ab]$'\n'* ]] || fail "namespaces left behind"
"$hosts" up --prefix 'Bad!' >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad prefix accepted"
echo "PASS: two hosts $prefix-a (10.77.0.1) <-> $prefix-b (10.77.0.2)"
