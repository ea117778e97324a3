#!/bin/sh
# The seed article's LVS-DR WWW + Telnet cluster, with two directors, on
# one machine: five network namespaces on a bridge.
#
#   client 10.99.0.10   vs1 10.99.0.1   vs2 10.99.0.2   rs1 10.99.0.3   rs2 10.99.0.4
#   VIP 10.99.0.101 (label eth0:101), WWW on 80 (HTTP check), Telnet-like on 23 (TCP check)
#
# POSIX sh (also busybox sh inside the QEMU guest). Usage:
#   lab.sh up | down | start-rs NAME [www|line] | stop-rs NAME [www|line]
#          start-director NAME | kill-director NAME [SIGNAL] | cut NAME | heal NAME | exec NAME CMD...
#          wipe NAME (a director's machine rebooted: its namespace recreated empty)
# Environment: LAB (namespace prefix, default "vlab"), IP (ip command; the
# guest sets /sbin/ip because busybox's ip has no netns), VIGIL, LABSRV
# (binaries), SITE (site file), RUNDIR (logs, pid files, sockets).
set -eu
LAB=${LAB:-vlab}
IP=${IP:-ip}
VIGIL=${VIGIL:-bin/vigil}
LABSRV=${LABSRV:-bin/labsrv}
SITE=${SITE:-examples/lab/site.toml}
RUNDIR=${RUNDIR:-/tmp/$LAB}
VIP=10.99.0.101
HOSTS="client vs1 vs2 rs1 rs2"

addr_of() {
  case $1 in
    vs1) echo 10.99.0.1 ;; vs2) echo 10.99.0.2 ;; rs1) echo 10.99.0.3 ;;
    rs2) echo 10.99.0.4 ;; client) echo 10.99.0.10 ;; *) echo "unknown host $1" >&2; exit 2 ;;
  esac
}

nsexec() { n=$1; shift; $IP netns exec "$LAB-$n" "$@"; }

sysctl_ns() { # host key value
  nsexec "$1" sh -c "echo $3 > /proc/sys/$(echo "$2" | tr . /)"
}

up() {
  mkdir -p "$RUNDIR" /run/vigil-lab
  # The cluster channel's shared key (AES-256), readable by root only.
  if [ ! -s /run/vigil-lab/cluster.key ]; then
    (umask 077; head -c 32 /dev/urandom >/run/vigil-lab/cluster.key)
  fi
  $IP netns add "$LAB-br"
  $IP -n "$LAB-br" link set lo up
  $IP -n "$LAB-br" link add br0 type bridge mcast_snooping 0
  $IP -n "$LAB-br" link set br0 up
  i=0
  for h in $HOSTS; do
    $IP netns add "$LAB-$h"
    $IP link add eth0 netns "$LAB-$h" type veth peer name "$LAB-p$i" netns "$LAB-br"
    $IP -n "$LAB-br" link set "$LAB-p$i" master br0 up
    $IP -n "$LAB-$h" link set lo up
    $IP -n "$LAB-$h" addr add "$(addr_of "$h")/24" dev eth0
    $IP -n "$LAB-$h" link set eth0 up
    i=$((i+1))
  done
  for rs in rs1 rs2; do
    # LVS-DR real server: the VIP on lo, and never answer ARP for it.
    $IP -n "$LAB-$rs" addr add "$VIP/32" dev lo
    sysctl_ns "$rs" net.ipv4.conf.all.arp_ignore 1
    sysctl_ns "$rs" net.ipv4.conf.all.arp_announce 2
    sysctl_ns "$rs" net.ipv4.conf.eth0.arp_ignore 1
    sysctl_ns "$rs" net.ipv4.conf.eth0.arp_announce 2
    start_rs "$rs"
  done
  echo "lab $LAB up: $HOSTS on bridge $LAB-br; VIP $VIP"
}

# A real server runs its WWW and its line service as two processes, so
# one can be stopped alone: start-rs rs1 [www|line], stop-rs rs1 [www|line].
start_rs() {
  for svc in ${2:-www line}; do
    case $svc in
      www) $IP netns exec "$LAB-$1" "$LABSRV" serve -name "$1" -http :80 -line "" >>"$RUNDIR/$1-www.log" 2>&1 & ;;
      line) $IP netns exec "$LAB-$1" "$LABSRV" serve -name "$1" -http "" -line :23 >>"$RUNDIR/$1-line.log" 2>&1 & ;;
    esac
    echo $! >"$RUNDIR/$1-$svc.pid"
  done
}

stop_rs() {
  for svc in ${2:-www line}; do
    if [ -f "$RUNDIR/$1-$svc.pid" ]; then kill "$(cat "$RUNDIR/$1-$svc.pid")" 2>/dev/null || true; fi
    rm -f "$RUNDIR/$1-$svc.pid"
  done
}

# Background jobs start `ip netns exec` directly (not through a shell
# function, which would fork a subshell): $! is then the pid that execs
# into the program, so the pid files can signal it.
start_director() {
  $IP netns exec "$LAB-$1" "$VIGIL" run -c "$SITE" --node "$1" --socket "$RUNDIR/$1.sock" --state-dir "$RUNDIR" >>"$RUNDIR/$1.log" 2>&1 &
  echo $! >"$RUNDIR/$1.pid"
}

# cut/heal take a host's bridge port down/up (a dead machine, a pulled cable).
port_of() {
  i=0
  for h in $HOSTS; do
    [ "$h" = "$1" ] && { echo "$LAB-p$i"; return; }
    i=$((i+1))
  done
}

kill_director() { # NAME [SIGNAL]
  [ -f "$RUNDIR/$1.pid" ] && kill -"${2:-KILL}" "$(cat "$RUNDIR/$1.pid")" 2>/dev/null || true
}

# wipe NAME: a director's machine lost its memory, as in a crash and
# reboot. Its director is killed and its namespace recreated with only its
# address: no IPVS services, connections or sync daemons, no VIP. The
# bridge port keeps its state (a cut director stays cut until heal).
wipe() {
  case $1 in vs1|vs2) ;; *) echo "wipe: directors only, not $1" >&2; exit 2 ;; esac
  port=$(port_of "$1")
  was_up=0
  $IP -n "$LAB-br" -o link show "$port" | grep -q '[<,]UP[,>]' && was_up=1
  kill_director "$1" KILL
  n=0
  while [ -f "$RUNDIR/$1.pid" ] && kill -0 "$(cat "$RUNDIR/$1.pid")" 2>/dev/null; do
    n=$((n+1)); [ $n -gt 100 ] && { echo "wipe: $1's director does not die" >&2; exit 1; }
    sleep 0.1
  done
  $IP netns del "$LAB-$1"
  # The namespace, its eth0 and the veth's bridge end go once nothing
  # holds them; the port's name is reused below.
  n=0
  while $IP -n "$LAB-br" link show "$port" >/dev/null 2>&1; do
    n=$((n+1)); [ $n -gt 200 ] && { echo "wipe: $port still exists" >&2; exit 1; }
    sleep 0.1
  done
  $IP netns add "$LAB-$1"
  $IP link add eth0 netns "$LAB-$1" type veth peer name "$port" netns "$LAB-br"
  $IP -n "$LAB-br" link set "$port" master br0
  [ $was_up = 1 ] && $IP -n "$LAB-br" link set "$port" up
  $IP -n "$LAB-$1" link set lo up
  $IP -n "$LAB-$1" addr add "$(addr_of "$1")/24" dev eth0
  $IP -n "$LAB-$1" link set eth0 up
  echo "$1 wiped: namespace $LAB-$1 recreated empty (bridge port $port $( [ $was_up = 1 ] && echo up || echo down))"
}

down() {
  for p in "$RUNDIR"/*.pid; do
    [ -f "$p" ] || continue
    kill -KILL "$(cat "$p")" 2>/dev/null || true
    rm -f "$p"
  done
  for h in $HOSTS br; do $IP netns del "$LAB-$h" 2>/dev/null || true; done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  up) up ;;
  down) down ;;
  start-rs) start_rs "$@" ;;
  stop-rs) stop_rs "$@" ;;
  start-director) start_director "$1" ;;
  kill-director) kill_director "$@" ;;
  cut) $IP -n "$LAB-br" link set "$(port_of "$1")" down ;;
  heal) $IP -n "$LAB-br" link set "$(port_of "$1")" up ;;
  exec) h=$1; shift; nsexec "$h" "$@" ;;
  wipe) wipe "$1" ;;
  *) echo "usage: lab.sh up|down|start-rs N|stop-rs N|start-director N|kill-director N [SIG]|cut N|heal N|wipe N|exec N CMD..." >&2; exit 2 ;;
esac
