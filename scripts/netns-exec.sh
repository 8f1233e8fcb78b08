#!/usr/bin/env bash
# Run a command on one of the two hosts made by scripts/netns-hosts.sh.
#
#   scripts/netns-exec.sh [--prefix cmtest] <a|b> CMD [ARGS...]
#
# With the namespaces up, CMD runs inside <prefix>-a or <prefix>-b with
#   CONSTMIG_HOST_ADDR  this host's address   (10.77.0.1 on a, 10.77.0.2 on b)
#   CONSTMIG_PEER_ADDR  the other host's address
#   CONSTMIG_NETNS      "netns"
# Loopback fallback: when the namespaces are absent (netns-hosts.sh up failed with status 3, or
# was never run), or CONSTMIG_NETNS=loopback is set, CMD runs directly in this namespace with
# both addresses 127.0.0.1 and CONSTMIG_NETNS=loopback, and a note on stderr says so.
# The exit status is CMD's (2 for a usage error).
set -euo pipefail

prefix=${CONSTMIG_NETNS_PREFIX:-cmtest}
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "netns-exec: --prefix needs a value" >&2; exit 2; }
              prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ] || { [ "$1" != a ] && [ "$1" != b ]; }; then
  echo "usage: netns-exec.sh [--prefix P] <a|b> CMD [ARGS...]" >&2
  exit 2
fi
host=$1
shift
if [ "$host" = a ]; then self=10.77.0.1 peer=10.77.0.2; else self=10.77.0.2 peer=10.77.0.1; fi
ns=$prefix-$host

use_netns=0
if [ "${CONSTMIG_NETNS:-}" != loopback ] && command -v ip >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]
then
  list=$(ip netns list 2>/dev/null | awk '{print $1}') || true
  [[ $'\n'"$list"$'\n' == *$'\n'"$ns"$'\n'* ]] && use_netns=1
fi

if [ "$use_netns" = 1 ]; then
  exec ip netns exec "$ns" env CONSTMIG_HOST_ADDR="$self" CONSTMIG_PEER_ADDR="$peer" \
       CONSTMIG_NETNS=netns "$@"
fi
if [ "${CONSTMIG_NETNS:-}" != loopback ]; then
  echo "netns-exec: namespace $ns is not set up; running on the loopback" \
       "(CONSTMIG_HOST_ADDR=127.0.0.1)" >&2
fi
exec env CONSTMIG_HOST_ADDR=127.0.0.1 CONSTMIG_PEER_ADDR=127.0.0.1 CONSTMIG_NETNS=loopback "$@"
