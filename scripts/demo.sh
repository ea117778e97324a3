#!/usr/bin/env bash
# The README's first command (sudo make demo): a pair of vigil directors in
# front of two real servers on this machine, with a drill and a failover
# whose interruption is measured. Runs examples/lab/tour.sh on this kernel
# when it has IPVS, otherwise inside a QEMU guest booting Debian's kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root (network namespaces, IPVS, raw sockets): sudo make demo" >&2
  exit 1
fi
scripts/install-deps.sh
make --no-print-directory build GO=go
export CGO_ENABLED=0
go build -o bin/labsrv ./examples/lab/labsrv
if [ -e /proc/net/ip_vs ] || modprobe ip_vs 2>/dev/null; then
  echo "demo: this kernel has IPVS: running the lab here"
  exec env VIGIL=bin/vigil LABSRV=bin/labsrv SITE=examples/lab/site.toml sh examples/lab/tour.sh
fi
echo "demo: this kernel has no IPVS (CONFIG_IP_VS): running the same lab inside a QEMU guest"
echo "demo: booting Debian's kernel under emulation; the whole tour takes a few minutes"
go build -o bin/vmlab ./examples/lab/vmlab
exec bin/vmlab -vigil bin/vigil -labsrv bin/labsrv -lab examples/lab
