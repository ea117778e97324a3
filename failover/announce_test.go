package failover

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

var (
	vip4 = VIP{Prefix: netip.MustParsePrefix("10.99.0.100/24"), Interface: "eth0", Label: "eth0:101"}
	vip6 = VIP{Prefix: netip.MustParsePrefix("fd99::100/128"), Interface: "eth1"}
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestAnnouncer(t *testing.T, cfg AnnounceConfig, vips ...VIP) (*Announcer, *fakeClock, *recSender) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	rec := &recSender{clock: clock}
	a := newAnnouncer(AnnouncerConfig{AnnounceConfig: cfg, VIPs: vips, Clock: clock, Logger: quietLog()}, rec)
	return a, clock, rec
}

// offsets returns when each round went out, relative to start; a round is
// one announce per VIP, so only the first VIP's sends are counted.
func offsets(sends []sent, start time.Time, first netip.Addr) []time.Duration {
	var out []time.Duration
	for _, s := range sends {
		if s.addr == first {
			out = append(out, s.at.Sub(start))
		}
	}
	return out
}

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestAnnounceSchedule(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  AnnounceConfig
		run  time.Duration
		want []time.Duration
	}{
		{"first round only", AnnounceConfig{}, time.Minute, ms(0)},
		{"default interval", AnnounceConfig{Repeat: 2}, time.Minute, ms(0, 1100, 2200)},
		{"spaced", AnnounceConfig{Repeat: 3, Interval: 2 * time.Second}, time.Minute, ms(0, 2000, 4000, 6000)},
		{"refresh", AnnounceConfig{Repeat: 1, Interval: 1500 * time.Millisecond, Refresh: 10 * time.Second},
			35 * time.Second, ms(0, 1500, 10000, 20000, 30000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, clock, rec := newTestAnnouncer(t, tc.cfg, vip4, vip6)
			start := clock.Now()
			a.Start()
			if got := len(rec.snapshot()); got != 2 {
				t.Fatalf("Start returned after %d announces, want the first round (2) sent at once", got)
			}
			clock.Advance(tc.run)
			sends := rec.snapshot()
			if got := offsets(sends, start, vip4.Prefix.Addr()); !slices.Equal(got, tc.want) {
				t.Fatalf("rounds at %v, want %v", got, tc.want)
			}
			if got := offsets(sends, start, vip6.Prefix.Addr()); !slices.Equal(got, tc.want) {
				t.Fatalf("IPv6 rounds at %v, want %v", got, tc.want)
			}
			st := a.Stats()
			n := uint64(len(tc.want))
			if st.Rounds != n || st.Sent != 3*n || st.Errors != 0 {
				t.Fatalf("stats %+v, want %d rounds, %d packets, no errors", st, n, 3*n)
			}
			if !st.Active || !st.Started.Equal(start) || !st.FirstSent.Equal(start) {
				t.Fatalf("stats %+v: want active, started and first sent at %v", st, start)
			}
		})
	}
}

func TestAnnounceStopCancelsPending(t *testing.T) {
	a, clock, rec := newTestAnnouncer(t, AnnounceConfig{Repeat: 4, Interval: time.Second, Refresh: 5 * time.Second}, vip4)
	a.Start()
	clock.Advance(1500 * time.Millisecond) // rounds at 0 and 1 s
	a.Stop()
	if clock.Pending() != 0 {
		t.Fatalf("%d timers still pending after Stop", clock.Pending())
	}
	clock.Advance(time.Hour)
	if got := len(rec.snapshot()); got != 2 {
		t.Fatalf("%d rounds sent, want 2: nothing after Stop", got)
	}
	if rec.closes != 0 {
		t.Fatalf("sockets closed %d times by Stop, want them kept for the next Start", rec.closes)
	}
	st := a.Stats()
	if st.Active {
		t.Fatal("still active after Stop")
	}
	if a.Reannounce() {
		t.Fatal("Reannounce on a stopped Announcer reported active")
	}
	clock.Advance(time.Hour)
	if got := len(rec.snapshot()); got != 2 {
		t.Fatalf("%d rounds after Reannounce while stopped, want 2", got)
	}

	// A new Start is a fresh series with its own first-sent time.
	restart := clock.Now()
	a.Start()
	clock.Advance(10 * time.Second)
	if got := offsets(rec.snapshot()[2:], restart, vip4.Prefix.Addr()); !slices.Equal(got, ms(0, 1000, 2000, 3000, 4000, 5000, 10000)) {
		t.Fatalf("second series at %v", got)
	}
	if st := a.Stats(); !st.FirstSent.Equal(restart) || st.Rounds != 9 {
		t.Fatalf("stats after restart %+v", st)
	}
	a.Close()
	if rec.closes != 1 || a.Stats().Active {
		t.Fatalf("Close: sockets closed %d times, active %v", rec.closes, a.Stats().Active)
	}
	clock.Advance(time.Hour)
	if got := len(rec.snapshot()); got != 9 {
		t.Fatalf("%d rounds after Close, want 9", got)
	}
}

// A timer that already fired but waits for the lock while Stop runs (the
// keepalived 2.2.7 bug: a delayed burst after losing master) sends
// nothing.
func TestAnnounceFiredTimerAfterStopSendsNothing(t *testing.T) {
	clock := newFakeClock()
	rec := &recSender{clock: clock}
	var fired []func()
	cap := &capturingClock{fakeClock: clock, fns: &fired}
	a := newAnnouncer(AnnouncerConfig{AnnounceConfig: AnnounceConfig{Repeat: 3, Refresh: time.Minute}, VIPs: []VIP{vip4}, Clock: cap, Logger: quietLog()}, rec)
	a.Start()
	if len(fired) != 2 {
		t.Fatalf("%d timers scheduled, want a round and a refresh", len(fired))
	}
	a.Stop()
	for _, f := range fired { // as if both had fired just before Stop
		f()
	}
	if got := len(rec.snapshot()); got != 1 {
		t.Fatalf("%d rounds, want only the first one", got)
	}
}

type capturingClock struct {
	*fakeClock
	fns *[]func()
}

func (c *capturingClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	*c.fns = append(*c.fns, f)
	return c.fakeClock.AfterFunc(d, f)
}

func TestAnnounceReannounce(t *testing.T) {
	a, clock, rec := newTestAnnouncer(t, AnnounceConfig{Repeat: 2, Interval: time.Second}, vip4)
	start := clock.Now()
	a.Start()
	clock.Advance(300 * time.Millisecond)
	// Heard a lower priority 300 ms after the first round: the new series
	// starts 1 s after that round, not at once (locktime), and replaces
	// the old one.
	for i := 0; i < 5; i++ { // a burst of calls does not flood
		if !a.Reannounce() {
			t.Fatal("Reannounce while active reported inactive")
		}
		clock.Advance(10 * time.Millisecond)
	}
	clock.Advance(10 * time.Second)
	if got := offsets(rec.snapshot(), start, vip4.Prefix.Addr()); !slices.Equal(got, ms(0, 1000, 2000, 3000)) {
		t.Fatalf("rounds at %v", got)
	}
	// Long after the series, a reannounce goes out at once.
	at := clock.Now()
	a.Reannounce()
	if got := offsets(rec.snapshot()[4:], at, vip4.Prefix.Addr()); !slices.Equal(got, ms(0)) {
		t.Fatalf("reannounce rounds at %v, want one at once", got)
	}
	clock.Advance(10 * time.Second)
	if got := offsets(rec.snapshot()[4:], at, vip4.Prefix.Addr()); !slices.Equal(got, ms(0, 1000, 2000)) {
		t.Fatalf("reannounce rounds at %v", got)
	}
}

func TestAnnounceErrorsCounted(t *testing.T) {
	a, clock, rec := newTestAnnouncer(t, AnnounceConfig{Repeat: 1}, vip4, vip6)
	rec.fail = errWire
	a.Start()
	clock.Advance(time.Minute)
	st := a.Stats()
	if st.Errors != 4 || st.Sent != 0 || !st.FirstSent.IsZero() || st.LastError != errWire.Error() {
		t.Fatalf("stats %+v, want 4 errors, nothing sent, no first-sent time", st)
	}
}

func TestAnnounceRouterFlag(t *testing.T) {
	a, _, rec := newTestAnnouncer(t, AnnounceConfig{Router: true}, vip6)
	a.Start()
	if s := rec.snapshot(); len(s) != 1 || !s[0].router || s[0].ifname != "eth1" {
		t.Fatalf("sends %+v, want one with the router flag on eth1", s)
	}
}

// With the system clock and a short interval, Stop racing the timers
// never lets a round out after it returns (run with -race).
func TestAnnounceStopRace(t *testing.T) {
	rec := &recSender{clock: clock.System()}
	a := newAnnouncer(AnnouncerConfig{AnnounceConfig: AnnounceConfig{Repeat: 1000, Interval: 10 * time.Millisecond, Refresh: 100 * time.Millisecond},
		VIPs: []VIP{vip4}, Logger: quietLog()}, rec)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		a.Start()
		wg.Add(1)
		go func() { defer wg.Done(); a.Reannounce() }()
		time.Sleep(15 * time.Millisecond)
		a.Stop()
		n := len(rec.snapshot())
		time.Sleep(25 * time.Millisecond)
		if got := len(rec.snapshot()); got != n {
			t.Fatalf("cycle %d: %d rounds after Stop returned", i, got-n)
		}
	}
	wg.Wait()
}

func TestAnnounceConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg AnnounceConfig
		ok  bool
	}{
		{AnnounceConfig{}, true},
		{AnnounceConfig{Repeat: -1}, false},
		{AnnounceConfig{Repeat: 1001}, false},
		{AnnounceConfig{Interval: -time.Second}, false},
		{AnnounceConfig{Interval: time.Millisecond}, false},
		{AnnounceConfig{Refresh: -time.Second}, false},
		{AnnounceConfig{Refresh: time.Millisecond}, false},
		{AnnounceConfig{Repeat: 5, Interval: 2 * time.Second, Refresh: time.Minute, Router: true}, true},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: err %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

func TestAnnounceReconfigure(t *testing.T) {
	a, clock, rec := newTestAnnouncer(t, AnnounceConfig{Repeat: 1, Interval: time.Second}, vip4)
	start := clock.Now()
	a.Start()
	clock.Advance(5 * time.Second) // series done: rounds at 0 and 1 s
	// Same VIPs, refresh turned on: no new series, a refresh every 10 s.
	a.reconfigure(AnnounceConfig{Repeat: 1, Interval: time.Second, Refresh: 10 * time.Second}, []VIP{vip4})
	clock.Advance(11 * time.Second)
	if got := offsets(rec.snapshot(), start, vip4.Prefix.Addr()); !slices.Equal(got, ms(0, 1000, 15000)) {
		t.Fatalf("rounds at %v, want 0, 1 s and a refresh 10 s after the reload at 5 s", got)
	}
	// A VIP added: a new series at once for both.
	at := clock.Now()
	a.reconfigure(AnnounceConfig{Repeat: 1, Interval: time.Second, Refresh: 10 * time.Second}, []VIP{vip4, vip6})
	clock.Advance(1500 * time.Millisecond)
	if got := offsets(rec.snapshot(), at, vip6.Prefix.Addr()); !slices.Equal(got, ms(0, 1000)) {
		t.Fatalf("new VIP announced at %v, want at once and 1 s later", got)
	}
	// Stopped: a reload changes settings but sends nothing.
	a.Stop()
	n := len(rec.snapshot())
	a.reconfigure(AnnounceConfig{Repeat: 3}, []VIP{vip6})
	clock.Advance(time.Hour)
	if got := len(rec.snapshot()); got != n {
		t.Fatalf("%d announces after a reload while stopped", got-n)
	}
}
