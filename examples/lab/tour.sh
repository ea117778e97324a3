#!/bin/sh
# A guided tour of the lab (examples/lab/lab.sh), and the full-site test
# of the vm tier: the seed's WWW + Telnet cluster with two directors and
# real IPVS. Every step checks what it shows; the script exits non-zero at
# the first thing that is not as it should be.
#
#   client --- bridge --- vs1 (master, prio 150) / vs2 (backup, prio 100) --- rs1, rs2
#
# POSIX sh (busybox sh in the QEMU guest). Environment as for lab.sh, plus
# IPVSADM (witness; default ipvsadm).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=${LAB:-vlab}
IP=${IP:-ip}
VIGIL=${VIGIL:-bin/vigil}
LABSRV=${LABSRV:-bin/labsrv}
SITE=${SITE:-examples/lab/site.toml}
RUNDIR=${RUNDIR:-/tmp/$LAB}
IPVSADM=${IPVSADM:-ipvsadm}
export LAB IP VIGIL LABSRV SITE RUNDIR
VIP=10.99.0.101
lab() { sh "$HERE/lab.sh" "$@"; }
nsx() { lab exec "$@"; }

step=0
say() { step=$((step+1)); printf '\n=== %d. %s\n' "$step" "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
fail() {
  printf '\nFAIL: %s\n' "$*"
  for f in "$RUNDIR"/vs1.log "$RUNDIR"/vs2.log; do
    [ -f "$f" ] && { echo "---- $f (last 40 lines)"; tail -40 "$f"; }
  done
  lab down >/dev/null 2>&1
  exit 1
}
# now_ms: milliseconds since the epoch (busybox date has no %N).
now_ms() { "$LABSRV" now; }
# wait_for SECONDS DESCRIPTION COMMAND...: poll every 100 ms.
wait_for() {
  limit=$1; what=$2; shift 2
  start=$(now_ms)
  while :; do
    if "$@" >/dev/null 2>&1; then
      took=$(( $(now_ms) - start ))
      ok "$what (after ${took} ms)"
      return 0
    fi
    [ $(( $(now_ms) - start )) -gt $((limit*1000)) ] && fail "$what: not within ${limit}s"
    sleep 0.1
  done
}
state_is() { "$VIGIL" status --socket "$RUNDIR/$1.sock" --json | grep -q "\"state\": \"$2\""; }
has_vip() { nsx "$1" "$IP" -o -4 addr show dev eth0 | grep -q "$VIP/"; }
has_dest() { nsx "$1" "$IPVSADM" -Ln | grep -q "$2"; }
lacks_dest() { ! has_dest "$1" "$2"; }
transitions() { "$VIGIL" status --socket "$RUNDIR/$1.sock" --json | sed -n 's/.*"transitions": \([0-9]*\).*/\1/p' | head -1; }
# answers N URL: who answered N requests from the client, sorted, counted
answers() {
  i=0
  while [ $i -lt "$1" ]; do nsx client "$LABSRV" get "$2" || echo FAILED; i=$((i+1)); done | sort | uniq -c | tr '\n' ' '
}

# all_answered N URL: N requests in a row are answered.
all_answered() {
  case $(answers "$1" "$2") in *FAILED*) return 1 ;; esac
}

trap 'lab down >/dev/null 2>&1' EXIT INT TERM
lab down >/dev/null 2>&1
# The tour edits the site file (reload steps): work on a copy.
mkdir -p "$RUNDIR"
cp "$SITE" "$RUNDIR/site.toml"
SITE=$RUNDIR/site.toml
export SITE

say "Build the lab: client, vs1, vs2, rs1, rs2 on one bridge; rs1 and rs2 with the VIP on lo (LVS-DR)"
lab up || fail "lab up"
"$VIGIL" check -c "$SITE" --node vs1 || fail "vigil check"

say "Start both directors"
lab start-director vs1
lab start-director vs2
wait_for 60 "vs1 is master and holds $VIP" state_is vs1 master
wait_for 20 "vs1 holds the VIP" has_vip vs1
wait_for 20 "vs2 is backup" state_is vs2 backup
has_vip vs2 && fail "vs2 holds the VIP while backup"
wait_for 30 "vs1 programs both real servers" has_dest vs1 "10.99.0.4:80"
wait_for 30 "vs2 (the backup) keeps the same rules warm" has_dest vs2 "10.99.0.4:80"

say "vigil status on vs1"
"$VIGIL" status --socket "$RUNDIR/vs1.sock" || fail "vigil status"
echo
nsx vs1 "$IPVSADM" -Ln

say "The client reaches both real servers through the VIP, on WWW and on Telnet"
a=$(answers 8 http://$VIP/); echo "WWW: $a"
case $a in *rs1*rs2*) ok "WWW balanced over rs1 and rs2" ;; *) fail "WWW answers: $a" ;; esac
a=$(answers 8 tcp://$VIP:23); echo "Telnet: $a"
case $a in *rs1*rs2*) ok "Telnet balanced over rs1 and rs2" ;; *) fail "Telnet answers: $a" ;; esac

say "rs1's web server stops: both directors drop it after fall x interval (2 x 1 s)"
lab stop-rs rs1 www
wait_for 30 "vs1 removed 10.99.0.3:80" lacks_dest vs1 "10.99.0.3:80"
wait_for 30 "vs2 removed 10.99.0.3:80" lacks_dest vs2 "10.99.0.3:80"
has_dest vs1 "10.99.0.3:23" || fail "rs1's Telnet (still up) was removed too"
a=$(answers 6 http://$VIP/); echo "WWW: $a"
case $a in *rs1*|*FAILED*) fail "WWW answers after rs1 stopped: $a" ;; esac
ok "clients see only rs2 on WWW"

say "rs1's web server restarts: it comes back after rise (2) checks pass"
lab start-rs rs1 www
wait_for 30 "vs1 has 10.99.0.3:80 again" has_dest vs1 "10.99.0.3:80"
wait_for 30 "vs2 has 10.99.0.3:80 again" has_dest vs2 "10.99.0.3:80"

say "Reload with only a check interval changed: no transition"
t0=$(transitions vs1)
cp "$SITE" "$RUNDIR/site.orig"
sed 's/interval = "1s", timeout = "800ms", rise = 2, fall = 2 }/interval = "900ms", timeout = "800ms", rise = 2, fall = 2 }/' "$RUNDIR/site.orig" >"$SITE.new" && cat "$SITE.new" >"$SITE" && rm -f "$SITE.new"
"$VIGIL" reload --socket "$RUNDIR/vs1.sock" || fail "reload of a good file"
"$VIGIL" reload --socket "$RUNDIR/vs2.sock" || fail "reload of a good file on vs2"
sleep 1
[ "$(transitions vs1)" = "$t0" ] || fail "transitions went from $t0 to $(transitions vs1)"
state_is vs1 master || fail "vs1 not master after reload"
ok "still master, transitions unchanged ($t0)"

say "SIGHUP with a broken file changes nothing"
before=$(nsx vs1 "$IPVSADM" -Ln)
printf '[site\nname = 1\n' >"$SITE"
lab kill-director vs1 HUP
sleep 1
"$VIGIL" status --socket "$RUNDIR/vs1.sock" | grep -q "last reload FAILED" || fail "broken reload not reported"
"$VIGIL" status --socket "$RUNDIR/vs1.sock" | grep "last reload FAILED"
[ "$(nsx vs1 "$IPVSADM" -Ln)" = "$before" ] || fail "IPVS changed after a broken reload"
state_is vs1 master || fail "vs1 not master after a broken reload"
ok "running config kept"
cat "$RUNDIR/site.orig" >"$SITE"
"$VIGIL" reload --socket "$RUNDIR/vs1.sock" >/dev/null || fail "reload of the original file"
"$VIGIL" reload --socket "$RUNDIR/vs2.sock" >/dev/null || fail "reload of the original file on vs2"

say "A failover drill: vs1 hands over to vs2 and back; probes from the client measure the interruption"
wait_for 30 "preflight: both directors agree on site, health and IPVS table" "$VIGIL" drill --check -c "$SITE" --socket "$RUNDIR/vs1.sock"
# The drill talks to vs1's control socket and probes from the client's
# namespace, where the client's traffic comes from.
nsx client "$VIGIL" drill -c "$SITE" --socket "$RUNDIR/vs1.sock" --probe http://$VIP/ --probe tcp://$VIP:23 --back --max-outage 5s \
  || fail "drill"

say "vs1 dies (link cut and process killed at once) while the client probes the VIP every 5 ms"
wait_for 30 "vs1 master before the crash" state_is vs1 master
nsx client "$LABSRV" probe -target http://$VIP/ -every 5ms -for 6s -timeout 500ms -q >"$RUNDIR/probe-crash.txt" 2>&1 &
probe=$!
sleep 1.5
lab cut vs1
lab kill-director vs1 KILL
wait_for 30 "vs2 took over" state_is vs2 master
wait $probe
cat "$RUNDIR/probe-crash.txt"
grep -q "answers .*rs" "$RUNDIR/probe-crash.txt" || fail "no answers during the crash"
wait_for 30 "vs2 serves the client (4 requests in a row answered)" all_answered 4 http://$VIP/

say "vs1 comes back: it removes its stale VIP, preempts (priority 150), and the client sees a bounded interruption"
nsx client "$LABSRV" probe -target http://$VIP/ -every 5ms -for 6s -timeout 500ms -q >"$RUNDIR/probe-back.txt" 2>&1 &
probe=$!
sleep 0.5
lab heal vs1
lab start-director vs1
wait_for 30 "vs1 is master again" state_is vs1 master
wait_for 30 "vs2 is backup again" state_is vs2 backup
wait $probe
cat "$RUNDIR/probe-back.txt"

say "Done: lab torn down"
exit 0
