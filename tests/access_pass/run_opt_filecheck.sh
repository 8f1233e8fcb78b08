#!/bin/sh
# Runs the Access Tracker pass over a .ll test with opt and checks the result with FileCheck
# against the CHECK lines in that same file. Any failure (opt, its verifier, FileCheck) fails.
# usage: run_opt_filecheck.sh <opt> <plugin.so> <FileCheck> <input.ll> [pass pipeline]
set -eu
opt=$1
plugin=$2
filecheck=$3
input=$4
passes=${5:-constmig-access-tracker}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$opt" -load-pass-plugin="$plugin" -passes="$passes" -S "$input" -o "$out"
"$filecheck" --input-file="$out" "$input"
