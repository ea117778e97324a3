#!/usr/bin/env bash
# Installs what the tests, benchmarks and the demo need on a Debian machine,
# as root, only when missing. Safe to run again.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || need+=(iproute2)
have qemu-system-x86_64 || need+=(qemu-system-x86)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need+=(busybox-static)
have keepalived || need+=(keepalived)
have ipvsadm || need+=(ipvsadm)
have haproxy || need+=(haproxy)
have arping || need+=(arping)
have tcpdump || need+=(tcpdump)
have nft || need+=(nftables)
have cpio || need+=(cpio)
have ping || need+=(iputils-ping)
# cgo: vigil's advert pacer is a C thread (see internal/pacer).
have gcc || need+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/libc.a ] || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# keepalived's and haproxy's packages start services on install; the tests
# and benchmarks run their own instances in namespaces, so only the
# packaged services are stopped (never other keepalived processes).
if [ ${#need[@]} -gt 0 ] && have systemctl; then systemctl stop keepalived haproxy >/dev/null 2>&1 || true; fi
# The guest kernel for the vm tier (cached outside the repository).
if [ -x scripts/vm-kernel.sh ]; then scripts/vm-kernel.sh >/dev/null; fi
