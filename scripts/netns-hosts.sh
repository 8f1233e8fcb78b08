#!/usr/bin/env bash
# Two "hosts" on one box: two network namespaces joined by a veth pair, so that a migration
# source and target talk over a real (virtual) link instead of the loopback.
#
#   scripts/netns-hosts.sh up     [--prefix cmtest]   create (idempotent)
#   scripts/netns-hosts.sh down   [--prefix cmtest]   remove (idempotent)
#   scripts/netns-hosts.sh status [--prefix cmtest]   print them; exit 0 if up, 1 if not
#
#   namespace <prefix>-a : loopback up, veth <prefix>-va with 10.77.0.1/24   ("host a")
#   namespace <prefix>-b : loopback up, veth <prefix>-vb with 10.77.0.2/24   ("host b")
#
# Nothing is configured in the root namespace: the 10.77.0.0/24 addresses exist only inside
# the two namespaces, and their only route is the link between them.
# Run commands on a host with scripts/netns-exec.sh <a|b> CMD...
#
# Exit status 3: this machine cannot do it (not root, no `ip`, network namespaces or veth
# unsupported). The message says why; callers fall back to the loopback (127.0.0.1), which
# scripts/netns-exec.sh does by itself when the namespaces are absent.
set -euo pipefail

readonly ADDR_A=10.77.0.1
readonly ADDR_B=10.77.0.2
readonly PLEN=24

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

unsupported() {
  echo "netns-hosts: $*" >&2
  echo "netns-hosts: two-host mode is unavailable here; callers fall back to the loopback" \
       "(127.0.0.1) -- scripts/netns-exec.sh does so when the namespaces are absent." >&2
  exit 3
}

cmd=""
prefix=cmtest
while [ $# -gt 0 ]; do
  case "$1" in
    up|down|status) cmd=$1 ;;
    --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    -h|--help) usage 0 ;;
    *) echo "netns-hosts: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
[ -n "$cmd" ] || usage
# Interface names are limited to 15 characters: <prefix>-va must fit.
if ! [[ "$prefix" =~ ^[a-z][a-z0-9]{0,9}$ ]]; then
  echo "netns-hosts: --prefix must be 1-10 characters [a-z0-9], starting with a letter" \
       "(got '$prefix')" >&2
  exit 2
fi

NS_A=$prefix-a
NS_B=$prefix-b
VETH_A=$prefix-va
VETH_B=$prefix-vb

command -v ip >/dev/null 2>&1 || unsupported "the 'ip' command (iproute2) is not installed"

# (No `cmd | grep -q` under pipefail: grep exiting early can fail the pipeline with SIGPIPE.)
ns_exists() {
  local list
  list=$(ip netns list 2>/dev/null | awk '{print $1}') || true
  [[ $'\n'"$list"$'\n' == *$'\n'"$1"$'\n'* ]]
}
link_in_ns() { ip -n "$1" link show dev "$2" >/dev/null 2>&1; }
# has NS DEV SUBSTRING: `ip -o` output about DEV in NS contains SUBSTRING (addr or link).
has_addr() { local o; o=$(ip -n "$1" -o addr show dev "$2" 2>/dev/null) || return 1; [[ "$o" == *"$3"* ]]; }
has_link() { local o; o=$(ip -n "$1" -o link show dev "$2" 2>/dev/null) || return 1; [[ "$o" == *"$3"* ]]; }

need_root() {
  [ "$(id -u)" -eq 0 ] || unsupported "creating network namespaces needs root (uid $(id -u));" \
                                      "run it as root or with sudo"
}

show() {
  local ns=$1
  if ns_exists "$ns"; then
    echo "$ns: present"
    ip -n "$ns" -br addr show 2>/dev/null | sed 's/^/  /' || true
  else
    echo "$ns: absent"
  fi
}

configured() {
  ns_exists "$NS_A" && ns_exists "$NS_B" || return 1
  has_addr "$NS_A" "$VETH_A" " $ADDR_A/$PLEN " && has_addr "$NS_B" "$VETH_B" " $ADDR_B/$PLEN " ||
    return 1
  has_link "$NS_A" "$VETH_A" "state UP" && has_link "$NS_B" "$VETH_B" "state UP" || return 1
  has_link "$NS_A" lo ",UP" && has_link "$NS_B" lo ",UP" || return 1
}

do_down() {
  local ns
  for ns in "$NS_A" "$NS_B"; do
    if ns_exists "$ns"; then
      ip netns del "$ns" || { echo "netns-hosts: could not delete namespace $ns" >&2; return 1; }
    fi
  done
  # A half-finished `up` may have left the pair in the root namespace.
  ip link show dev "$VETH_A" >/dev/null 2>&1 && ip link del dev "$VETH_A" 2>/dev/null || true
  return 0
}

do_up() {
  local ns out
  for ns in "$NS_A" "$NS_B"; do
    if ! ns_exists "$ns"; then
      if ! out=$(ip netns add "$ns" 2>&1); then
        do_down >/dev/null 2>&1 || true
        unsupported "cannot create network namespace $ns: $out"
      fi
    fi
    ip -n "$ns" link set dev lo up
  done
  # The pair: if either end is missing (e.g. one namespace was deleted, which destroys both
  # ends), rebuild it.
  if ! link_in_ns "$NS_A" "$VETH_A" || ! link_in_ns "$NS_B" "$VETH_B"; then
    ip -n "$NS_A" link del dev "$VETH_A" 2>/dev/null || true
    ip -n "$NS_B" link del dev "$VETH_B" 2>/dev/null || true
    ip link del dev "$VETH_A" 2>/dev/null || true
    if ! out=$(ip link add "$VETH_A" type veth peer name "$VETH_B" 2>&1); then
      do_down >/dev/null 2>&1 || true
      unsupported "cannot create a veth pair: $out"
    fi
    ip link set dev "$VETH_A" netns "$NS_A"
    ip link set dev "$VETH_B" netns "$NS_B"
  fi
  ip -n "$NS_A" addr replace "$ADDR_A/$PLEN" dev "$VETH_A"
  ip -n "$NS_B" addr replace "$ADDR_B/$PLEN" dev "$VETH_B"
  ip -n "$NS_A" link set dev "$VETH_A" up
  ip -n "$NS_B" link set dev "$VETH_B" up
  configured || { echo "netns-hosts: setup did not come out as expected:" >&2; show "$NS_A" >&2;
                  show "$NS_B" >&2; exit 1; }
  echo "netns-hosts: up: $NS_A ($ADDR_A) <-> $NS_B ($ADDR_B) via $VETH_A/$VETH_B"
}

case "$cmd" in
  up)
    need_root
    do_up
    ;;
  down)
    need_root
    do_down
    echo "netns-hosts: down: $NS_A, $NS_B removed"
    ;;
  status)
    need_root
    show "$NS_A"
    show "$NS_B"
    if configured; then
      echo "mode: netns ($NS_A $ADDR_A <-> $NS_B $ADDR_B)"
    else
      echo "mode: not set up (scripts/netns-exec.sh falls back to the loopback 127.0.0.1)"
      exit 1
    fi
    ;;
esac
