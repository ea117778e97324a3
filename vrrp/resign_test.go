package vrrp

import (
	"testing"
	"time"
)

// TestResign: a master resigns with one priority-0 advert and becomes
// Backup (not Fault), the event says Resigned, it sends nothing more, and
// the first advert of the new master, of lower priority as in a drill or
// a stop, is reported once as a Successor.
func TestResign(t *testing.T) {
	r := masterRig(t, Config{Priority: 150})
	if !r.in.Resign("handover") {
		t.Fatal("Resign of a master reported false")
	}
	r.want(Backup)
	if s := r.tr.take(); len(s) != 1 || s[0].Priority != 0 {
		t.Fatalf("sent %+v, want one priority-0 advert", s)
	}
	evs := r.events()
	if len(evs) != 1 || evs[0].Kind != Transition || evs[0].From != Master || evs[0].To != Backup || !evs[0].Resigned {
		t.Fatalf("events %+v, want one resigned MASTER->BACKUP", evs)
	}
	if st := r.in.Status(); len(st.Faults) != 0 {
		t.Fatalf("faults %v after a resign", st.Faults)
	}
	r.clk.Advance(500 * time.Millisecond)
	if s := r.tr.take(); len(s) != 0 {
		t.Fatalf("a resigned master sent %+v", s)
	}
	r.from(peerL, 100) // lower priority than ours: still the successor
	r.from(peerL, 100)
	evs = r.events()
	if len(evs) != 1 || evs[0].Kind != Successor || evs[0].Peer.String() != peerL || evs[0].MasterPriority != 100 {
		t.Fatalf("events %+v, want one Successor from %s", evs, peerL)
	}
	if r.in.Resign("again") {
		t.Fatal("Resign of a backup reported true")
	}
}

// TestResignWithoutSuccessor: nobody takes over; the resigned instance
// becomes master again after Master_Down_Interval, and no Successor is
// reported for its own return.
func TestResignWithoutSuccessor(t *testing.T) {
	r := masterRig(t, Config{Priority: 150})
	r.in.Resign("handover")
	r.events()
	r.clk.Advance(mdi(150, time.Second))
	r.want(Master)
	for _, ev := range r.events() {
		if ev.Kind == Successor {
			t.Fatalf("Successor %+v with no other master", ev)
		}
	}
}

// TestPreemptHold: a hold keeps a higher-priority backup from preempting
// a lower-priority master; once cleared, it preempts as usual; a master
// that goes silent is taken over even while held.
func TestPreemptHold(t *testing.T) {
	r := newRig(t, Config{Priority: 150})
	r.in.SetPreemptHold("resync", true)
	if h := r.in.Status().PreemptHolds; len(h) != 1 || h[0] != "resync" {
		t.Fatalf("holds %v", h)
	}
	for range 10 {
		r.from(peerL, 100)
		r.clk.Advance(time.Second)
	}
	r.want(Backup)
	r.in.SetPreemptHold("resync", false)
	for i := 0; i < 10 && r.in.State() != Master; i++ {
		r.from(peerL, 100)
		r.clk.Advance(time.Second)
	}
	r.want(Master)

	// Held, and the master falls silent: take over after Master_Down_Interval.
	r2 := newRig(t, Config{Priority: 150})
	r2.in.SetPreemptHold("resync", true)
	r2.from(peerL, 100)
	r2.clk.Advance(mdi(150, time.Second))
	r2.want(Master)
}

// TestSyncGroupFollowsAResign: a member that resigns makes the other
// masters of its group resign too (priority 0, Resigned), not merely step
// down, so the daemon keeps every VIP of the group until the new master.
func TestSyncGroupFollowsAResign(t *testing.T) {
	clk := newFakeClock()
	ext := newRigOn(t, Config{Name: "ext", VRID: 1, Priority: 150}, clk, (*bus)(nil).port(self))
	gw := newRigOn(t, Config{Name: "gw", VRID: 2, Priority: 150}, clk, (*bus)(nil).port(self))
	NewSyncGroup("nat", ext.in, gw.in)
	clk.Advance(mdi(150, time.Second))
	ext.want(Master)
	gw.want(Master)
	ext.events()
	gw.events()
	ext.tr.take()
	ext.in.Resign("handover")
	gw.want(Backup)
	var resigned bool
	for _, ev := range gw.events() {
		resigned = resigned || (ev.Kind == Transition && ev.To == Backup && ev.Resigned)
	}
	if !resigned {
		t.Fatal("the group's other member stepped down without resigning")
	}
}

// TestWithdraw: a stopping master resigns and then stays Backup: no down
// timer takes the VIPs back when its successor is slow, nor a priority-0
// advert, but the successor is still reported; leaving master runs
// LeftMaster before the priority-0 advert is sent.
func TestWithdraw(t *testing.T) {
	var order []string
	cfg := Config{Priority: 150}
	cfg.LeftMaster = func() { order = append(order, "LeftMaster") }
	r := masterRig(t, cfg)
	if !r.in.Withdraw("stopping") {
		t.Fatal("Withdraw of a master reported false")
	}
	if s := r.tr.take(); len(s) != 1 || s[0].Priority != 0 || len(order) != 1 {
		t.Fatalf("sent %+v, LeftMaster calls %v", s, order)
	}
	r.clk.Advance(10 * mdi(150, time.Second))
	r.want(Backup)
	r.from(peerL, 0)
	r.clk.Advance(10 * mdi(150, time.Second))
	r.want(Backup)
	r.events()
	r.from(peerL, 100)
	if evs := r.events(); len(evs) != 1 || evs[0].Kind != Successor {
		t.Fatalf("events %+v, want a Successor", evs)
	}
}
