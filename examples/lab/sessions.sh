#!/bin/sh
# Established connections across every director change: the vm tier's
# proof for issue 14 (item 5). The lab (examples/lab/lab.sh) runs the seed
# site with IPVS connection sync (examples/lab/sessions-site.toml) on vs1
# (priority 150) and vs2 (100); a client holds long-lived sessions through
# the VIP (labsrv sessions): SESSIONS Telnet-like line sessions, IDLE of
# them silent between checks, and KEEPALIVE HTTP keep-alive clients. Then,
# one event at a time, the script changes directors, waits for the site to
# settle and asks the client whether every session open before the event
# still answers (labsrv sessions-check: the idle ones must answer a line
# within 2 s). Each event prints one line:
#
#   event crash: sessions: 20/20 line (10/10 idle) alive, 4/4 http keep-alive alive, 0 resets, longest active gap 4100 ms (...)
#
# Lost sessions are named with how they were lost and their real server,
# then reopened so the next event starts with all of them open again. The
# script runs every event and exits 1 if any lost a session (2 when the
# lab itself did not do what an event asked).
#
# Events: crash (vs1 killed, link cut, and its machine's memory lost as in
# a reboot: lab.sh wipe; vs2 takes over), failback (vs1 healed and
# restarted with empty kernel tables; it preempts), drill-there / drill-back (vigil drill
# from vs1 to vs2, then --resume), sigterm / sigterm-back (the master stops
# gracefully, then restarts and preempts), reload (a changed site file on
# both directors), sync-restart (the backup's vigil restarted, and with it
# its kernel sync daemons) and sync-restart-takeover (vs1's process killed
# again and its link cut, its kernel left as it was: the restarted backup
# must hold the sessions).
#
# POSIX sh (busybox sh in the QEMU guest). Environment as for lab.sh, plus
# IPVSADM, SESSIONS (20), IDLE (10), KEEPALIVE (4), LOGS (1: print both
# directors' whole logs at the end).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=${LAB:-vlab}
IP=${IP:-ip}
VIGIL=${VIGIL:-bin/vigil}
LABSRV=${LABSRV:-bin/labsrv}
SITE=${SITE:-examples/lab/sessions-site.toml}
RUNDIR=${RUNDIR:-/tmp/$LAB}
IPVSADM=${IPVSADM:-ipvsadm}
SESSIONS=${SESSIONS:-20}
IDLE=${IDLE:-10}
KEEPALIVE=${KEEPALIVE:-4}
export LAB IP VIGIL LABSRV SITE RUNDIR
VIP=10.99.0.101
CTL=$RUNDIR/sessions.sock
lab() { sh "$HERE/lab.sh" "$@"; }
nsx() { lab exec "$@"; }

LOST=""    # events that lost a session
SUMMARY="" # every event line, repeated at the end

logs() {
  for f in "$RUNDIR"/vs1.log "$RUNDIR"/vs2.log "$RUNDIR"/sessions.log; do
    [ -f "$f" ] && { echo "---- $f (last 40 lines)"; tail -40 "$f"; }
  done
}
# fail: the lab did not do what an event asked; nothing after it means much.
fail() {
  printf '\nFAIL: %s\n' "$*"
  logs
  lab down >/dev/null 2>&1
  exit 2
}
ok() { printf 'ok: %s\n' "$*"; }
now_ms() { "$LABSRV" now; }
# wait_for SECONDS DESCRIPTION COMMAND...: poll every 250 ms (each poll
# may start a Go program: in an emulated guest, faster polling starves the
# directors and real servers the scenario measures).
wait_for() {
  limit=$1; what=$2; shift 2
  start=$(now_ms)
  while :; do
    if "$@" >/dev/null 2>&1; then
      ok "$what (after $(( $(now_ms) - start )) ms)"
      return 0
    fi
    [ $(( $(now_ms) - start )) -gt $((limit*1000)) ] && fail "$what: not within ${limit}s"
    sleep 0.25
  done
}
state_is() { "$VIGIL" status --socket "$RUNDIR/$1.sock" --json | grep -q "\"state\": \"$2\""; }
has_vip() { nsx "$1" "$IP" -o -4 addr show dev eth0 | grep -q "$VIP/"; }
lacks_vip() { ! has_vip "$1"; }
has_dest() { nsx "$1" "$IPVSADM" -Ln | grep -q "$2"; }
gone() { ! kill -0 "$(cat "$RUNDIR/$1.pid")" 2>/dev/null; }

# settled MASTER BACKUP: the roles are as they should be after an event.
settled() {
  wait_for 60 "$1 is master" state_is "$1" master
  wait_for 20 "$1 holds the VIP" has_vip "$1"
  if [ -n "${2:-}" ]; then
    wait_for 60 "$2 is backup" state_is "$2" backup
    wait_for 20 "$2 does not hold the VIP" lacks_vip "$2"
  fi
}

# synced BACKUP: "HAVE TOTAL", how many of the sessions' connections
# BACKUP's kernel holds as ESTABLISHED (what it can forward if it takes over).
synced() {
  "$LABSRV" sessions-ports -ctl "$CTL" >"$RUNDIR/ports.txt" 2>/dev/null || { echo "0 0"; return; }
  nsx "$1" "$IPVSADM" -Lnc 2>/dev/null | grep ESTABLISHED >"$RUNDIR/conns-$1.txt"
  have=0; total=0
  while read -r addr id; do
    total=$((total+1))
    grep -qF " $addr " "$RUNDIR/conns-$1.txt" && have=$((have+1))
  done <"$RUNDIR/ports.txt"
  echo "$have $total"
}
all_synced() { set -- $(synced "$1"); [ "$2" -gt 0 ] && [ "$1" = "$2" ]; }

# mark: remember where each director's log ends, so that the transitions
# an event caused can be listed after it.
mark() {
  for d in vs1 vs2; do
    n=0
    [ -f "$RUNDIR/$d.log" ] && n=$(( $(wc -l <"$RUNDIR/$d.log") ))
    eval "MARK_$d=$n"
  done
}
# transitions NAME: every state change of the directors since mark. More
# than the event asked for (a "master down timer expired" nobody caused)
# means adverts were late: the guest was starved, and the figures of that
# event measure the machine, not vigil.
transitions() {
  out=""
  for d in vs1 vs2; do
    eval "from=\$MARK_$d"
    t=$(tail -n +$((from+1)) "$RUNDIR/$d.log" 2>/dev/null |
      sed -n 's/.*msg=transition .* from=\([A-Z]*\) to=\([A-Z]*\) reason=\(.*\) priority=.*/\1->\2 (\3)/p' | tr '\n' ';')
    out="$out $d: ${t:-none}"
  done
  echo "event $1: transitions:$out"
}

# before_event NAME BACKUP: wait (up to 30 s) for the backup to hold every
# session's connection, and say how many it holds. Not a failure by
# itself: the check after the event says what that cost.
before_event() {
  printf '\n=== event %s\n' "$1"
  [ -n "${2:-}" ] || { mark; return 0; }
  start=$(now_ms)
  while ! all_synced "$2" && [ $(( $(now_ms) - start )) -lt 30000 ]; do sleep 0.5; done
  set -- "$1" "$2" $(synced "$2")
  echo "event $1: before: backup $2 holds $3/$4 of the sessions' connections (ESTABLISHED in ipvsadm -Lnc)"
  mark
}

# check NAME: are the sessions open before the event still open and answering?
check() {
  out=$("$LABSRV" sessions-check -ctl "$CTL" -label "$1" -answer 2s -settle 30s 2>&1)
  rc=$?
  echo "$out"
  transitions "$1"
  SUMMARY="$SUMMARY
$(echo "$out" | head -1)"
  [ $rc -eq 0 ] || LOST="$LOST $1"
}

trap 'lab down >/dev/null 2>&1' EXIT INT TERM
lab down >/dev/null 2>&1
# The reload event edits the site file: work on a copy.
mkdir -p "$RUNDIR"
cp "$SITE" "$RUNDIR/site.toml"
SITE=$RUNDIR/site.toml
export SITE

printf '\n=== Lab: the seed site with IPVS connection sync on vs1 (150) and vs2 (100)\n'
lab up || fail "lab up"
"$VIGIL" check -c "$SITE" --node vs1 || fail "vigil check"
lab start-director vs1
lab start-director vs2
settled vs1 vs2
wait_for 30 "vs1 programs both real servers" has_dest vs1 "10.99.0.4:23"
wait_for 30 "vs2 keeps the same rules warm" has_dest vs2 "10.99.0.4:23"
nsx vs1 "$IPVSADM" -Ln

printf '\n=== Sessions: %s line (%s idle) and %s HTTP keep-alive clients through %s\n' "$SESSIONS" "$IDLE" "$KEEPALIVE" "$VIP"
# Started directly (not through lab.sh) so the pid file names labsrv and
# lab.sh down ends it.
$IP netns exec "$LAB-client" "$LABSRV" sessions -target $VIP:23 -n "$SESSIONS" -idle "$IDLE" \
  -http $VIP:80 -keepalive "$KEEPALIVE" -ctl "$CTL" >"$RUNDIR/sessions.log" 2>&1 &
echo $! >"$RUNDIR/sessions.pid"
wait_for 60 "the session client has its sessions open" test -S "$CTL"
cat "$RUNDIR/sessions.log"
before_event start vs2
check start
[ -z "$LOST" ] || fail "sessions lost with nothing happening"

before_event crash vs2
lab cut vs1
lab kill-director vs1 KILL
# A crashed machine comes back with empty kernel tables: a process killed
# in a namespace that lives on would keep its connections and hide what a
# returning director lacks.
lab wipe vs1 || fail "wipe vs1"
settled vs2
check crash

before_event failback
lab heal vs1
lab start-director vs1
settled vs1 vs2
check failback

before_event drill-there vs2
wait_for 60 "drill preflight: both directors agree" "$VIGIL" drill --check -c "$SITE" --socket "$RUNDIR/vs1.sock"
"$VIGIL" drill -c "$SITE" --socket "$RUNDIR/vs1.sock" || echo "event drill-there: vigil drill failed (exit $?)"
settled vs2 vs1
check drill-there

before_event drill-back vs1
"$VIGIL" drill --resume -c "$SITE" --socket "$RUNDIR/vs1.sock" || fail "vigil drill --resume"
settled vs1 vs2
check drill-back

before_event sigterm vs2
lab kill-director vs1 TERM
wait_for 30 "vs1 stopped" gone vs1
settled vs2
check sigterm

before_event sigterm-back
lab start-director vs1
settled vs1 vs2
check sigterm-back

before_event reload vs2
# A real change on both directors: every check's interval, as an operator
# tuning the site would.
sed 's/interval = "2s", timeout = "2s"/interval = "2500ms", timeout = "2s"/' "$SITE" >"$SITE.new" && cat "$SITE.new" >"$SITE" && rm -f "$SITE.new"
grep -q 'interval = "2500ms"' "$SITE" || fail "the reload's edit did not apply"
"$VIGIL" reload --socket "$RUNDIR/vs1.sock" || fail "reload on vs1"
"$VIGIL" reload --socket "$RUNDIR/vs2.sock" || fail "reload on vs2"
sleep 3 # the checks run again at the new interval
settled vs1 vs2
check reload

before_event sync-restart vs2
lab kill-director vs2 TERM
wait_for 30 "vs2 stopped" gone vs2
lab start-director vs2
settled vs1 vs2
wait_for 30 "vs2 has its rules again" has_dest vs2 "10.99.0.4:23"
check sync-restart

# The restart is proven by a takeover: the restarted backup's kernel must
# hold every session.
before_event sync-restart-takeover vs2
lab cut vs1
lab kill-director vs1 KILL
settled vs2
check sync-restart-takeover

printf '\n=== Directors logged (ERROR/WARN lines)\n'
for d in vs1 vs2; do
  echo "$d: $(grep -c 'level=ERROR\|level=WARN' "$RUNDIR/$d.log") line(s)"
  grep 'level=ERROR\|level=WARN' "$RUNDIR/$d.log" | sed 's/^time=[^ ]* //' | sort | uniq -c | sort -rn | head -8
done

if [ "${LOGS:-}" = 1 ]; then
  for d in vs1 vs2; do printf '\n=== %s.log\n' "$d"; cat "$RUNDIR/$d.log"; done
fi

printf '\n=== Summary%s\n' "$SUMMARY"
if [ -n "$LOST" ]; then
  echo "FAIL: sessions lost at:$LOST"
  logs
  exit 1
fi
echo "every session survived every event"
exit 0
