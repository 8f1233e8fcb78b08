#!/usr/bin/env bash
# Install every build/test dependency from Debian 12 packages, then configure and build.
#   scripts/setup.sh            install (if missing) + build into ./build
#   scripts/setup.sh --deps     install only
# Safe to re-run: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  clang-14 llvm-14-dev libclang-rt-14-dev
  libssl-dev openssl libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
  redis-tools redis-server
  iproute2 python3 python3-matplotlib
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#PKGS[@]} Debian packages present"
fi

[ "${1:-}" = "--deps" ] && exit 0

BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-}
cmake --build "$BUILD" -j "$(nproc)"
echo "setup: built into $BUILD/ (tools and enclave images in $BUILD/bin)"
