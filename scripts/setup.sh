#!/usr/bin/env bash
# setup.sh — installs every Debian package and npm package liandan needs. Idempotent: it
# installs only what is missing and says what it installs.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev libomp-dev
  libopenblas-dev libdnnl-dev
  libpcre2-dev libcjson-dev libutf8proc-dev libopencc-dev libmicrohttpd-dev libsqlite3-dev libpng-dev libjpeg-dev
  libopenmpi-dev openmpi-bin
  time
  chromium fonts-noto-cjk
  # the aarch64 cross build (`make test-arm`): Debian's cross compiler and qemu-user to run its
  # unit tests, and the arm64 -dev packages of the required libraries (dpkg multiarch, below);
  # libgomp1:arm64 for the CLI (OpenMP in `bench limits`), which tests run under qemu: the
  # cross compiler's own copy lives outside the arm64 loader's search path
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
  libcjson-dev:arm64 libpcre2-dev:arm64 libutf8proc-dev:arm64 libmicrohttpd-dev:arm64 libsqlite3-dev:arm64
  libgomp1:arm64
)
# Node.js runs the npm test oracles and the demo's corpus fetch. A machine that already has
# node and npm (from any source) keeps them; otherwise Debian's packages are installed.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "setup: adding the arm64 architecture (multiarch: the cross build's libraries)"
    $SUDO dpkg --add-architecture arm64
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# npm packages used as independent oracles by the tests (pinned by tests/oracle/package-lock.json).
# `npm install --no-save` rather than `npm ci`: node-llama-cpp lists prebuilt binaries for other
# platforms as optional dependencies, and a registry mirror that lacks some of them leaves them
# out of the lock file, which `npm ci` then rejects as "out of sync". The lock still pins every
# version; --no-save keeps package.json and the lock untouched.
if [ -f tests/oracle/package.json ]; then
  if [ ! -d tests/oracle/node_modules ] || [ tests/oracle/package-lock.json -nt tests/oracle/node_modules ]; then
    echo "setup: installing npm test oracles (tests/oracle)"
    (cd tests/oracle && npm install --no-save --no-audit --no-fund --loglevel=error)
  else
    echo "setup: npm test oracles present"
  fi
fi
