package healthcheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// verdict is an injected Checker of no kind the package knows: it returns
// a reason and weight of its own, so a result can only have come from it.
type verdict struct{ calls atomic.Int32 }

func (v *verdict) Check(ctx context.Context, deadline time.Time) Result {
	v.calls.Add(1)
	return Result{Up: true, Reason: "custom verdict", Weight: 7}
}

// An injected Checker runs, whatever kind its spec names (a TCP spec used
// to make the engine look for a *TCPChecker), on the fake clock and on the
// real one, and its results reach Changes, Snapshot and Observe.
func TestInjectedCheckerRuns(t *testing.T) {
	target := netip.MustParseAddrPort("10.99.0.1:80")
	specs := map[Kind]Spec{
		KindTCP:  {Kind: KindTCP, Target: target},
		KindHTTP: {Kind: KindHTTP, Target: target},
		KindExec: {Kind: KindExec, Target: target, Exec: &ExecSpec{Command: []string{"/nonexistent"}}},
	}
	for kind, sp := range specs {
		sp.Interval, sp.Rise = 20*time.Millisecond, 1
		t.Run(string(kind)+"/fake clock", func(t *testing.T) {
			v := &verdict{}
			m := newSim(t, Options{NewChecker: func(Spec) (Checker, error) { return v, nil }})
			m.set(sp)
			m.steps(2)
			if n := v.calls.Load(); n != 2 {
				t.Fatalf("Check ran %d times for 2 steps", n)
			}
			checkVerdict(t, m.lastChange(), m.s.Snapshot())
			if o := m.obs[0]; o.Result.Reason != "custom verdict" || !o.Started.Equal(o.Scheduled) {
				t.Fatalf("observation %+v", o)
			}
		})
		t.Run(string(kind)+"/real clock", func(t *testing.T) {
			v := &verdict{}
			s := NewScheduler(Options{Logger: slog.New(slog.DiscardHandler), NewChecker: func(Spec) (Checker, error) { return v, nil }})
			if err := s.Set([]Spec{sp}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() {
				cancel()
				<-done
			}()
			var up Change
			for up.Reason == "" {
				select {
				case c := <-s.Changes():
					if !c.Initial {
						up = c
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("no change from the injected checker (%d calls)", v.calls.Load())
				}
			}
			checkVerdict(t, up, s.Snapshot())
		})
	}
}

func checkVerdict(t *testing.T, c Change, st []Status) {
	t.Helper()
	if !c.Up || c.Reason != "custom verdict" || c.Weight != 7 {
		t.Fatalf("change %+v, want up with the checker's reason and weight", c)
	}
	if len(st) != 1 || !st[0].Up || st[0].Last.Reason != "custom verdict" || st[0].Weight != 7 {
		t.Fatalf("snapshot %+v", st)
	}
}

// pinger speaks a line protocol of its own on the engine: "PING\n", then
// judges the first line back. Its Check, the goroutine path, only counts:
// a pinger on the engine never calls it.
type pinger struct {
	addr   netip.AddrPort
	target sockTarget
	checks atomic.Int32
}

func (p *pinger) Check(context.Context, time.Time) Result {
	p.checks.Add(1)
	return Result{Reason: "ran on a goroutine", Weight: NoWeight}
}
func (p *pinger) engineTarget() (*sockTarget, bool) { return p.target.resolve(p.addr) }
func (p *pinger) connected(time.Time) (Result, conversation, bool) {
	return Result{}, p, false
}
func (p *pinger) request() []byte { return []byte("PING\n") }
func (p *pinger) respond(start time.Time, resp []byte, eof bool) (Result, bool) {
	line, _, full := bytes.Cut(resp, []byte("\n"))
	switch {
	case full && string(line) == "PONG":
		return pass(start, "PONG from %s", p.addr), true
	case full || eof:
		return fail(start, "%q from %s", line, p.addr), true
	}
	return Result{}, false
}
func (p *pinger) failed(start, deadline time.Time, doing string, err error) Result {
	return fail(start, "%s %s: %v", doing, p.addr, err)
}

// lineServer answers each connection's first line with reply (none if
// empty, holding the connection open) and reports every line it read.
func lineServer(t *testing.T, reply string) (netip.AddrPort, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 100)
	var held sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held.Go(func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				got <- line
				if reply == "" {
					<-stop
					return
				}
				c.Write([]byte(reply))
			})
		}
	}()
	t.Cleanup(func() {
		l.Close()
		close(stop)
		held.Wait()
	})
	return addrOf(t, l.Addr()), got
}

// A Checker that implements engineChecker runs on the engine (here under
// the fake clock): its Check is never called, the request reaches the
// server, and the verdict reaches the scheduler, started exactly when due.
func TestEngineCheckerRunsOnEngine(t *testing.T) {
	for _, tc := range []struct {
		reply  string
		up     bool
		reason string
	}{
		{"PONG\n", true, "PONG from 127.0.0.1:"},
		{"NOPE\n", false, `"NOPE" from 127.0.0.1:`},
	} {
		t.Run(strings.TrimSpace(tc.reply), func(t *testing.T) {
			addr, lines := lineServer(t, tc.reply)
			p := &pinger{addr: addr}
			m := newSim(t, Options{NewChecker: func(Spec) (Checker, error) { return p, nil }})
			sp := tcpSpec(addr.String())
			sp.Rise, sp.Fall, sp.InitialUp, sp.Timeout = 2, 2, !tc.up, time.Minute
			m.set(sp)
			m.steps(3)
			if n := p.checks.Load(); n != 0 {
				t.Fatalf("Check called %d times: not on the engine", n)
			}
			if n := len(lines); n != 3 {
				t.Fatalf("server read %d requests for 3 checks", n)
			}
			if l := <-lines; l != "PING\n" {
				t.Fatalf("server read %q", l)
			}
			c := m.lastChange()
			if c.Initial || c.Up != tc.up || !strings.Contains(c.Reason, tc.reason) {
				t.Fatalf("change %+v, want up=%v %q", c, tc.up, tc.reason)
			}
			for _, o := range m.obs {
				if !o.Started.Equal(o.Scheduled) || !strings.Contains(o.Result.Reason, tc.reason) {
					t.Fatalf("observation %+v", o)
				}
			}
		})
	}
}

// On the engine a check's timeout runs on the scheduler's clock: under a
// fake clock a silent server fails the check when the fake time reaches
// the timeout, not before, and without waiting for it in real time.
func TestEngineTimeoutOnFakeClock(t *testing.T) {
	addr, lines := lineServer(t, "")
	p := &pinger{addr: addr}
	m := newSim(t, Options{NewChecker: func(Spec) (Checker, error) { return p, nil }})
	sp := tcpSpec(addr.String())
	sp.Interval, sp.Timeout, sp.Fall, sp.InitialUp = time.Minute, 5*time.Second, 1, true
	m.set(sp)
	realStart := time.Now()
	m.clk.Advance(m.next.Sub(m.clk.Now()))
	select {
	case <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("the check never reached the server")
	}
	started := m.clk.Now()
	// Step the fake clock until the loop, its check failed, is idle again.
	for idle := false; !idle; {
		if m.clk.Now().Sub(started) > time.Minute {
			t.Fatal("no timeout within a fake minute")
		}
		m.clk.Advance(100 * time.Millisecond)
		for wait := true; wait; {
			select {
			case m.next = <-m.idle:
				idle, wait = true, false
			case c := <-m.s.Changes():
				m.changes = append(m.changes, c)
			case <-time.After(2 * time.Millisecond):
				wait = false
			}
		}
	}
	c := m.lastChange()
	if c.Up || c.Reason != "timeout after 5s waiting for the response from "+addr.String() {
		t.Fatalf("change %+v, want down on a timeout", c)
	}
	if took := c.At.Sub(started); took < sp.Timeout {
		t.Fatalf("timed out after %v of fake time, timeout %v", took, sp.Timeout)
	}
	if o := m.obs[0]; o.Result.Latency < sp.Timeout || o.Result.Latency > c.At.Sub(o.Started) {
		t.Fatalf("latency %v on the fake clock, want %v to %v", o.Result.Latency, sp.Timeout, c.At.Sub(o.Started))
	}
	if took := time.Since(realStart); took >= sp.Timeout {
		t.Fatalf("the fake-clock timeout took %v of real time", took)
	}
}

// Without an engine (no file descriptors left) Run keeps trying every
// engineRetry on its clock, says so once, and checks start once it can.
func TestRunRetriesEngine(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	var logs bytes.Buffer
	var logMu sync.Mutex
	s := NewScheduler(Options{Clock: clk, Spread: -1,
		Logger:     slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil)),
		NewChecker: func(Spec) (Checker, error) { return &verdict{}, nil }})
	var tries atomic.Int32
	s.newEngine = func(c clock.Clock) (*engine, error) {
		if tries.Add(1) <= 2 {
			return nil, errors.New("epoll_create1: too many open files")
		}
		return newEngine(c)
	}
	if err := s.Set([]Spec{tcpSpec("10.99.0.1:80")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	for want := int32(1); want <= 2; want++ {
		waitUntilHC(t, "a retry timer", func() bool { return tries.Load() == want && clk.Pending() == 1 })
		clk.Advance(engineRetry)
	}
	select {
	case c := <-s.Changes():
		if !c.Initial {
			t.Fatalf("first change %+v, want the initial one", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no checks after the engine could be made")
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if strings.Count(out, "health checks cannot start") != 1 || !strings.Contains(out, "too many open files") || !strings.Contains(out, "health checks started") {
		t.Fatalf("logs:\n%s", out)
	}
}

// Run gives up its retries, and returns nil, when ctx ends.
func TestRunRetryCancelled(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	s := NewScheduler(Options{Clock: clk, Logger: slog.New(slog.DiscardHandler)})
	s.newEngine = func(clock.Clock) (*engine, error) { return nil, errors.New("eventfd: too many open files") }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitUntilHC(t, "a retry timer", func() bool { return clk.Pending() == 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil || clk.Pending() != 0 {
			t.Fatalf("Run = %v with %d timers left", err, clk.Pending())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func waitUntilHC(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !f(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30s", what)
		}
	}
}
