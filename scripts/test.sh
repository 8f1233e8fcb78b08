#!/usr/bin/env bash
# Install dependencies if missing, build with warnings as errors, and run every test via ctest.
#   scripts/test.sh              normal build in ./build-ci
#   SANITIZE=address,undefined scripts/test.sh   ASan/UBSan build in ./build-asan
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps
if [ -n "${SANITIZE:-}" ]; then
  BUILD=${BUILD_DIR:-build-asan}
  EXTRA="-DCONSTMIG_SANITIZE=${SANITIZE}"
else
  BUILD=${BUILD_DIR:-build-ci}
  EXTRA=""
fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCONSTMIG_WERROR=ON $EXTRA
cmake --build "$BUILD" -j "$(nproc)"
cd "$BUILD"
ctest --output-on-failure -j "$(nproc)" --timeout 600 "$@"
