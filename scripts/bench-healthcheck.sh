#!/usr/bin/env bash
# Health checks at scale: vigil's checker against HAProxy on the same servers.
#
# N real servers (default 10,000) at distinct 127.x.y.z addresses, all
# answered by one listener on 0.0.0.0:PORT (hcbench serve), checked every
# second, once with TCP checks and once with HTTP checks, by HAProxy (Debian
# package, one thread, spread-checks 5, inter 1s rise 2 fall 3) and by vigil
# (healthcheck.Scheduler, same settings). Each run gets a fresh private
# network namespace with its own server: the kernel's Tcp ActiveOpens
# counter counts the checks of exactly one checker, and no run inherits
# another's TIME_WAIT sockets (HAProxy's HTTP checks leave the server
# holding one per check; vigil's end with RST and leave none).
#
# Prints, per kind: checks/s, CPU seconds per 1,000 checks, share of one
# core, peak RSS (VmHWM) for each, the vigil/HAProxy CPU ratio, and vigil's
# lateness (scheduled vs actual start, p50/p99/max).
#
# Needs root (network namespace) and haproxy. Environment:
#   N=10000 WINDOW=30 (seconds measured) WARMUP=10 PORT=18080 KINDS="tcp http"
#   WHO="haproxy vigil" VERIFY=1 (after vigil's window, stop the server for
#   5 s and report when all servers went down and came back up: proof that
#   the checks reach it; the anchor for HAProxy is 3.26 s down, 2.22 s up)
# The machine may be shared: compare figures from the same run, and look at
# the load printed at the start.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
WINDOW=${WINDOW:-30}
WARMUP=${WARMUP:-10}
PORT=${PORT:-18080}
KINDS=${KINDS:-"tcp http"}
WHO=${WHO:-"haproxy vigil"}
VERIFY=${VERIFY:-1}

[ "$(id -u)" = 0 ] || { echo "bench-healthcheck: needs root (network namespace); run with sudo" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "bench-healthcheck: haproxy not found (apt-get install haproxy)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/vigil-hcbench.XXXXXX)
NS=
pids=()
teardown() { # the current namespace and everything in it
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pids=()
  if [ -n "$NS" ]; then
    # Anything else still in our namespace was started by this script.
    ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
  fi
  NS=
}
trap 'teardown; rm -rf "$tmp"' EXIT

go build -o "$tmp/hcbench" ./healthcheck/cmd/hcbench
inns() { ip netns exec "$NS" "$@"; }
active_opens() { inns awk '/^Tcp:/ && $6 ~ /^[0-9]+$/ {print $6}' /proc/net/snmp; }

setup() { # a fresh namespace with the server
  NS=vigil-hcbench-$$-$1
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  # Started with ip netns exec itself (not a shell function), so $! is the
  # server's pid: ip execs the program.
  ip netns exec "$NS" "$tmp/hcbench" serve -port "$PORT" >"$tmp/serve-$1.log" 2>&1 &
  pids+=($!)
  sleep 0.5
}

# addr i: 127.10.0.1 ... as in hcbench (250 per /24).
gen_haproxy_cfg() { # kind
  local kind=$1 mode=tcp chk=""
  if [ "$kind" = http ]; then mode=http; chk="    option httpchk GET /"; fi
  cat <<EOF
global
    nbthread 1
    spread-checks 5
    maxconn 2000
defaults
    mode $mode
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout check 1s
frontend fe
    bind 127.0.0.1:$((PORT + 1))
    default_backend be
backend be
$chk
EOF
  awk -v n="$N" -v port="$PORT" 'BEGIN {
    for (i = 0; i < n; i++)
      printf "    server s%d 127.%d.%d.%d:%d check inter 1s fall 3 rise 2\n", i, 10 + int(i / 62500), int(i / 250) % 250, i % 250 + 1, port
  }'
}

hz=$(getconf CLK_TCK)
declare -A res

run_haproxy() { # kind
  local kind=$1 cfg=$tmp/haproxy-$1.cfg
  gen_haproxy_cfg "$kind" >"$cfg"
  ip netns exec "$NS" haproxy -db -f "$cfg" >"$tmp/haproxy-$kind.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  sleep "$WARMUP"
  kill -0 "$pid" 2>/dev/null || { echo "haproxy failed:"; cat "$tmp/haproxy-$kind.log"; exit 1; }
  local t0 o0 s0 t1 o1 s1
  local u0 u1
  read -r t0 u0 < <(awk '{print $14 + $15, $14}' "/proc/$pid/stat")
  local w0 w1
  w0=$(awk '{print $2}' "/proc/$pid/schedstat")
  o0=$(active_opens); s0=$(date +%s.%N)
  sleep "$WINDOW"
  w1=$(awk '{print $2}' "/proc/$pid/schedstat")
  read -r t1 u1 < <(awk '{print $14 + $15, $14}' "/proc/$pid/stat")
  o1=$(active_opens); s1=$(date +%s.%N)
  local hwm
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v w=$(( (w1 - w0) / 1000000 )) -v t0="$t0" -v t1="$t1" -v u0="$u0" -v u1="$u1" -v o0="$o0" -v o1="$o1" -v s0="$s0" -v s1="$s1" -v hz="$hz" -v hwm="$hwm" -v kind="$kind" 'BEGIN {
    el = s1 - s0; cpu = (t1 - t0) / hz; n = o1 - o0
    printf "haproxy %s: checks=%d rate=%.0f/s cpu_seconds=%.2f cpu_per_1000=%.4f core_share=%.1f%% user=%.0f%% peak_rss=%.1fMB waited_for_cpu=%.1fs\n", kind, n, n / el, cpu, cpu / n * 1000, 100 * cpu / el, 100 * (u1 - u0) / (t1 - t0), hwm / 1024, w / 1000
  }' | tee "$tmp/haproxy-$kind.res"
}

run_vigil() { # kind
  local kind=$1
  local o0 o1
  o0=$(active_opens)
  local verify=0s
  [ "$VERIFY" = 1 ] && verify=30s
  inns "$tmp/hcbench" check -kind "$kind" -n "$N" -port "$PORT" -interval 1s \
    -warmup "${WARMUP}s" -window "${WINDOW}s" -verify "$verify" >"$tmp/vigil-$kind.out" &
  local cpid=$!
  if [ "$VERIFY" = 1 ]; then
    sleep $((WARMUP + WINDOW + 3))
    kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
    sleep 5
    ip netns exec "$NS" "$tmp/hcbench" serve -port "$PORT" >>"$tmp/serve-$kind.log" 2>&1 &
    pids=($!)
  fi
  wait "$cpid"
  o1=$(active_opens)
  sed 's/^/    /' "$tmp/vigil-$kind.out"
  awk -v kind="$kind" -v opens=$((o1 - o0)) '
    /^checks=/ { split($1, a, "="); n = a[2]; split($2, b, "="); rate = b[2] }
    /^cpu_seconds=/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    /^peak_rss=/ { sub("peak_rss=", ""); rss = $1 / 1024 }
    /^lateness_p50=/ { late = $0 }
    /^waited_for_cpu=/ { split($1, wv, "="); waited = wv[2] }
    END { printf "vigil %s: checks=%d rate=%s cpu_seconds=%.2f cpu_per_1000=%.4f core_share=%s peak_rss=%.1fMB waited_for_cpu=%s %s (kernel ActiveOpens over the whole run: %d)\n", kind, n, rate, v["cpu_seconds"], v["cpu_per_1000"], v["core_share"], rss, waited, late, opens }
  ' "$tmp/vigil-$kind.out" | tee "$tmp/vigil-$kind.res"
}

echo "bench-healthcheck: N=$N interval=1s warmup=${WARMUP}s window=${WINDOW}s; $(nproc) CPUs; load:$(uptime | sed 's/.*load average://'); $(haproxy -v | head -1 | cut -d' ' -f1-3)"
for kind in $KINDS; do
  for who in $WHO; do
    setup "$who-$kind"
    "run_$who" "$kind"
    teardown
  done
done

echo
echo "summary (CPU seconds per 1,000 checks; lower is better)"
for kind in $KINDS; do
  h=$(sed -n 's/.*cpu_per_1000=\([0-9.]*\).*/\1/p' "$tmp/haproxy-$kind.res" 2>/dev/null || true)
  v=$(sed -n 's/.*cpu_per_1000=\([0-9.]*\).*/\1/p' "$tmp/vigil-$kind.res" 2>/dev/null || true)
  hr=$(sed -n 's/.*peak_rss=\([0-9.]*MB\).*/\1/p' "$tmp/haproxy-$kind.res" 2>/dev/null || true)
  vr=$(sed -n 's/.*peak_rss=\([0-9.]*MB\).*/\1/p' "$tmp/vigil-$kind.res" 2>/dev/null || true)
  late=$(sed -n 's/.*\(lateness_p50=[^ ]* lateness_p99=[^ ]*\).*/\1/p' "$tmp/vigil-$kind.res" 2>/dev/null || true)
  ratio=$(awk -v h="${h:-0}" -v v="${v:-0}" 'BEGIN { if (h > 0 && v > 0) printf "%.2f", v / h; else print "n/a" }')
  printf "  %-4s  haproxy %-7s %-8s  vigil %-7s %-8s  vigil/haproxy %s  vigil %s\n" "$kind" "${h:-n/a}" "${hr:-}" "${v:-n/a}" "${vr:-}" "$ratio" "$late"
done
