// Package vrrp owns the election: the VRRP wire format (VRRPv3 of RFC 5798
// for IPv4 and IPv6, VRRPv2 of RFC 3768 for IPv4 with keepalived's simple
// text authentication), the state machine of RFC 5798 section 6 with its
// timers, the transports that carry adverts, and tracking (interfaces,
// scripts, sync groups). It interoperates with keepalived 2.2.7 on one VRID
// (tested: v3 multicast, v3 unicast, v2 with auth_type PASS).
//
// # Wire format
//
// Advert is one advertisement as plain data; Advert.Marshal(src, dst) and
// Unmarshal(b, src, dst) encode and decode the VRRP message (no IP header).
// src and dst feed the v3 pseudo-header checksum (12 bytes for IPv4, 40 for
// IPv6); v2 sums the message only. Every rejected packet is a *DropError
// with a DropReason, which the instance counts.
//
// # Election
//
//	tr, err := vrrp.NewRawTransport(vrrp.RawConfig{Interface: "eth0", Source: primary})
//	in, err := vrrp.NewInstance(vrrp.Config{Name: "www", VRID: 51, Priority: 150,
//		Interval: time.Second, VIPs: vips}, tr, clock.System(), onEvent)
//	go in.Run(ctx)          // Initialize -> Backup (or Master at priority 255)
//	...
//	in.Stop(stopCtx)        // graceful: a master sends priority 0 first
//
// Timers follow RFC 5798: Master_Down_Interval = 3*Master_Adver_Interval +
// Skew_Time, Skew_Time = (256-priority)*Master_Adver_Interval/256 (v2:
// (256-priority)/256 s). A backup learns the master's interval from its v3
// adverts and takes over Skew_Time after a priority-0 advert. Equal
// priorities are broken by the higher primary address (Transport.LocalAddr,
// IPv6: link-local). Preemption is on unless Config.NoPreempt;
// Config.PreemptDelay and Config.StartupDelay hold it back.
//
// Additions to the RFC, for split-brain hygiene (keepalived has them as
// options): a master that hears a lower priority answers with an advert at
// once and publishes a Reannounce event (at most one per second while the
// same node keeps advertising; always after a silence, i.e. a healed
// partition), which the
// daemon turns into gratuitous ARP / unsolicited NA; a master that hears a
// higher priority sends one last advert before stepping down so the winner
// learns a split brain happened and re-announces.
//
// Config.DownAdverts (keepalived down_timer_adverts) replaces the 3 of
// Master_Down_Interval for lossy links. A master down timer that fires late
// (more than half an interval: the process was not scheduled, keepalived's
// "thread timer expired") waits a short grace (a quarter interval, 5..250
// ms) so adverts queued in the socket meanwhile can still reset it; this is
// counted in Counters.LateTimers.
//
// Cancelling Run's context stops the instance silently, like a crash (no
// priority-0 advert). The transport is the caller's to close.
//
// # Events
//
// onEvent receives every Event (Transition or Reannounce) in order, from a
// goroutine of the instance: it must not block for long; a panic in it is
// recovered and logged, and the election goes on.
//
// Every change of state is one step: it decides under the instance's lock
// and records its effects (BeforeMaster, adverts to send, the advert
// schedule, events), which are applied before the next step decides. So
// effects leave in the order the steps were taken, whatever goroutines
// (socket reader, timers, SetPriority, Stop) race: a step-down that races
// a takeover is applied after the takeover's BeforeMaster, and its event
// is queued after the takeover's. A new master's periodic adverts start
// only after BeforeMaster and its first advert, however long claiming
// takes. A master answers other masters' adverts (lower priority, or
// resigning) at most once per advert interval (Counters.AnswersSkipped). Status returns the state,
// effective priority, master seen, faults and Counters (adverts sent and
// received, send errors, transitions, re-announces, drops by reason).
//
// # Transports
//
// RawTransport: raw IP protocol 112, multicast to 224.0.0.18 / ff02::12 on
// one interface (loopback off), or unicast to RawConfig.Peers; TTL / hop
// limit 255 on send and checked on receive; packets from other interfaces,
// from ourselves and (unicast) from non-peers are ignored. Create it inside
// the network namespace it belongs to. GossipDemux/GossipTransport carry the
// same adverts over any Messenger (the cluster channel), tagged with VRID
// and sender so one channel serves many instances.
//
// Below one-second intervals a master's periodic adverts are sent by the
// RawTransport's pacer (internal/pacer), a thread outside the Go runtime
// that wakes once per advert as keepalived does; a Go timer wakes later
// when the process is busy and costs several thread wake-ups per advert
// (docs/pacer.md has the measurements). The thread starts when the
// transport first paces, so an instance at one-second adverts has none;
// RawConfig.PacerRTPriority runs it at a SCHED_RR priority. The election
// still decides everything: it sends the first advert of each schedule
// itself, hands the marshalled packet over, renews the pacer's lease
// every quarter lease, and stops the pacer before any last advert
// (priority 0 or the split-brain answer) leaves. The lease is three of
// the longest Master_Down_Intervals, at least 1 s (pacing.go): a process
// that stops running stops advertising within it (Counters.LapsedLeases).
// Without cgo, or with a transport that cannot pace, the advert timer
// sends.
//
// # Tracking
//
// Instance.SetFault(reason, on) and Instance.SetWeight(name, delta) are the
// hooks. WatchInterfaces (netlink link updates, operational state) and
// RunScript (a command at an interval with rise/fall) drive them with
// keepalived's semantics: weight 0 means down is a fault; a positive weight
// is added while up; a negative one while down; the effective priority is
// clamped to 1..254 and an address owner (255) is never changed.
// NewSyncGroup keeps instances master or backup together and puts all of
// them in Fault while one has a fault of its own; use weight-0 trackers
// (faults) with sync groups, as keepalived requires, since inconsistent
// priorities make a group flap.
package vrrp
