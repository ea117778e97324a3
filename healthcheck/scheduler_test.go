package healthcheck

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// script is a fake checker that returns scripted verdicts; the last
// repeats.
type script struct {
	mu    sync.Mutex
	queue []Result
	last  Result
	calls int
}

func (s *script) Check(ctx context.Context, deadline time.Time) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if len(s.queue) > 0 {
		s.last, s.queue = s.queue[0], s.queue[1:]
	}
	if s.last.Reason == "panic" {
		panic("checker bug")
	}
	return s.last
}

// then replaces what comes next.
func (s *script) then(rs ...Result) {
	s.mu.Lock()
	s.queue = rs
	s.mu.Unlock()
}

var (
	ok  = Result{Up: true, Reason: "ok", Weight: NoWeight}
	bad = Result{Up: false, Reason: "bad", Weight: NoWeight}
)

func weighted(w int) Result { return Result{Up: true, Reason: "weighted", Weight: w} }

// sim runs a Scheduler on a fake clock, one event at a time.
type sim struct {
	t       *testing.T
	s       *Scheduler
	clk     *clock.Fake
	idle    chan time.Time
	next    time.Time
	obs     []Observation
	changes []Change
	scripts map[string]*script // by target
	built   int
	cancel  context.CancelFunc
	done    chan error
}

func newSim(t *testing.T, opts Options) *sim {
	m := &sim{t: t, clk: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), idle: make(chan time.Time), scripts: map[string]*script{}, done: make(chan error, 1)}
	opts.Clock = m.clk
	opts.Logger = slog.New(slog.DiscardHandler)
	if opts.Spread == 0 {
		opts.Spread = -1
	}
	opts.Observe = func(o Observation) { m.obs = append(m.obs, o) }
	if opts.NewChecker == nil {
		opts.NewChecker = func(s Spec) (Checker, error) {
			m.built++
			sc := m.scripts[s.Target.String()]
			if sc == nil {
				sc = &script{last: ok}
				m.scripts[s.Target.String()] = sc
			}
			return sc, nil
		}
	}
	m.s = NewScheduler(opts)
	m.s.testIdle = m.idle
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.done <- m.s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	m.wait()
	return m
}

// wait blocks until the loop is idle, collecting changes on the way.
func (m *sim) wait() {
	m.t.Helper()
	for {
		select {
		case m.next = <-m.idle:
			return
		case c := <-m.s.Changes():
			m.changes = append(m.changes, c)
		case <-time.After(30 * time.Second):
			m.t.Fatal("scheduler never became idle")
		}
	}
}

func (m *sim) set(specs ...Spec) {
	m.t.Helper()
	if err := m.s.Set(specs); err != nil {
		m.t.Fatal(err)
	}
	m.wait()
}

// step runs the next due check(s).
func (m *sim) step() {
	m.t.Helper()
	if m.next.IsZero() {
		m.t.Fatal("nothing scheduled")
	}
	m.clk.Advance(m.next.Sub(m.clk.Now()))
	m.wait()
}

// steps runs n checks, one at a time.
func (m *sim) steps(n int) {
	m.t.Helper()
	for want := len(m.obs) + n; len(m.obs) < want; {
		m.step()
	}
}

func (m *sim) script(target string, rs ...Result) *script {
	sc := &script{queue: rs}
	m.scripts[target] = sc
	return sc
}

func (m *sim) lastChange() Change {
	m.t.Helper()
	if len(m.changes) == 0 {
		m.t.Fatal("no change")
	}
	return m.changes[len(m.changes)-1]
}

func tcpSpec(target string) Spec {
	return Spec{Kind: KindTCP, Target: netip.MustParseAddrPort(target), Interval: time.Second}
}

func TestRiseAndFallExact(t *testing.T) {
	for _, tc := range []struct{ rise, fall int }{{1, 1}, {2, 3}, {5, 2}} {
		m := newSim(t, Options{})
		sc := m.script("10.99.0.1:80", ok)
		sp := tcpSpec("10.99.0.1:80")
		sp.Rise, sp.Fall = tc.rise, tc.fall
		m.set(sp)
		if c := m.lastChange(); !c.Initial || c.Up {
			t.Fatalf("initial change %+v, want initial down", c)
		}
		// Down until exactly rise passes.
		m.steps(tc.rise - 1)
		if len(m.changes) != 1 {
			t.Fatalf("rise %d: up after %d passes", tc.rise, tc.rise-1)
		}
		m.steps(1)
		if c := m.lastChange(); !c.Up || c.Passes != tc.rise || c.Reason != "ok" || len(m.changes) != 2 {
			t.Fatalf("rise %d: after %d passes: changes %+v", tc.rise, tc.rise, m.changes)
		}
		// Up until exactly fall failures.
		sc.then(bad)
		m.steps(tc.fall - 1)
		if len(m.changes) != 2 {
			t.Fatalf("fall %d: down after %d failures", tc.fall, tc.fall-1)
		}
		m.steps(1)
		if c := m.lastChange(); c.Up || c.Fails != tc.fall || c.Reason != "bad" || c.At != m.clk.Now() {
			t.Fatalf("fall %d: after %d failures: %+v", tc.fall, tc.fall, c)
		}
		st := m.s.Snapshot()
		if len(st) != 1 || st[0].Up || st[0].Fails != tc.fall || st[0].Passes != 0 || !st[0].Checked || st[0].Last.Reason != "bad" {
			t.Fatalf("snapshot %+v", st)
		}
	}
}

func TestFlappingServerStaysDownUntilRise(t *testing.T) {
	m := newSim(t, Options{})
	sp := tcpSpec("10.99.0.1:80")
	sp.Rise, sp.Fall, sp.InitialUp = 3, 2, true
	// up: pass, fail, pass, fail, fail (down), pass, pass, fail, pass, pass, pass (up)
	m.script("10.99.0.1:80", ok, bad, ok, bad, bad, ok, ok, bad, ok, ok, ok, ok)
	m.set(sp)
	var ups []bool
	for i := 0; i < 12; i++ {
		m.steps(1)
		ups = append(ups, m.s.Snapshot()[0].Up)
	}
	want := []bool{true, true, true, true, false, false, false, false, false, false, true, true}
	for i := range want {
		if ups[i] != want[i] {
			t.Fatalf("after check %d: up=%v, want %v (all: %v)", i+1, ups[i], want[i], ups)
		}
	}
	if len(m.changes) != 3 { // initial, down, up
		t.Fatalf("changes %+v", m.changes)
	}
}

func TestIntervals(t *testing.T) {
	m := newSim(t, Options{})
	sp := tcpSpec("10.99.0.1:80")
	sp.Interval, sp.FastInterval, sp.DownInterval = 10*time.Second, 1*time.Second, 30*time.Second
	sp.Rise, sp.Fall, sp.InitialUp = 2, 2, true
	sp.Warmup = 100 * time.Second
	sc := m.script("10.99.0.1:80", ok)
	start := m.clk.Now()
	m.set(sp)
	m.steps(1)
	first := m.obs[0].Scheduled.Sub(start)
	if first < sp.Warmup || first >= sp.Warmup+sp.Interval {
		t.Fatalf("first check %v after Set, want in [warm-up, warm-up+interval)", first)
	}
	gap := func() time.Duration {
		m.steps(1)
		n := len(m.obs)
		return m.obs[n-1].Scheduled.Sub(m.obs[n-2].Scheduled)
	}
	expectGap := func(want time.Duration, why string) {
		t.Helper()
		if g := gap(); g != want {
			t.Fatalf("%s: gap %v, want %v", why, g, want)
		}
	}
	expectGap(10*time.Second, "up and settled: interval")
	sc.then(bad)
	expectGap(10*time.Second, "first failure runs at the interval")
	expectGap(1*time.Second, "after a failure: fast interval")
	expectGap(30*time.Second, "down: down interval")
	expectGap(30*time.Second, "still down")
	sc.then(ok)
	expectGap(30*time.Second, "the first pass comes at the down interval")
	expectGap(1*time.Second, "rising: fast interval")
	expectGap(10*time.Second, "up again: interval")
	// Lateness is measured from the scheduled time.
	for _, o := range m.obs {
		if o.Started.Before(o.Scheduled) {
			t.Fatalf("check started before it was due: %+v", o)
		}
	}
}

func TestSpreadJittersIntervals(t *testing.T) {
	m := newSim(t, Options{Spread: 0.1})
	m.set(tcpSpec("10.99.0.1:80"))
	m.steps(1)
	distinct := map[time.Duration]bool{}
	for i := 0; i < 20; i++ {
		m.steps(1)
		n := len(m.obs)
		g := m.obs[n-1].Scheduled.Sub(m.obs[n-2].Scheduled)
		if g < 900*time.Millisecond || g > 1100*time.Millisecond {
			t.Fatalf("gap %v outside 1s +-10%%", g)
		}
		distinct[g] = true
	}
	if len(distinct) < 5 {
		t.Fatalf("gaps barely vary: %v", distinct)
	}
}

func TestPanicIsAFailure(t *testing.T) {
	m := newSim(t, Options{})
	sp := tcpSpec("10.99.0.1:80")
	sp.InitialUp, sp.Fall = true, 1
	m.script("10.99.0.1:80", Result{Reason: "panic"})
	m.set(sp, tcpSpec("10.99.0.2:80"))
	m.steps(4)
	var c Change
	for _, ch := range m.changes {
		if ch.Spec.Target.String() == "10.99.0.1:80" {
			c = ch
		}
	}
	if c.Up || !strings.Contains(c.Reason, "check panicked: checker bug") || c.Spec.Target.String() != "10.99.0.1:80" {
		t.Fatalf("change %+v", c)
	}
	// The other check goes on.
	var others int
	for _, o := range m.obs {
		if strings.Contains(o.Key, "10.99.0.2") {
			others++
		}
	}
	if others == 0 {
		t.Fatal("the other check stopped")
	}
}

func TestDynamicWeight(t *testing.T) {
	m := newSim(t, Options{})
	sp := tcpSpec("10.99.0.1:80")
	sp.Rise = 1
	sc := m.script("10.99.0.1:80", weighted(5))
	m.set(sp)
	m.steps(1)
	if c := m.lastChange(); !c.Up || c.Weight != 5 {
		t.Fatalf("up change %+v, want weight 5", c)
	}
	sc.then(weighted(5), ok, weighted(9))
	m.steps(2) // same weight, then "unchanged": no change
	if len(m.changes) != 2 {
		t.Fatalf("changes %+v", m.changes)
	}
	m.steps(1)
	if c := m.lastChange(); !c.Up || c.Weight != 9 || len(m.changes) != 3 {
		t.Fatalf("reweight change %+v", m.changes)
	}
	if st := m.s.Snapshot()[0]; st.Weight != 9 {
		t.Fatalf("snapshot weight %d", st.Weight)
	}
}

func TestSetDedupesAndKeepsState(t *testing.T) {
	m := newSim(t, Options{})
	a, b, c := tcpSpec("10.99.0.1:80"), tcpSpec("10.99.0.2:80"), tcpSpec("10.99.0.3:80")
	// The same real server named by two virtual servers: one checker.
	m.set(a, b, a)
	if m.built != 2 || len(m.s.Snapshot()) != 2 {
		t.Fatalf("built %d checkers for 2 distinct specs; snapshot %d", m.built, len(m.s.Snapshot()))
	}
	m.steps(4) // both up (rise 2)
	before := m.s.Snapshot()
	if !before[0].Up || !before[1].Up {
		t.Fatalf("not up: %+v", before)
	}
	nChanges := len(m.changes)
	// Reload: a unchanged, b gone, c new, and a changed copy of a.
	a2 := a
	a2.Rise = 4
	m.set(a, c, a2)
	after := m.s.Snapshot()
	if len(after) != 3 || m.built != 4 {
		t.Fatalf("after reload: %d checks, %d built", len(after), m.built)
	}
	var kept bool
	for _, st := range after {
		switch st.Key {
		case a.Key():
			kept = st.Up && st.Passes == before[0].Passes && st.LastCheck == before[0].LastCheck
		case b.Key():
			t.Fatal("removed check still listed")
		}
	}
	if !kept {
		t.Fatalf("unchanged check lost its state: before %+v after %+v", before[0], after)
	}
	// Exactly two initial changes: c and a2; nothing for a.
	news := m.changes[nChanges:]
	if len(news) != 2 || !news[0].Initial || !news[1].Initial || news[0].Key == a.Key() || news[1].Key == a.Key() {
		t.Fatalf("changes on reload: %+v", news)
	}
	// b is no longer checked.
	m.steps(10)
	for _, o := range m.obs[len(m.obs)-10:] {
		if o.Key == b.Key() {
			t.Fatal("removed check still runs")
		}
	}
	// A bad spec changes nothing.
	if err := m.s.Set([]Spec{a, {Kind: "smtp", Target: a.Target}}); err == nil || !strings.Contains(err.Error(), `unknown kind "smtp"`) {
		t.Fatalf("Set with a bad spec: %v", err)
	}
	if len(m.s.Snapshot()) != 3 {
		t.Fatal("a rejected Set changed the checks")
	}
}

func TestKey(t *testing.T) {
	base := Spec{Kind: KindHTTP, Target: netip.MustParseAddrPort("10.99.0.1:80")}
	same := base
	same.Interval, same.Rise, same.HTTP = DefaultInterval, DefaultRise, &HTTPSpec{Method: "get", Path: "/", Expect: []StatusRange{{200, 399}}}
	if base.Key() != same.Key() {
		t.Errorf("defaults spelled out change the key:\n%s\n%s", base.Key(), same.Key())
	}
	diff := []func(*Spec){
		func(s *Spec) { s.Target = netip.MustParseAddrPort("10.99.0.2:80") },
		func(s *Spec) { s.CheckPort = 81 },
		func(s *Spec) { s.Fall = 9 },
		func(s *Spec) { s.InitialUp = true },
		func(s *Spec) { s.HTTP = &HTTPSpec{Path: "/health"} },
		func(s *Spec) { s.HTTP = &HTTPSpec{BodyContains: "x"} },
		func(s *Spec) { s.Kind = KindTCP },
	}
	for i, f := range diff {
		s := base
		f(&s)
		if s.Key() == base.Key() {
			t.Errorf("change %d does not change the key %s", i, s.Key())
		}
	}
	// Two service ports checked on one check port share a checker.
	x := Spec{Kind: KindTCP, Target: netip.MustParseAddrPort("10.99.0.1:80"), CheckPort: 9000}
	y := x
	y.Target = netip.MustParseAddrPort("10.99.0.1:443")
	if x.Key() != y.Key() {
		t.Error("same check port on one address should share a checker")
	}
}

func TestValidate(t *testing.T) {
	target := netip.MustParseAddrPort("10.99.0.1:80")
	bad := []struct {
		spec Spec
		want string
	}{
		{Spec{Target: target}, "no kind"},
		{Spec{Kind: KindTCP}, "target must be"},
		{Spec{Kind: KindTCP, Target: netip.MustParseAddrPort("10.99.0.1:0")}, "port 0"},
		{Spec{Kind: KindHTTP, Target: target, HTTP: &HTTPSpec{Method: "POST"}}, "want GET or HEAD"},
		{Spec{Kind: KindHTTP, Target: target, HTTP: &HTTPSpec{Path: "health"}}, "absolute path"},
		{Spec{Kind: KindHTTP, Target: target, HTTP: &HTTPSpec{Expect: []StatusRange{{300, 200}}}}, "status range"},
		{Spec{Kind: KindHTTP, Target: target, HTTP: &HTTPSpec{BodyRegexp: "("}}, "body regexp"},
		{Spec{Kind: KindHTTP, Target: target, HTTP: &HTTPSpec{BodyMD5: "abc"}}, "32 hex digits"},
		{Spec{Kind: KindHTTP, Target: target, HTTP: &HTTPSpec{Verify: true}}, "need kind https"},
		{Spec{Kind: KindHTTP, Target: target, HTTP: &HTTPSpec{Method: "HEAD", BodyContains: "x"}}, "need GET"},
		{Spec{Kind: KindExec, Target: target}, "without a command"},
		{Spec{Kind: KindTCP, Target: target, Rise: 5000}, "at most 1000"},
		{Spec{Kind: KindTCP, Target: target, Interval: -time.Second}, "negative interval"},
		{Spec{Kind: KindTCP, Target: target, Fall: -1}, "negative rise"},
	}
	for _, b := range bad {
		if err := b.spec.Validate(); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Validate(%+v) = %v, want %q", b.spec, err, b.want)
		}
	}
	if _, err := New(Spec{Kind: KindHTTPS, Target: target, HTTP: &HTTPSpec{Verify: true, CAFile: "/nonexistent.pem"}}); err == nil {
		t.Error("missing CA file accepted")
	}
}

// The scheduler on the real clock against real loopback servers: a TCP
// check sees its server stop and start again.
func TestSchedulerRealServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := addrOf(t, l.Addr())
	s := NewScheduler(Options{})
	sp := Spec{Kind: KindTCP, Target: a, Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, Rise: 2, Fall: 2}
	if err := s.Set([]Spec{sp}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	next := func(want bool) Change {
		t.Helper()
		select {
		case c := <-s.Changes():
			if c.Up != want {
				t.Fatalf("change %+v, want up=%v", c, want)
			}
			return c
		case <-time.After(30 * time.Second):
			t.Fatalf("no change to up=%v", want)
		}
		return Change{}
	}
	next(false) // initial
	if c := next(true); c.Passes != 2 {
		t.Fatalf("up after %d passes", c.Passes)
	}
	l.Close()
	if c := next(false); c.Fails != 2 || !strings.Contains(c.Reason, "connection refused") {
		t.Fatalf("down change %+v", c)
	}
	l, err = net.Listen("tcp", a.String())
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", a, err)
	}
	defer l.Close()
	next(true)
	st := s.Snapshot()
	if len(st) != 1 || !st[0].Up || st[0].Last.Latency <= 0 || st[0].LastCheck.IsZero() {
		t.Fatalf("snapshot %+v", st)
	}
}

// blocker is a checker that holds its slot for a while.
type blocker struct {
	cur, peak *atomic.Int32
	hold      time.Duration
}

func (b blocker) Check(ctx context.Context, deadline time.Time) Result {
	n := b.cur.Add(1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(b.hold)
	b.cur.Add(-1)
	return ok
}

func TestMaxConcurrent(t *testing.T) {
	var cur, peak atomic.Int32
	var ran atomic.Int32
	s := NewScheduler(Options{MaxConcurrent: 3, Observe: func(Observation) { ran.Add(1) },
		NewChecker: func(Spec) (Checker, error) { return blocker{&cur, &peak, 20 * time.Millisecond}, nil }})
	var specs []Spec
	for i := 1; i <= 10; i++ {
		specs = append(specs, Spec{Kind: KindTCP, Target: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 99, 0, byte(i)}), 80), Interval: 10 * time.Millisecond})
	}
	s.Set(specs)
	runUntil(s, &ran, 30)
	if ran.Load() < 30 {
		t.Fatalf("only %d checks ran", ran.Load())
	}
	if p := peak.Load(); p > 3 || p < 1 {
		t.Fatalf("peak concurrency %d, limit 3", p)
	}
	if cur.Load() != 0 {
		t.Fatal("Run returned with checks in flight")
	}
}

func TestHealthInterval(t *testing.T) {
	sp := Spec{Interval: 10, FastInterval: 1, DownInterval: 30}
	tests := []struct {
		h    health
		want time.Duration
	}{
		{health{up: true, checked: true}, 10},
		{health{up: true, checked: true, fails: 1}, 1},
		{health{up: false, checked: true, passes: 1}, 1},
		{health{up: false, checked: true}, 30},
	}
	for _, tt := range tests {
		if got := tt.h.interval(&sp); got != tt.want {
			t.Errorf("%+v: interval %v, want %v", tt.h, got, tt.want)
		}
	}
}

// The run loop on the real clock with every kind at once: TCP and HTTP on
// the epoll engine, exec and HTTPS on goroutines; then Run returns
// promptly when cancelled with checks in flight.
func TestSchedulerEngineAllKinds(t *testing.T) {
	var sn seen
	web := httpServer(t, &sn)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer tlsSrv.Close()
	hang := hangingAddr(t)
	mk := func(s Spec) Spec {
		s.Interval, s.Timeout, s.Rise, s.Fall = 30*time.Millisecond, time.Minute, 1, 1
		return s
	}
	specs := map[string]struct {
		spec Spec
		up   bool
	}{
		"tcp up":      {mk(Spec{Kind: KindTCP, Target: web}), true},
		"tcp refused": {mk(Spec{Kind: KindTCP, Target: refusingAddr(t)}), false},
		"http 200":    {mk(Spec{Kind: KindHTTP, Target: web, HTTP: &HTTPSpec{BodyContains: "vigil"}}), true},
		"http 503":    {mk(Spec{Kind: KindHTTP, Target: web, HTTP: &HTTPSpec{Path: "/503"}}), false},
		"https":       {mk(Spec{Kind: KindHTTPS, Target: addrOf(t, tlsSrv.Listener.Addr())}), true},
		"exec up":     {mk(Spec{Kind: KindExec, Target: web, Exec: &ExecSpec{Command: []string{"true"}}}), true},
		"exec down":   {mk(Spec{Kind: KindExec, Target: web, Exec: &ExecSpec{Command: []string{"false"}}}), false},
	}
	var list []Spec
	for _, s := range specs {
		list = append(list, s.spec)
	}
	s := NewScheduler(Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.Set(list); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	go func() {
		for range s.Changes() {
		}
	}()
	byKey := map[string]Status{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		byKey = map[string]Status{}
		checked := 0
		for _, st := range s.Snapshot() {
			byKey[st.Key] = st
			if st.Checked && st.Passes+st.Fails >= 2 {
				checked++
			}
		}
		if checked == len(specs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every check ran twice in 60s: %+v", byKey)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, sp := range specs {
		st := byKey[sp.spec.Key()]
		if st.Up != sp.up {
			t.Errorf("%s: up=%v (%s), want %v", name, st.Up, st.Last.Reason, sp.up)
		}
	}
	// A check in flight (an HTTP check of a hanging server, 1 min timeout)
	// does not hold up Run's return.
	if err := s.Set(append(list, mk(Spec{Kind: KindHTTP, Target: hang}))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second): // far below the timeout, generous for a shared machine
		t.Fatal("Run did not return within 20s of cancel")
	}
}

func TestLocalFailureNotCounted(t *testing.T) {
	m := newSim(t, Options{})
	sp := tcpSpec("10.99.0.1:80")
	sp.Fall, sp.InitialUp = 1, true
	local := Result{Reason: "cannot check here: too many open files", Weight: NoWeight, Local: true}
	sc := m.script("10.99.0.1:80", ok, local, local)
	m.set(sp)
	m.steps(3)
	st := m.s.Snapshot()[0]
	if !st.Up || st.Passes != 1 || st.Fails != 0 || !st.Last.Local || len(m.changes) != 1 {
		t.Fatalf("a local failure counted: %+v, changes %+v", st, m.changes)
	}
	sc.then(bad)
	m.steps(1)
	if st := m.s.Snapshot()[0]; st.Up {
		t.Fatalf("a real failure did not count: %+v", st)
	}
}

func TestIsLocal(t *testing.T) {
	if !isLocal(fmt.Errorf("socket: %w", syscall.EMFILE)) || isLocal(syscall.ECONNREFUSED) {
		t.Fatal("isLocal misjudges")
	}
}

func TestMaxExec(t *testing.T) {
	var cur, peak atomic.Int32
	var ran atomic.Int32
	s := NewScheduler(Options{MaxExec: 2, Observe: func(Observation) { ran.Add(1) }, Logger: slog.New(slog.DiscardHandler),
		NewChecker: func(Spec) (Checker, error) { return blocker{&cur, &peak, 20 * time.Millisecond}, nil }})
	var specs []Spec
	for i := 1; i <= 6; i++ {
		specs = append(specs, Spec{Kind: KindExec, Target: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 99, 0, byte(i)}), 80),
			Interval: 10 * time.Millisecond, Exec: &ExecSpec{Command: []string{"true"}}})
	}
	if err := s.Set(specs); err != nil {
		t.Fatal(err)
	}
	runUntil(s, &ran, 20)
	if ran.Load() < 20 {
		t.Fatalf("only %d exec checks ran", ran.Load())
	}
	if p := peak.Load(); p > 2 {
		t.Fatalf("%d exec checks at once, limit 2", p)
	}
}

// runUntil runs s until ran reaches n (or a generous minute passes) and
// stops it; the caller checks what ran.
func runUntil(s *Scheduler, ran *atomic.Int32, n int32) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	go func() {
		for range s.Changes() {
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for ran.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
