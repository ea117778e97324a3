package vrrp

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// holder stands in for the daemon's VIP claimer: BeforeMaster claims, a
// Transition event to Master claims, any other Transition releases.
type holder struct {
	mu   sync.Mutex
	held bool
	log  []string
}

func (h *holder) set(held bool, why string) {
	h.mu.Lock()
	h.held = held
	h.log = append(h.log, why)
	h.mu.Unlock()
}

func (h *holder) onEvent(ev Event) {
	if ev.Kind == Transition {
		h.set(ev.To == Master, "event "+ev.From.String()+"->"+ev.To.String())
	}
}

// TestStepDownRacingTakeoverLeavesNoHolder: a backup's down timer fires
// and it starts claiming the VIPs (BeforeMaster); while the claim is in
// progress the master's advert arrives and makes it step down. Whatever
// the order, the instance ends Backup and the holder holds nothing. Before
// the steps were ordered, the step-down's release was delivered first and
// the late claim and Master event put the VIPs back on a backup.
func TestStepDownRacingTakeoverLeavesNoHolder(t *testing.T) {
	for _, tc := range []struct {
		name string
		prio uint8 // the racing advert: a higher-priority master, or one that resigns and comes back
	}{{"higher priority advert", 200}, {"equal priority higher address", 100}} {
		t.Run(tc.name, func(t *testing.T) {
			h := &holder{}
			entered, release := make(chan struct{}), make(chan struct{})
			cfg := Config{Priority: 100, Interval: 100 * time.Millisecond, VRID: 51}
			cfg.BeforeMaster = func() {
				h.set(true, "BeforeMaster")
				close(entered)
				<-release
			}
			clk := newFakeClock()
			tr := (*bus)(nil).port(self)
			in, err := NewInstance(cfg, tr, clk, h.onEvent)
			if err != nil {
				t.Fatal(err)
			}
			if err := in.start(); err != nil {
				t.Fatal(err)
			}
			timerDone := make(chan struct{})
			// Exactly to the down timer, so no timer armed later fires here.
			go func() { defer close(timerDone); clk.Advance(mdi(100, cfg.Interval)) }()
			<-entered
			racerDone := make(chan struct{})
			go func() {
				defer close(racerDone)
				a := Advert{Version: 3, VRID: 51, Priority: tc.prio, Interval: cfg.Interval}
				b, _ := a.Marshal(netip.MustParseAddr(peerH), Group4)
				tr.deliver(Packet{Payload: b, Src: netip.MustParseAddr(peerH), Dst: Group4, TTL: TTL})
			}()
			// Let the racer run as far as it can while the claim is in
			// progress (it must wait for the takeover's step to finish).
			time.Sleep(50 * time.Millisecond)
			close(release)
			<-timerDone
			<-racerDone
			if s := in.State(); s != Backup {
				t.Fatalf("state %v, want BACKUP", s)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.held {
				t.Fatalf("a backup holds the VIPs; holder saw %q", h.log)
			}
			want := []string{"event INIT->BACKUP", "BeforeMaster", "event BACKUP->MASTER", "event MASTER->BACKUP"}
			if !slices.Equal(h.log, want) {
				t.Fatalf("holder saw %q, want %q", h.log, want)
			}
		})
	}
}

// TestFirstPeriodicAdvertAfterSlowClaim: claiming the VIPs may take longer
// than an advert interval; the new master's first advert, and the first
// periodic one, still leave only after BeforeMaster returned.
func TestFirstPeriodicAdvertAfterSlowClaim(t *testing.T) {
	for _, iv := range []time.Duration{10 * time.Millisecond, time.Second} {
		t.Run(iv.String(), func(t *testing.T) {
			clk := newFakeClock()
			tr := (*bus)(nil).port(self)
			sentAtClaim := -1
			cfg := Config{Priority: 100, Interval: iv}
			cfg.BeforeMaster = func() {
				// A slow netlink: five advert intervals pass while claiming.
				clk.Advance(5 * iv)
				tr.mu.Lock()
				sentAtClaim = len(tr.sent)
				tr.mu.Unlock()
			}
			r := newRigOn(t, cfg, clk, tr)
			clk.Advance(mdi(100, iv))
			r.want(Master)
			if sentAtClaim != 0 {
				t.Fatalf("%d adverts left while the VIPs were being claimed, want 0", sentAtClaim)
			}
			if s := tr.take(); len(s) != 1 {
				t.Fatalf("after the claim: %d adverts, want the 1 sent at once", len(s))
			}
			clk.Advance(iv)
			if s := tr.take(); len(s) != 1 {
				t.Fatalf("an interval later: %d adverts, want 1", len(s))
			}
		})
	}
}

// TestMasterAnswersAtMostOncePerInterval: a flood of lower-priority or
// resigning adverts (spoofed, say) is answered at most once per advert
// interval, not once per packet.
func TestMasterAnswersAtMostOncePerInterval(t *testing.T) {
	for _, prio := range []uint8{50, 0} {
		r := masterRig(t, Config{Priority: 150, Interval: 100 * time.Millisecond})
		r.clk.Advance(50 * time.Millisecond) // mid-interval: no periodic advert due
		r.tr.take()
		for range 1000 {
			r.from(peerL, prio)
		}
		if s := r.tr.take(); len(s) != 1 {
			t.Fatalf("priority %d flood: %d answers, want 1", prio, len(s))
		}
		if n := r.in.Status().Counters.AnswersSkipped; n != 999 {
			t.Fatalf("priority %d flood: AnswersSkipped = %d, want 999", prio, n)
		}
		// A new interval: the next one is answered again.
		r.clk.Advance(100 * time.Millisecond)
		r.tr.take()
		r.from(peerL, prio)
		if s := r.tr.take(); len(s) != 1 {
			t.Fatalf("priority %d, next interval: %d adverts, want 1", prio, len(s))
		}
		r.want(Master)
	}
}
