#!/usr/bin/env bash
# Installs everything druvaa's demo and tests need on a fresh Debian/Ubuntu machine:
# the Debian packages of the real peers the tests drive (qemu-io, nbdkit, nbdinfo/nbdcopy/nbdfuse,
# fio, FUSE, ext4 tools, losetup) and the npm dependencies (Bun itself comes from the npm registry).
# Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# nbdinfo, nbdcopy and nbdfuse are all in libnbd-bin on Debian 12. libisal2 (Intel ISA-L) gives
# druvaa its hardware CRC32C (src/wrl/crc32c.ts; without it a slower JavaScript one is used).
# rsync is bench/resync.ts's reference (rsync --inplace --no-whole-file of the same image pair).
# python3-aiosmtpd is the real SMTP server tests/io/smtp.test.ts sends alert mail to.
# chromium (driven by playwright-core) is the real browser the DR-Panel's end-to-end tests use;
# fonts-liberation gives its screenshots readable text.
debian_packages=(qemu-utils nbdkit libnbd-bin fio fuse3 e2fsprogs util-linux coreutils libisal2 rsync python3-aiosmtpd chromium fonts-liberation rpm rpm2cpio cpio msitools wixl systemd man-db passwd zsh)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
# npm 11 may skip install scripts it was not told to allow: repair Bun's binary if so.
if ! node_modules/.bin/bun --version >/dev/null 2>&1; then
  node node_modules/bun/install.js
fi
