#!/usr/bin/env bash
# The failover benchmark: client-visible interruption when the VRRP master
# dies (bridge port cut + SIGKILL at one instant), stops (SIGTERM) or hands
# over (vigil's control socket, as `vigil drill`), for vigil and keepalived
# (Debian's 2.2.7) in the same network-namespace lab, plus each daemon's CPU
# and RSS as master, and optionally a stability run.
#
#   sudo scripts/bench-failover.sh              # the full benchmark (about 30 min on 2 busy cores)
#   sudo scripts/bench-failover.sh -quick       # a few minutes, for development
#   sudo scripts/bench-failover.sh -stability 10m   # also the 10-minute stability run (per daemon)
#   sudo scripts/bench-failover.sh -impl keepalived -adverts 100ms -runs 3 -v
#   sudo scripts/bench-failover.sh -planned     # the planned-handover rows only (stop, handover at 1s,100ms,10ms)
#
# Any flag is passed to failbench (`go run ./internal/failbench/cmd/failbench -h`).
# It builds bin/vigil (make build) and bin/failbench; when bin/vigil cannot
# be built or run, the vigil rows are skipped with the reason and keepalived
# still runs. Only addresses inside the namespaces it creates (10.99.0.0/24)
# see traffic; every namespace and process is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--buildvcs=false}
GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go

if [ "$(id -u)" != 0 ]; then
  echo "bench-failover: needs root (network namespaces, raw sockets): sudo $0 $*" >&2
  exit 1
fi
if ! command -v keepalived >/dev/null; then
  if [ -x scripts/install-deps.sh ]; then scripts/install-deps.sh; fi
fi
# A packaged keepalived service would answer on no lab address, but stop it
# anyway so that its CPU does not count against the machine.
if command -v systemctl >/dev/null; then systemctl stop keepalived >/dev/null 2>&1 || true; fi

if ! make build GO="$GO" >/tmp/bench-failover-build.$$ 2>&1; then
  echo "bench-failover: make build failed; vigil will be skipped:" >&2
  tail -5 /tmp/bench-failover-build.$$ >&2
fi
rm -f /tmp/bench-failover-build.$$
mkdir -p bin
CGO_ENABLED=0 "$GO" build -o bin/failbench ./internal/failbench/cmd/failbench
args=()
for a in "$@"; do
  if [ "$a" = -planned ]; then
    args+=(-kinds stop,handover -adverts 1s,100ms,10ms -usage-adverts "")
  else
    args+=("$a")
  fi
done
exec bin/failbench -vigil bin/vigil "${args[@]}"
