package vrrp

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

type rig struct {
	t   *testing.T
	clk *fakeClock
	tr  *fakeTransport
	in  *Instance
	mu  sync.Mutex
	evs []Event
}

const (
	self  = "10.99.0.5"
	peerH = "10.99.0.9" // higher address than self
	peerL = "10.99.0.2" // lower address than self
)

func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	return newRigOn(t, cfg, newFakeClock(), (*bus)(nil).port(self))
}

func newRigOn(t *testing.T, cfg Config, clk *fakeClock, tr *fakeTransport) *rig {
	t.Helper()
	return startRig(t, cfg, clk, tr, tr)
}

// startRig starts an instance on tr; ft, if any, is the fake the test
// injects into and reads sends from (tr itself or what tr wraps).
func startRig(t *testing.T, cfg Config, clk *fakeClock, ft *fakeTransport, tr Transport) *rig {
	t.Helper()
	if cfg.VRID == 0 {
		cfg.VRID = 51
	}
	r := &rig{t: t, clk: clk, tr: ft}
	in, err := NewInstance(cfg, tr, clk, func(e Event) {
		r.mu.Lock()
		r.evs = append(r.evs, e)
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	r.in = in
	if err := in.start(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) want(s State) {
	r.t.Helper()
	if got := r.in.State(); got != s {
		r.t.Fatalf("state %v, want %v", got, s)
	}
}

func (r *rig) events() []Event { return takeAll(&r.mu, &r.evs) }

// from sends an advert as peer addr with priority p (and our interval).
func (r *rig) from(addr string, p uint8) {
	r.t.Helper()
	r.fromI(addr, p, r.in.cfg.Interval)
}

func (r *rig) fromI(addr string, p uint8, iv time.Duration) {
	r.t.Helper()
	a := Advert{Version: uint8(r.in.cfg.Version), VRID: r.in.cfg.VRID, Priority: p, Interval: iv, Addrs: r.in.cfg.VIPs}
	if a.Version == 2 {
		a.SetPassword(r.in.cfg.AuthPass)
	}
	r.tr.inject(r.t, addr, a)
}

func mdi(prio uint8, iv time.Duration) time.Duration {
	return 3*iv + time.Duration(256-int(prio))*iv/256
}

func TestInitializeStartupAddressOwnerIsMasterAtOnce(t *testing.T) {
	r := newRig(t, Config{Priority: 255})
	r.want(Master)
	sent := r.tr.take()
	if len(sent) != 1 || sent[0].Priority != 255 {
		t.Fatalf("sent %+v, want one priority-255 advert", sent)
	}
	ev := r.events()
	if len(ev) != 1 || ev[0].From != Initialize || ev[0].To != Master || ev[0].MasterAddr != netip.MustParseAddr(self) {
		t.Fatalf("events %+v", ev)
	}
	r.in.SetPriority(10) // trackers cannot move an address owner
	if r.in.Status().Priority != 255 {
		t.Fatal("priority of an address owner changed")
	}
}

func TestInitializeStartupBackupThenMasterAfterMasterDownInterval(t *testing.T) {
	r := newRig(t, Config{Priority: 100, Interval: time.Second})
	r.want(Backup)
	if len(r.tr.take()) != 0 {
		t.Fatal("backup sent an advert")
	}
	d := mdi(100, time.Second) // 3.609375s
	r.clk.Advance(d - time.Millisecond)
	r.want(Backup)
	r.clk.Advance(time.Millisecond)
	r.want(Master)
	if s := r.tr.take(); len(s) != 1 || s[0].Priority != 100 {
		t.Fatalf("on becoming master sent %+v", s)
	}
	// Adver_Timer: one advert per interval.
	r.clk.Advance(3 * time.Second)
	if n := len(r.tr.take()); n != 3 {
		t.Fatalf("%d adverts in 3 intervals", n)
	}
	ev := r.events()
	if len(ev) != 2 || ev[1].To != Master || ev[1].Reason != "master down timer expired" {
		t.Fatalf("events %+v", ev)
	}
}

func TestBackupHigherPriorityKeepsBackup(t *testing.T) {
	r := newRig(t, Config{Priority: 100})
	for range 10 {
		r.clk.Advance(time.Second)
		r.from(peerL, 200)
	}
	r.want(Backup)
	st := r.in.Status()
	if st.MasterAddr != netip.MustParseAddr(peerL) || st.MasterPriority != 200 || st.Counters.AdvertsReceived != 10 {
		t.Fatalf("status %+v", st)
	}
	// The master goes silent: Master_Down_Interval after its last advert.
	r.clk.Advance(mdi(100, time.Second) - time.Millisecond)
	r.want(Backup)
	r.clk.Advance(time.Millisecond)
	r.want(Master)
}

func TestBackupEqualPriorityIsAccepted(t *testing.T) {
	// RFC 5798 6.4.2: greater than or equal resets the timer, whatever the address.
	r := newRig(t, Config{Priority: 100})
	for range 10 {
		r.clk.Advance(time.Second)
		r.from(peerL, 100)
	}
	r.want(Backup)
}

func TestBackupLearnsMasterAdverInterval(t *testing.T) {
	r := newRig(t, Config{Priority: 100, Interval: time.Second})
	r.fromI(peerH, 200, 200*time.Millisecond)
	if got := r.in.Status().MasterInterval; got != 200*time.Millisecond {
		t.Fatalf("master interval %v", got)
	}
	d := mdi(100, 200*time.Millisecond) // 600ms + 121.875ms
	r.clk.Advance(d - time.Millisecond)
	r.want(Backup)
	r.clk.Advance(time.Millisecond)
	r.want(Master)
	// As master it advertises its own interval again.
	r.tr.take()
	r.clk.Advance(time.Second)
	if n := len(r.tr.take()); n != 1 {
		t.Fatalf("%d adverts in 1s as master, want 1", n)
	}
}

func TestBackupPriorityZeroTakesOverAfterSkew(t *testing.T) {
	r := newRig(t, Config{Priority: 100, Interval: time.Second})
	r.from(peerH, 200)
	r.clk.Advance(500 * time.Millisecond)
	r.from(peerH, 0)
	skew := time.Duration(156) * time.Second / 256
	r.clk.Advance(skew - time.Millisecond)
	r.want(Backup)
	r.clk.Advance(time.Millisecond)
	r.want(Master)
	ev := r.events()
	if want := "master " + peerH + " resigned (priority 0)"; len(ev) != 2 || ev[1].Reason != want {
		t.Fatalf("events %+v, want the last with reason %q", ev, want)
	}
}

func TestBackupPreemptsLowerPriorityMaster(t *testing.T) {
	r := newRig(t, Config{Priority: 150})
	for range 3 {
		r.from(peerL, 100)
		r.clk.Advance(time.Second)
	}
	// Ignored adverts do not reset the timer: master after MDI from start.
	r.clk.Advance(mdi(150, time.Second) - 3*time.Second)
	r.want(Master)
}

func TestBackupNoPreemptKeepsLowerPriorityMaster(t *testing.T) {
	r := newRig(t, Config{Priority: 150, NoPreempt: true})
	for range 20 {
		r.from(peerL, 100)
		r.clk.Advance(time.Second)
	}
	r.want(Backup)
}

func TestBackupPreemptDelay(t *testing.T) {
	r := newRig(t, Config{Priority: 150, PreemptDelay: 5 * time.Second})
	// Heard at t=0..; accepted for 5s, then ignored.
	var took time.Duration
	for i := range 20 {
		r.from(peerL, 100)
		r.clk.Advance(time.Second)
		if r.in.State() == Master {
			took = time.Duration(i+1) * time.Second
			break
		}
	}
	// Last accepted advert at t=4s (<5s), down timer MDI (3.41s) from it.
	if took < 5*time.Second || took > 9*time.Second {
		t.Fatalf("preempted after %v, want after the 5s delay and within MDI more", took)
	}
}

func TestStartupDelay(t *testing.T) {
	r := newRig(t, Config{Priority: 150, StartupDelay: 10 * time.Second})
	// Silence: no master before the startup delay.
	r.clk.Advance(9 * time.Second)
	r.want(Backup)
	r.clk.Advance(time.Second)
	r.want(Master)

	// A lower-priority master heard during the delay is not preempted then,
	// but is after.
	r2 := newRig(t, Config{Priority: 150, StartupDelay: 10 * time.Second})
	for range 9 {
		r2.clk.Advance(time.Second)
		r2.from(peerL, 100)
	}
	r2.want(Backup)
	var at time.Duration = 9 * time.Second
	for r2.in.State() != Master && at < 20*time.Second {
		r2.clk.Advance(time.Second)
		r2.from(peerL, 100)
		at += time.Second
	}
	if at < 10*time.Second || at > 14*time.Second {
		t.Fatalf("preempted at %v, want after the 10s startup delay", at)
	}
}

func TestBackupShutdown(t *testing.T) {
	r := newRig(t, Config{Priority: 100})
	if err := r.in.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.want(Initialize)
	if len(r.tr.take()) != 0 {
		t.Fatal("a stopping backup sent an advert")
	}
	r.clk.Advance(time.Minute)
	r.want(Initialize)
}

func masterRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	r := newRig(t, cfg)
	r.clk.Advance(mdi(cfg.Priority, time.Second))
	r.want(Master)
	r.tr.take()
	r.events()
	return r
}

func TestMasterShutdownSendsPriorityZero(t *testing.T) {
	r := masterRig(t, Config{Priority: 100})
	if err := r.in.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.want(Initialize)
	s := r.tr.take()
	if len(s) != 1 || s[0].Priority != 0 {
		t.Fatalf("sent %+v, want one priority-0 advert", s)
	}
	r.clk.Advance(time.Minute)
	if len(r.tr.take()) != 0 {
		t.Fatal("adverts after stop")
	}
}

func TestMasterHearsPriorityZeroAnswersAtOnce(t *testing.T) {
	r := masterRig(t, Config{Priority: 100})
	r.clk.Advance(300 * time.Millisecond)
	r.from(peerL, 0)
	if s := r.tr.take(); len(s) != 1 || s[0].Priority != 100 {
		t.Fatalf("sent %+v", s)
	}
	r.want(Master)
}

func TestMasterHearsHigherPriorityStepsDown(t *testing.T) {
	r := masterRig(t, Config{Priority: 100})
	r.fromI(peerL, 101, 500*time.Millisecond)
	r.want(Backup)
	if s := r.tr.take(); len(s) != 1 || s[0].Priority != 100 {
		t.Fatalf("sent %+v, want one last advert telling the winner about the split brain", s)
	}
	if got := r.in.Status().MasterInterval; got != 500*time.Millisecond {
		t.Fatalf("learnt interval %v", got)
	}
	ev := r.events()
	if len(ev) != 1 || ev[0].To != Backup || ev[0].MasterAddr != netip.MustParseAddr(peerL) || ev[0].MasterPriority != 101 || ev[0].Peer != netip.MustParseAddr(peerL) {
		t.Fatalf("events %+v", ev)
	}
	r.clk.Advance(mdi(100, 500*time.Millisecond))
	r.want(Master)
}

func TestMasterEqualPriorityTieBreak(t *testing.T) {
	r := masterRig(t, Config{Priority: 100})
	r.from(peerL, 100) // lower address: we stay, and answer
	r.want(Master)
	if n := len(r.tr.take()); n != 1 {
		t.Fatalf("answered with %d adverts", n)
	}
	r.from(peerH, 100) // higher address wins
	r.want(Backup)
}

func TestMasterHearsLowerPriorityAnswersAndReannounces(t *testing.T) {
	r := masterRig(t, Config{Priority: 150})
	r.from(peerL, 100)
	r.want(Master)
	if s := r.tr.take(); len(s) != 1 || s[0].Priority != 150 {
		t.Fatalf("sent %+v", s)
	}
	ev := r.events()
	if len(ev) != 1 || ev[0].Kind != Reannounce || ev[0].Peer != netip.MustParseAddr(peerL) || ev[0].MasterAddr != netip.MustParseAddr(self) {
		t.Fatalf("events %+v", ev)
	}
	// Rate limited: a second one within the advert interval (1s) is
	// neither answered nor re-announced.
	r.clk.Advance(100 * time.Millisecond)
	r.from(peerL, 100)
	if ev, s := r.events(), r.tr.take(); len(ev) != 0 || len(s) != 0 {
		t.Fatalf("second lower advert within 1s: events %+v, sent %+v", ev, s)
	}
	r.clk.Advance(time.Second)
	r.tr.take()
	r.from(peerL, 100)
	if ev := r.events(); len(ev) != 1 || ev[0].Kind != Reannounce {
		t.Fatalf("events %+v", ev)
	}
	if r.in.Status().Counters.Reannounces != 2 {
		t.Fatal("reannounce counter")
	}
}

func TestFault(t *testing.T) {
	r := masterRig(t, Config{Priority: 100})
	r.in.SetFault("eth0 down", true)
	r.want(Fault)
	if s := r.tr.take(); len(s) != 1 || s[0].Priority != 0 {
		t.Fatalf("a faulting master sent %+v, want a priority-0 advert", s)
	}
	r.clk.Advance(time.Minute)
	r.from(peerL, 50)
	r.want(Fault)
	if len(r.tr.take()) != 0 {
		t.Fatal("adverts in fault")
	}
	r.in.SetFault("script", true)
	r.in.SetFault("eth0 down", false)
	r.want(Fault)
	if st := r.in.Status(); len(st.Faults) != 1 || st.Faults[0] != "script" {
		t.Fatalf("faults %v", st.Faults)
	}
	r.in.SetFault("script", false)
	r.want(Backup)
	r.clk.Advance(mdi(100, time.Second))
	r.want(Master)
	var tos []State
	for _, e := range r.events() {
		tos = append(tos, e.To)
	}
	if len(tos) != 3 || tos[0] != Fault || tos[1] != Backup || tos[2] != Master {
		t.Fatalf("transitions %v", tos)
	}
}

func TestSetPriority(t *testing.T) {
	r := masterRig(t, Config{Priority: 150})
	r.in.SetPriority(90) // e.g. a tracked script failed with weight -60
	if s := r.tr.take(); len(s) != 1 || s[0].Priority != 90 {
		t.Fatalf("sent %+v, want the new priority at once", s)
	}
	r.from(peerL, 100)
	r.want(Backup)

	// A backup whose priority rises above the master's preempts it.
	r.in.SetPriority(0) // clamped to 1
	if p := r.in.Status().Priority; p != 1 {
		t.Fatalf("priority %d", p)
	}
	r.in.SetPriority(120)
	for range 10 {
		r.clk.Advance(time.Second)
		r.from(peerL, 100)
	}
	r.want(Master)
}

func TestDropsCountedByReason(t *testing.T) {
	r := newRig(t, Config{Priority: 100, Version: 2, AuthPass: "secret", VIPs: []netip.Addr{vip4}})
	good := Advert{Version: 2, VRID: 51, Priority: 200, Interval: time.Second, Addrs: []netip.Addr{vip4}}
	good.SetPassword("secret")
	mut := func(f func(*Advert)) Advert { a := good; f(&a); return a }
	send := func(a Advert, ttl int, from string) {
		src := netip.MustParseAddr(from)
		b, err := a.Marshal(src, Group4)
		if err != nil {
			t.Fatal(err)
		}
		r.tr.deliver(Packet{Payload: b, Src: src, Dst: Group4, TTL: ttl})
	}
	send(mut(func(a *Advert) { a.VRID = 52 }), 255, peerH)
	send(good, 64, peerH)
	send(mut(func(a *Advert) { a.SetPassword("wrong") }), 255, peerH)
	send(mut(func(a *Advert) { a.SetPassword("") }), 255, peerH)
	send(mut(func(a *Advert) { a.Interval = 2 * time.Second }), 255, peerH)
	send(mut(func(a *Advert) { a.Version = 3 }), 255, peerH)
	send(good, 255, self)
	r.tr.deliver(Packet{Payload: []byte{1, 2, 3}, Src: netip.MustParseAddr(peerH), Dst: Group4, TTL: 255})
	b, _ := good.Marshal(netip.MustParseAddr(peerH), Group4)
	b[6]++
	r.tr.deliver(Packet{Payload: b, Src: netip.MustParseAddr(peerH), Dst: Group4, TTL: 255})
	send(good, 255, peerH) // the one valid advert

	st := r.in.Status()
	want := map[DropReason]uint64{DropVRID: 1, DropTTL: 1, DropAuth: 2, DropInterval: 1, DropVersion: 1, DropSelf: 1, DropLength: 1, DropChecksum: 1}
	for k, v := range want {
		if st.Counters.Dropped[k] != v {
			t.Errorf("%v: %d, want %d (all: %v)", k, st.Counters.Dropped[k], v, st.Counters.Dropped)
		}
	}
	if st.Counters.AdvertsReceived != 1 || st.MasterPriority != 200 {
		t.Fatalf("counters %+v", st)
	}
}

func TestConfigRejected(t *testing.T) {
	tr := (*bus)(nil).port(self)
	for _, c := range []Config{
		{},
		{VRID: 1, Version: 2, Interval: 500 * time.Millisecond},
		{VRID: 1, Version: 3, Interval: 15 * time.Millisecond},
		{VRID: 1, Version: 3, AuthPass: "x"},
		{VRID: 1, Version: 2, AuthPass: "123456789"},
		{VRID: 1, Version: 4},
		{VRID: 1, VIPs: []netip.Addr{vip6}},
	} {
		if _, err := NewInstance(c, tr, newFakeClock(), nil); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	if _, err := NewInstance(Config{VRID: 1, Version: 2}, (*bus)(nil).port("fe80::1"), newFakeClock(), nil); err == nil {
		t.Error("accepted v2 over IPv6")
	}
}

// Two and three instances on an in-memory LAN.
func TestElectionOnBus(t *testing.T) {
	clk := newFakeClock()
	b := &bus{clk: clk}
	cfg := func(p uint8) Config { return Config{VRID: 51, Priority: p, Interval: 100 * time.Millisecond} }
	a := newRigOn(t, cfg(100), clk, b.port("10.99.0.1"))
	c := newRigOn(t, cfg(150), clk, b.port("10.99.0.2"))
	d := newRigOn(t, cfg(50), clk, b.port("10.99.0.3"))
	clk.Advance(time.Second)
	c.want(Master)
	a.want(Backup)
	d.want(Backup)

	// Graceful stop of the master: the next best (a) takes over after its skew.
	c.in.Stop(context.Background())
	clk.Advance(time.Duration(156) * 100 * time.Millisecond / 256)
	a.want(Master)
	d.want(Backup)

	// Split brain: cut a off; d becomes master too; heal: exactly one
	// master within one advert interval.
	a.tr.setCut(true)
	clk.Advance(time.Second)
	a.want(Master)
	d.want(Master)
	a.tr.setCut(false)
	clk.Advance(100 * time.Millisecond)
	a.want(Master)
	d.want(Backup)
	var re bool
	for _, e := range a.events() {
		re = re || e.Kind == Reannounce
	}
	if !re {
		t.Fatal("surviving master did not re-announce after the heal")
	}
}

func TestEventCallbackPanicDoesNotStopElection(t *testing.T) {
	clk := newFakeClock()
	tr := (*bus)(nil).port(self)
	got := make(chan Event, 10)
	in, err := NewInstance(Config{VRID: 1, Priority: 100, Interval: 100 * time.Millisecond}, tr, clk, func(e Event) {
		got <- e
		panic("boom")
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- in.Run(ctx) }()
	if e := <-got; e.To != Backup {
		t.Fatalf("first event %+v", e)
	}
	clk.Advance(time.Second)
	if e := <-got; e.To != Master {
		t.Fatalf("second event %+v", e)
	}
	clk.Advance(time.Second)
	if n := len(tr.take()); n < 10 {
		t.Fatalf("%d adverts sent after the panics", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e := <-got; e.To != Initialize {
		t.Fatalf("last event %+v", e)
	}
	if len(tr.take()) != 0 {
		t.Fatal("a cancelled (not stopped) master sent a priority-0 advert")
	}
}

func TestUnicastChecksumCompat(t *testing.T) {
	r := newRig(t, Config{Priority: 100})
	peer, me := netip.MustParseAddr(peerH), netip.MustParseAddr(self)
	a := Advert{Version: 3, VRID: 51, Priority: 200, Interval: time.Second}
	for _, csumDst := range []netip.Addr{me, Group4} { // RFC, then old keepalived
		b, err := a.Marshal(peer, csumDst)
		if err != nil {
			t.Fatal(err)
		}
		r.tr.deliver(Packet{Payload: b, Src: peer, Dst: me, TTL: 255})
	}
	if st := r.in.Status(); st.Counters.AdvertsReceived != 2 || len(st.Counters.Dropped) != 0 || st.Counters.AddrMismatch != 0 {
		t.Fatalf("counters %+v", st.Counters)
	}
	a.Addrs = []netip.Addr{vip4}
	b, _ := a.Marshal(peer, me)
	r.tr.deliver(Packet{Payload: b, Src: peer, Dst: me, TTL: 255})
	if st := r.in.Status(); st.Counters.AdvertsReceived != 3 || st.Counters.AddrMismatch != 1 {
		t.Fatalf("VIP mismatch not counted: %+v", st.Counters)
	}
}

func BenchmarkCodec(b *testing.B) {
	a := Advert{Version: 3, VRID: 51, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip4, netip.MustParseAddr("10.99.0.101")}}
	for b.Loop() {
		p, err := a.Marshal(src4, Group4)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Unmarshal(p, src4, Group4); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFaultBeforeStart(t *testing.T) {
	clk := newFakeClock()
	tr := (*bus)(nil).port(self)
	in, err := NewInstance(Config{VRID: 1, Priority: 255}, tr, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	in.SetFault("interface eth1 down", true)
	if err := in.start(); err != nil {
		t.Fatal(err)
	}
	if s := in.State(); s != Fault {
		t.Fatalf("state %v, want FAULT", s)
	}
	clk.Advance(time.Minute)
	if len(tr.take()) != 0 {
		t.Fatal("a faulted address owner sent adverts")
	}
	in.SetFault("interface eth1 down", false)
	if s := in.State(); s != Master {
		t.Fatalf("state %v, want MASTER (address owner)", s)
	}
	if err := in.start(); err == nil {
		t.Fatal("started twice")
	}
}

// TestLateDownTimerGrace: after a stall (the process was not scheduled), a
// down timer that fires late waits a short grace for the adverts queued in
// the socket instead of taking over at once.
func TestLateDownTimerGrace(t *testing.T) {
	r := newRig(t, Config{Priority: 100, Interval: 100 * time.Millisecond})
	r.from(peerH, 200)
	r.clk.Stall(2 * time.Second)
	r.want(Backup)
	r.from(peerH, 200) // the queued advert, read after the stall
	r.clk.Advance(100 * time.Millisecond)
	r.want(Backup)
	if n := r.in.Status().Counters.LateTimers; n != 1 {
		t.Fatalf("late timers %d", n)
	}
	// No advert after a stall: master after the grace (25ms) only.
	r.clk.Stall(2 * time.Second)
	r.want(Backup)
	r.clk.Advance(25 * time.Millisecond)
	r.want(Master)
	// A timer on time takes over without grace.
	r2 := newRig(t, Config{Priority: 100, Interval: 100 * time.Millisecond})
	r2.clk.Advance(mdi(100, 100*time.Millisecond))
	r2.want(Master)
}

func TestDownAdverts(t *testing.T) {
	r := newRig(t, Config{Priority: 100, DownAdverts: 10})
	r.clk.Advance(10*time.Second + 156*time.Second/256 - time.Millisecond)
	r.want(Backup)
	r.clk.Advance(time.Millisecond)
	r.want(Master)
	if _, err := NewInstance(Config{VRID: 1, DownAdverts: 101}, (*bus)(nil).port(self), newFakeClock(), nil); err == nil {
		t.Fatal("accepted 101 down adverts")
	}
}

func TestReannounceNewEpisode(t *testing.T) {
	r := newRig(t, Config{Priority: 150, Interval: 100 * time.Millisecond})
	r.clk.Advance(time.Second)
	r.want(Master)
	r.events()
	kinds := func() (n int) {
		for _, e := range r.events() {
			if e.Kind == Reannounce {
				n++
			}
		}
		return n
	}
	r.from(peerL, 100)
	r.clk.Advance(100 * time.Millisecond)
	r.from(peerL, 100) // same episode, within 1s: rate limited
	if n := kinds(); n != 1 {
		t.Fatalf("%d re-announces, want 1", n)
	}
	r.clk.Advance(400 * time.Millisecond) // silence > 3 intervals: a partition healed
	r.from(peerL, 100)
	if n := kinds(); n != 1 {
		t.Fatalf("%d re-announces for a new episode within 1s, want 1", n)
	}
}

// The VIPs must be claimed before the first advert as master leaves: the
// advert makes the old master drop them at once.
func TestBeforeMasterRunsBeforeFirstAdvert(t *testing.T) {
	var sentBefore = -1
	var tr *fakeTransport
	cfg := Config{Interval: time.Second, Priority: 100}
	cfg.BeforeMaster = func() {
		tr.mu.Lock()
		sentBefore = len(tr.sent)
		tr.mu.Unlock()
	}
	tr = (*bus)(nil).port(self)
	r := newRigOn(t, cfg, newFakeClock(), tr)
	r.want(Backup)
	r.clk.Advance(4 * time.Second) // master down
	r.want(Master)
	if sentBefore != 0 {
		t.Fatalf("BeforeMaster saw %d adverts already sent, want 0", sentBefore)
	}
	tr.mu.Lock()
	n := len(tr.sent)
	tr.mu.Unlock()
	if n == 0 {
		t.Fatal("no advert after becoming master")
	}
	// A panicking hook does not stop the election.
	cfg.BeforeMaster = func() { panic("boom") }
	r2 := newRig(t, cfg)
	r2.clk.Advance(4 * time.Second)
	r2.want(Master)
}

// TestAdvertsKeepTheirSchedule: an advert timer that fires late does not
// delay the adverts after it; one more than an interval late starts a new
// schedule instead of a burst.
func TestAdvertsKeepTheirSchedule(t *testing.T) {
	iv := 10 * time.Millisecond
	r := newRig(t, Config{Priority: 100, Interval: iv})
	r.clk.Advance(mdi(100, iv))
	r.want(Master)
	r.tr.take()
	sent := func(step string, want int) {
		t.Helper()
		if n := len(r.tr.take()); n != want {
			t.Fatalf("%s: %d adverts, want %d", step, n, want)
		}
	}
	r.clk.Advance(9 * time.Millisecond)
	sent("before the first is due", 0)
	r.clk.Stall(4 * time.Millisecond) // due at +10, fires at +13
	sent("late timer", 1)
	r.clk.Advance(7*time.Millisecond - time.Microsecond)
	sent("before +20", 0)
	r.clk.Advance(time.Microsecond) // +20: back on schedule
	sent("at +20", 1)
	r.clk.Stall(25 * time.Millisecond) // due at +30, fires at +45
	sent("very late timer", 1)
	r.clk.Advance(iv - time.Microsecond)
	sent("within an interval of the very late one", 0)
	r.clk.Advance(time.Microsecond)
	sent("an interval after it", 1)
}
