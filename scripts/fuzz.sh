#!/usr/bin/env bash
# Long fuzzing runs of the libFuzzer targets in fuzz/ (see fuzz/README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${CONSTMIG_FUZZ_BUILD:-$ROOT/build-fuzz}
ALL_TARGETS=(fuzz_frames fuzz_manifest fuzz_quote fuzz_small_state fuzz_resp fuzz_kv_batch
  fuzz_capture)

usage() {
  cat <<EOF
usage: scripts/fuzz.sh [--minutes N] [--jobs J] [--no-build] [TARGET...]

Runs each fuzz target (default: all of ${ALL_TARGETS[*]})
for N minutes (default 30) with its seed corpus (fuzz/corpus/TARGET) and dictionary
(fuzz/dict/TARGET.dict), one target after the other. TARGET may be given with or without the
fuzz_ prefix.

  --minutes N   minutes per target (decimals allowed, e.g. 0.5)
  --jobs J      parallel fuzzing processes per target (libFuzzer -fork=J; default 1)
  --no-build    do not (re)build the targets first
  -h, --help    this text

Builds the targets first in $BUILD (its own build directory; CONSTMIG_FUZZ_BUILD overrides it),
configuring it with clang if needed. Per target, under $BUILD/fuzz-work/TARGET/:
  corpus/       the work corpus: inputs the runs found (kept between runs, never the repository's)
  crashes/      crash-*, leak-*, timeout-*, oom-* inputs
  fuzz.log      libFuzzer's output
At the end it prints a table (runs, exec/s, coverage, new corpus units, crashes) and exits 1 if
any target crashed. To reproduce a crash: $BUILD/bin/TARGET CRASH_FILE (fuzz/README.md).
EOF
}

minutes=30
jobs=1
build=1
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes)
      [[ $# -ge 2 ]] || { echo "fuzz.sh: --minutes needs a value" >&2; exit 2; }
      minutes=$2
      shift 2
      ;;
    --jobs)
      [[ $# -ge 2 ]] || { echo "fuzz.sh: --jobs needs a value" >&2; exit 2; }
      jobs=$2
      shift 2
      ;;
    --no-build) build=0; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    *)
      t=$1
      [[ $t == fuzz_* ]] || t=fuzz_$t
      found=0
      for a in "${ALL_TARGETS[@]}"; do [[ $a == "$t" ]] && found=1; done
      if [[ $found == 0 ]]; then
        echo "fuzz.sh: unknown target $1; targets: ${ALL_TARGETS[*]}" >&2
        exit 2
      fi
      targets+=("$t")
      shift
      ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
if ! [[ $minutes =~ ^[0-9]+([.][0-9]+)?$ ]] || [[ $(awk -v m="$minutes" 'BEGIN{print (m>0)}') != 1 ]]; then
  echo "fuzz.sh: --minutes wants a positive number, got '$minutes'" >&2
  exit 2
fi
if ! [[ $jobs =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: --jobs wants a positive integer, got '$jobs'" >&2
  exit 2
fi
seconds=$(awk -v m="$minutes" 'BEGIN{s=int(m*60+0.5); print (s<1?1:s)}')

if [[ $build == 1 ]]; then
  if [[ ! -f $BUILD/build.ninja ]]; then
    cxx=$(command -v clang++-14 || command -v clang++ || true)
    cc=$(command -v clang-14 || command -v clang || true)
    if [[ -z $cxx || -z $cc ]]; then
      echo "fuzz.sh: clang is needed for libFuzzer (scripts/setup.sh installs clang-14)" >&2
      exit 2
    fi
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" -DCONSTMIG_BUILD_FUZZ=ON
  fi
  nice cmake --build "$BUILD" --target fuzz_all
fi
for t in "${targets[@]}"; do
  if [[ ! -x $BUILD/bin/$t ]]; then
    echo "fuzz.sh: $BUILD/bin/$t is missing (is the compiler clang? see the cmake output)" >&2
    exit 2
  fi
done

# Numbers from a libFuzzer log: the last status line ("#RUNS ... cov: C ... exec/s: E", or in
# fork mode "#RUNS: cov: C ... exec/s E").
stat_of() {  # log field
  awk -v f="$2" '
    /^#[0-9]+/ {
      line = $0
      runs = substr($1, 2); sub(/:$/, "", runs)
      for (i = 1; i <= NF; i++) {
        if ($i == "cov:") cov = $(i + 1)
        if ($i == "exec/s:" || $i == "exec/s") eps = $(i + 1)
      }
    }
    /stat::average_exec_per_sec:/ { eps = $2 }
    /stat::number_of_executed_units:/ { runs = $2 }
    END {
      if (f == "runs") print (runs == "" ? "-" : runs)
      if (f == "cov") print (cov == "" ? "-" : cov)
      if (f == "eps") print (eps == "" ? "-" : eps)
    }' "$1"
}

count_files() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }

results=()
any_crash=0
for t in "${targets[@]}"; do
  work=$BUILD/fuzz-work/$t
  mkdir -p "$work/corpus" "$work/crashes"
  log=$work/fuzz.log
  before=$(count_files "$work/corpus")
  crashes_before=$(count_files "$work/crashes")
  args=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1
    -artifact_prefix="$work/crashes/")
  [[ -f $ROOT/fuzz/dict/$t.dict ]] && args+=(-dict="$ROOT/fuzz/dict/$t.dict")
  case $t in
    fuzz_frames | fuzz_capture) args+=(-max_len=20000) ;;  # room for a few 4 KiB data pages
  esac
  [[ $jobs -gt 1 ]] && args+=(-fork="$jobs")
  echo "== $t: $minutes min, $jobs job(s); log $log"
  set +e
  nice "$BUILD/bin/$t" "${args[@]}" "$work/corpus" "$ROOT/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  after=$(count_files "$work/corpus")
  crashes=$(($(count_files "$work/crashes") - crashes_before))
  if [[ $rc != 0 && $crashes == 0 ]]; then crashes=1; fi  # died without an artifact: count it
  if [[ $crashes -gt 0 ]]; then
    any_crash=1
    echo "   CRASH (exit $rc): see $log and $work/crashes/"
    grep -E "^==[0-9]+==ERROR|FUZZ_CHECK failed|SUMMARY:|Test unit written" "$log" | head -5 |
      sed 's/^/   /'
  fi
  results+=("$t|$(stat_of "$log" runs)|$(stat_of "$log" eps)|$(stat_of "$log" cov)|$((after - before))|$crashes")
done

echo
printf '%-18s %12s %9s %9s %11s %8s\n' target runs exec/s coverage new-units crashes
for r in "${results[@]}"; do
  IFS='|' read -r t runs eps cov new cr <<<"$r"
  printf '%-18s %12s %9s %9s %11s %8s\n' "$t" "$runs" "$eps" "$cov" "$new" "$cr"
done
if [[ $any_crash == 1 ]]; then
  echo "fuzz.sh: crashes found (inputs under $BUILD/fuzz-work/*/crashes/)" >&2
  exit 1
fi
