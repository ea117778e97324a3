// Package failbench measures the failover a client sees when the VRRP
// master of a director pair dies or stops, for vigil and for keepalived in
// the same network-namespace lab, so the two can be compared on one table.
//
// The lab (internal/netlab) is a bridge with three hosts: client, vs1
// (priority 150, the master) and vs2 (priority 100). Each director runs a
// small TCP responder on 0.0.0.0:Port that answers with its own name, so a
// probe through the VIP says which director holds it. An agent in the
// client namespace (this package's Agent, run as a child process) probes the
// VIP over TCP every 5 ms without touching its ARP cache and records every
// VRRP advert it sees on the wire with a kernel timestamp.
//
// Per run it reports the time from the failure (link cut plus SIGKILL, or
// SIGTERM for a graceful stop) to the first answer from the new master, and
// the time from the old master's last advert to that answer. It then brings
// the old master back, lets it preempt, and counts the probes that failed
// meanwhile.
//
// A graceful stop and a handover through the daemon's own command (vigil's
// control socket, then "resume") are planned handovers: vigil's old master
// answers until the new one does (make-before-break), so for them the
// figures are the probes that failed and the largest gap between two
// consecutive answers, from the request until the new master is settled. It also samples each daemon's RSS and CPU time as master, and
// optionally counts spurious transitions under CPU load.
//
// The daemons are pluggable (Impl): an implementation says how to write
// its config for one director and which command runs it.
package failbench
