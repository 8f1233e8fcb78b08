#!/bin/sh
# Compiles a C file with clang -fpass-plugin at the given optimisation level and checks the IR
# with FileCheck against the CHECK lines in that file. Any failure fails the test.
# usage: run_clang_filecheck.sh <clang> <plugin.so> <FileCheck> <input.c> <-O level>
set -eu
clang=$1
plugin=$2
filecheck=$3
input=$4
level=$5
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$clang" "$level" -fpass-plugin="$plugin" -S -emit-llvm "$input" -o "$out"
"$filecheck" --input-file="$out" "$input"
