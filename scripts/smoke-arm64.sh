#!/usr/bin/env bash
# Runs scripts/smoke.cjs against the linux-arm64-gnu binary under QEMU user emulation, with Debian's arm64 Node.js:
# the binary loads in an arm64 process and moves messages through an engine.
#
#   bash scripts/smoke-arm64.sh [BINARY]     (default artifacts/sockmap.linux-arm64-gnu.node; npm run smoke:arm64)
#
# Needs qemu-aarch64-static (Debian's qemu-user-static) and dist/ (npm run build:ts). The first run enables Debian's
# arm64 architecture for apt (as root), downloads Debian's arm64 Node.js and the libraries it links against, and
# unpacks them into a private root folder (SOCKMAP_ARM64_SYSROOT, default ~/.cache/sockmap/arm64-sysroot); nothing
# is installed on the machine itself.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-artifacts/sockmap.linux-arm64-gnu.node}
sysroot=${SOCKMAP_ARM64_SYSROOT:-$HOME/.cache/sockmap/arm64-sysroot}
[ -f "$bin" ] || { echo "smoke-arm64: no $bin (npm run build:all -- linux-arm64-gnu)" >&2; exit 1; }
[ -f dist/index.js ] || { echo "smoke-arm64: no dist/ (npm run build:ts)" >&2; exit 1; }
command -v qemu-aarch64-static >/dev/null || { echo "smoke-arm64: qemu-aarch64-static missing (apt-get install qemu-user-static)" >&2; exit 1; }

if [ ! -x "$sysroot/usr/bin/node" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
  elif ! apt-cache show nodejs:arm64 >/dev/null 2>&1; then
    apt-get update -qq
  fi
  debs=$(mktemp -d)
  chmod 755 "$debs" # apt downloads as its own user
  trap 'rm -rf "$debs"' EXIT
  (cd "$debs" && apt-get download -qq \
    nodejs:arm64 libnode108:arm64 libc6:arm64 libgcc-s1:arm64 libstdc++6:arm64 libuv1:arm64 libssl3:arm64 \
    libicu72:arm64 zlib1g:arm64 libbrotli1:arm64 libc-ares2:arm64 libnghttp2-14:arm64 \
    node-acorn node-cjs-module-lexer node-undici node-busboy node-xtend)
  mkdir -p "$sysroot"
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$sysroot"; done
fi

SOCKMAP_NATIVE_PATH="$PWD/$bin" qemu-aarch64-static -L "$sysroot" "$sysroot/usr/bin/node" scripts/smoke.cjs "${SMOKE_MESSAGES:-200}"
