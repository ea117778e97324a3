package vrrp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/pacer"
)

// pacingTransport is a fakeTransport that can pace. It logs sends and
// pacer calls in one list, so tests see their order.
type pacingTransport struct {
	*fakeTransport
	mu       sync.Mutex
	ops      []string
	paceErr  error
	renewOK  bool // what Renew answers while pacing
	pacing   bool
	interval time.Duration
	stats    pacer.Stats
}

func (p *pacingTransport) log(op string) {
	p.mu.Lock()
	p.ops = append(p.ops, op)
	p.mu.Unlock()
}

func (p *pacingTransport) Send(a Advert) error {
	p.log(fmt.Sprintf("send %d", a.Priority))
	return p.fakeTransport.Send(a)
}

func (p *pacingTransport) Pace(a Advert, interval, lease time.Duration) error {
	p.log(fmt.Sprintf("pace %d", a.Priority))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paceErr != nil {
		return p.paceErr
	}
	if lease <= interval {
		return fmt.Errorf("lease %v not longer than the interval %v", lease, interval)
	}
	p.pacing, p.interval = true, interval
	return nil
}

func (p *pacingTransport) Renew(time.Duration) bool {
	p.log("renew")
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.renewOK {
		p.pacing = false
	}
	return p.pacing
}

func (p *pacingTransport) Unpace() {
	p.log("unpace")
	p.mu.Lock()
	p.pacing = false
	p.mu.Unlock()
}

func (p *pacingTransport) PacedStats() pacer.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// take returns and forgets the log.
func (p *pacingTransport) take() []string { return takeAll(&p.mu, &p.ops) }

func pacedRig(t *testing.T, cfg Config) (*rig, *pacingTransport) {
	t.Helper()
	pt := &pacingTransport{fakeTransport: (*bus)(nil).port(self), renewOK: true}
	return startRig(t, cfg, newFakeClock(), pt.fakeTransport, pt), pt
}

func wantOps(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %q, want %q", step, got, want)
	}
}

// A master's periodic adverts go to the pacer, with a lease the election
// renews every paceRenewal; they stop before a leaving master's last
// advert.
func TestPacedMaster(t *testing.T) {
	iv := 10 * time.Millisecond
	renew := paceRenewal(iv)
	r, pt := pacedRig(t, Config{Priority: 100, Interval: iv})
	r.clk.Advance(mdi(100, iv))
	r.want(Master)
	wantOps(t, "becoming master", pt.take(), "send 100", "pace 100")
	r.clk.Advance(renew - time.Millisecond)
	wantOps(t, "before the first renewal", pt.take()) // no advert from a timer
	r.clk.Advance(time.Millisecond)
	wantOps(t, "first renewal", pt.take(), "renew")
	r.clk.Advance(2 * renew)
	wantOps(t, "two renewals more", pt.take(), "renew", "renew")

	r.in.SetPriority(120)
	wantOps(t, "new priority", pt.take(), "send 120", "pace 120")

	pt.stats = pacer.Stats{Sent: 250, Errors: 2}
	if c := r.in.Status().Counters; c.AdvertsSent != 250+2 || c.SendErrors != 2 {
		t.Fatalf("counters %+v: the paced adverts must count", c)
	}

	if err := r.in.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantOps(t, "stop", pt.take(), "unpace", "send 0")
	r.clk.Advance(time.Minute)
	wantOps(t, "after stop", pt.take())
}

// Every way out of Master stops the pacer first.
func TestPacedMasterLeaves(t *testing.T) {
	iv := 10 * time.Millisecond
	master := func(t *testing.T) (*rig, *pacingTransport) {
		r, pt := pacedRig(t, Config{Priority: 100, Interval: iv})
		r.clk.Advance(mdi(100, iv))
		r.want(Master)
		pt.take()
		return r, pt
	}
	t.Run("higher priority heard", func(t *testing.T) {
		r, pt := master(t)
		r.fromI(peerL, 101, iv)
		r.want(Backup)
		wantOps(t, "step down", pt.take(), "unpace", "send 100")
		r.clk.Advance(mdi(100, iv) - time.Millisecond)
		wantOps(t, "as backup", pt.take())
	})
	t.Run("fault", func(t *testing.T) {
		r, pt := master(t)
		r.in.SetFault("eth0 down", true)
		r.want(Fault)
		wantOps(t, "fault", pt.take(), "unpace", "send 0")
	})
	t.Run("halt", func(t *testing.T) {
		r, pt := master(t)
		r.in.halt("context done")
		wantOps(t, "halt", pt.take(), "unpace")
	})
}

// A renewal that finds the lease run out (the process was not scheduled
// for a whole lease, and the pacer stopped) is counted, and the master
// advertises at once and paces again.
func TestPacedLeaseLapsed(t *testing.T) {
	iv := 20 * time.Millisecond
	renew := paceRenewal(iv)
	r, pt := pacedRig(t, Config{Priority: 100, Interval: iv})
	r.clk.Advance(mdi(100, iv))
	pt.take()
	pt.renewOK = false
	r.clk.Advance(renew)
	wantOps(t, "lapsed", pt.take(), "renew", "send 100", "pace 100")
	if n := r.in.Status().Counters.LapsedLeases; n != 1 {
		t.Fatalf("LapsedLeases = %d", n)
	}
	pt.renewOK = true
	r.clk.Advance(renew)
	wantOps(t, "renewed", pt.take(), "renew")
}

// Without a working pacer (no cgo), or at intervals of a second and more
// (nothing to save), the advert timer sends.
func TestUnpacedFallbacks(t *testing.T) {
	t.Run("pacer fails", func(t *testing.T) {
		iv := 10 * time.Millisecond
		r, pt := pacedRig(t, Config{Priority: 100, Interval: iv})
		pt.paceErr = errors.New("pacer: not available")
		r.clk.Advance(mdi(100, iv))
		r.want(Master)
		wantOps(t, "becoming master", pt.take(), "send 100", "pace 100")
		r.clk.Advance(5 * iv)
		wantOps(t, "by timer", pt.take(), "send 100", "send 100", "send 100", "send 100", "send 100")
		r.in.SetPriority(110)
		wantOps(t, "not retried", pt.take(), "send 110")
	})
	t.Run("one second adverts", func(t *testing.T) {
		r, pt := pacedRig(t, Config{Priority: 100, Interval: time.Second})
		r.clk.Advance(mdi(100, time.Second))
		r.want(Master)
		wantOps(t, "becoming master", pt.take(), "send 100")
		r.clk.Advance(2 * time.Second)
		wantOps(t, "by timer", pt.take(), "send 100", "send 100")
	})
}

// A master that answers another one (a resigning master, or a
// lower-priority one during a healing split brain) sends at once and
// keeps its adverts with the pacer: the schedule restarts from that
// advert, and no timer takes over.
func TestPacedMasterAnswers(t *testing.T) {
	iv := 10 * time.Millisecond
	for _, tc := range []struct {
		name string
		prio uint8
	}{{"priority 0", 0}, {"lower priority", 50}} {
		t.Run(tc.name, func(t *testing.T) {
			r, pt := pacedRig(t, Config{Priority: 100, Interval: iv})
			r.clk.Advance(mdi(100, iv))
			pt.take()
			r.fromI(peerL, tc.prio, iv)
			r.want(Master)
			wantOps(t, "answer", pt.take(), "send 100", "pace 100")
			r.clk.Advance(paceRenewal(iv))
			wantOps(t, "first renewal", pt.take(), "renew")
		})
	}
}
