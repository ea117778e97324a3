#!/usr/bin/env bash
# IPVS programming benchmark in the QEMU guest (real IPVS, Debian's kernel):
# 1,000 services x 10 destinations from empty, a no-op pass and a 1% weight
# pass with vigil's reconciler, beside ipvsadm-restore of the same rules in
# the same guest. Prints each time, the ratio to ipvsadm-restore and the
# write counts. Needs root, qemu-system-x86, busybox-static, ipvsadm.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
export GOFLAGS=${GOFLAGS:--buildvcs=false}
exec go test -count=1 -run '^$' -bench '^BenchmarkVMReconcile$' -benchtime 1x -timeout 60m ./ipvs
