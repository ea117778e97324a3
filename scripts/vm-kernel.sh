#!/usr/bin/env bash
# Fetches Debian's kernel image package (with its IPVS modules) for the vm
# test tier and unpacks it into a cache outside the repository. Idempotent:
# a second run only prints the cache directory.
#
# The package name is resolved at run time from linux-image-amd64's Depends
# (Debian bumps the ABI number, e.g. linux-image-6.1.0-56-amd64).
#
# Environment: VIGIL_VM_CACHE (default /var/cache/vigil/vm);
# VIGIL_VM_REFRESH=1 re-resolves the package (picks up a new Debian ABI).
# Prints the directory that holds boot/vmlinuz-* and lib/modules/*.
set -euo pipefail
cache=${VIGIL_VM_CACHE:-/var/cache/vigil/vm}
mkdir -p "$cache"
# A finished unpack leaves a "current" symlink; reuse it.
if [ "${VIGIL_VM_REFRESH:-}" != 1 ] && [ -L "$cache/current" ] && [ -f "$cache/current/.complete" ]; then
  readlink -f "$cache/current"
  exit 0
fi
exec 9>"$cache/.lock"
flock 9
if [ "${VIGIL_VM_REFRESH:-}" != 1 ] && [ -L "$cache/current" ] && [ -f "$cache/current/.complete" ]; then
  readlink -f "$cache/current"
  exit 0
fi
dl=$cache/download
mkdir -p "$dl"
cd "$dl"
if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
  apt-get update -qq >&2
fi
rm -f linux-image-amd64_*.deb
apt-get download linux-image-amd64 >&2
meta=$(ls linux-image-amd64_*.deb | head -n1)
# Depends: linux-image-6.1.0-56-amd64 (= 6.1.158-1) -> the first linux-image-* name
real=$(dpkg-deb -f "$meta" Depends | tr ',|' '\n\n' | sed -E 's/^ *//; s/ .*//' | grep -E '^linux-image-[0-9]' | head -n1)
if [ -z "$real" ]; then
  echo "vm-kernel: cannot find the kernel package in the Depends of $meta" >&2
  exit 1
fi
dir=$cache/$real
if [ ! -f "$dir/.complete" ]; then
  rm -f "$real"_*.deb
  apt-get download "$real" >&2
  deb=$(ls "$real"_*.deb | head -n1)
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  dpkg-deb -x "$deb" "$dir.tmp"
  ls "$dir.tmp"/boot/vmlinuz-* >/dev/null
  touch "$dir.tmp/.complete"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  rm -f "$deb"
fi
ln -sfn "$real" "$cache/current.tmp"
mv -T "$cache/current.tmp" "$cache/current"
readlink -f "$cache/current"
