#!/bin/sh
# CI smoke run of one fuzz target (ctest fuzz.<target>.smoke): the committed corpus, then a few
# thousand mutations (at most a few seconds). Fails on any crash, leak, timeout or broken
# invariant. New inputs go to a scratch directory, never into the repository's corpus.
#   smoke.sh FUZZER CORPUS_DIR WORK_DIR [DICT]
set -eu
fuzzer=$1 corpus=$2 work=$3 dict=${4:-}
rm -rf "$work"
mkdir -p "$work/new" "$work/artifacts"
set -- -seed=1 -runs=20000 -max_total_time=6 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/"
if [ -n "$dict" ]; then set -- "$@" -dict="$dict"; fi
exec "$fuzzer" "$@" "$work/new" "$corpus"
