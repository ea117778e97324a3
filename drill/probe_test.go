package drill

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// tcpServer accepts on 127.0.0.1 and writes line to every connection.
func tcpServer(t *testing.T, line string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(line))
			c.Close()
		}
	}()
	return "tcp://" + ln.Addr().String()
}

// closedPort is a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func httpServer(t *testing.T, code int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestProbeOnce(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	long := strings.Repeat("x", 1000)
	for _, tc := range []struct {
		name    string
		target  string
		who     string
		wantErr string // "" for a success
	}{
		{"http 200 names the server", httpServer(t, 200, "vs1\n"), "vs1", ""},
		{"http 404 still answered", httpServer(t, 404, "rs2"), "rs2", ""},
		{"http 503 is a failure", httpServer(t, 503, "down"), "", "HTTP 503"},
		{"http body read up to 256 bytes", httpServer(t, 200, long), long[:256], ""},
		{"http refused", "http://" + closedPort(t) + "/", "", "refused"},
		{"http hanging: the timeout", hang.URL, "", "deadline exceeded"},
		{"tcp first word of the first line", tcpServer(t, "rs1 ready\nmore\n"), "rs1", ""},
		{"tcp silent server still answered", tcpServer(t, ""), "", ""},
		{"tcp refused", "tcp://" + closedPort(t), "", "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			who, err := probeOnce(context.Background(), tc.target, 300*time.Millisecond)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("probe took %v, timeout 300ms", took)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("probe %s: %v, want success", tc.target, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("probe %s: error %v, want one with %q", tc.target, err, tc.wantErr)
			}
			if who != tc.who {
				t.Errorf("answered by %q, want %q", who, tc.who)
			}
		})
	}
}

func TestNewProberRefusesBadTargets(t *testing.T) {
	for _, target := range []string{"10.0.0.1:80", "udp://10.0.0.1:53", "tcp://10.0.0.1", "ftp://x/"} {
		if _, err := NewProber(target, time.Millisecond, time.Second, clock.System()); err == nil {
			t.Errorf("NewProber(%q) accepted it", target)
		}
	}
	if _, err := NewProber("tcp://127.0.0.1:1", 0, time.Second, clock.System()); err == nil {
		t.Error("NewProber accepted a zero interval")
	}
	for _, target := range []string{"http://10.0.0.1/", "https://vip.example/x", "tcp://10.0.0.1:23", "tcp://[fd00::1]:80"} {
		if _, err := NewProber(target, time.Millisecond, time.Second, clock.System()); err != nil {
			t.Errorf("NewProber(%q): %v", target, err)
		}
	}
}

// TestProberHungProbeHidesNothing: the first probe hangs (until its
// timeout, longer than the test), the ones after it answer; they must be
// recorded meanwhile, each at its own send time, at the probe rate.
func TestProberHungProbeHidesNothing(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done()
			return
		}
		fmt.Fprint(w, "rs1")
	}))
	defer srv.Close()
	p, err := NewProber(srv.URL, 10*time.Millisecond, 10*time.Second, clock.System())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() { p.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(p.Results()) < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended (a hung probe held it)")
	}
	res := p.Results()
	if len(res) < 5 {
		t.Fatalf("%d results while the first probe hung; want at least 5", len(res))
	}
	for _, r := range res {
		if !r.OK || r.Who != "rs1" {
			t.Errorf("result %+v: want an answer of rs1 (the hung probe is not recorded)", r)
		}
	}
	if !p.OKSince(start) || p.OKSince(time.Now().Add(time.Hour)) {
		t.Error("OKSince does not follow the results")
	}
}

// TestProberRate: on a fake clock the prober sends exactly one probe per
// interval, stamped with the clock's time.
func TestProberRate(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	target := tcpServer(t, "rs1\n")
	p, err := NewProber(target, 10*time.Millisecond, time.Second, clk)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	for i := 1; i <= 5; i++ {
		waitFor(t, func() bool { return len(p.Results()) == i })
		waitFor(t, func() bool { return clk.Pending() == 1 })
		clk.Advance(10 * time.Millisecond)
	}
	waitFor(t, func() bool { return len(p.Results()) == 6 })
	cancel()
	<-done
	res := p.Results()
	slices.SortFunc(res, func(a, b Result) int { return a.At.Compare(b.At) })
	for i, r := range res {
		if want := time.Unix(1000, 0).Add(time.Duration(i) * 10 * time.Millisecond); !r.At.Equal(want) || !r.OK {
			t.Errorf("result %d: %+v, want OK at %v", i, r, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(ms int, who string) Result { return Result{At: at(ms), OK: true, Who: who} }
	bad := func(ms int, err string) Result { return Result{At: at(ms), Err: err} }
	for _, tc := range []struct {
		name    string
		results []Result
		to      int // ms after t0
		want    ProbeReport
	}{
		{"nothing sent", nil, 100, ProbeReport{FirstOKMS: -1}},
		{"all answered", []Result{ok(0, "vs1"), ok(10, "vs1"), ok(20, "vs2")}, 100,
			ProbeReport{Sent: 3, FirstOKMS: 0, Answered: "vs2"}},
		{"one run: first failure to next success",
			[]Result{ok(0, "vs1"), bad(10, "refused"), bad(20, "timeout"), ok(30, "vs2")}, 100,
			ProbeReport{Sent: 4, Failed: 2, OutageMS: 20, FirstOKMS: 0, Answered: "vs2", LastFailed: "timeout"}},
		{"the longest of two runs",
			[]Result{bad(0, "a"), ok(10, "vs1"), bad(20, "b"), bad(30, "c"), bad(40, "d"), ok(50, "vs2"), bad(60, "e"), ok(70, "vs2")}, 100,
			ProbeReport{Sent: 8, Failed: 5, OutageMS: 30, FirstOKMS: 10, Answered: "vs2", LastFailed: "e"}},
		{"a run still going at the end lasts until `to`",
			[]Result{ok(0, "vs1"), bad(40, "refused"), bad(50, "refused")}, 100,
			ProbeReport{Sent: 3, Failed: 2, OutageMS: 60, FirstOKMS: 0, Answered: "vs1", LastFailed: "refused"}},
		{"results out of order are sorted by send time",
			[]Result{ok(30, "vs2"), bad(10, "x"), ok(0, "vs1"), bad(20, "y")}, 100,
			ProbeReport{Sent: 4, Failed: 2, OutageMS: 20, FirstOKMS: 0, Answered: "vs2", LastFailed: "y"}},
		{"only the window [from, to) counts",
			[]Result{bad(-20, "before"), ok(-10, "vs1"), bad(5, "in"), ok(15, "vs2"), bad(100, "at to"), bad(120, "after")}, 100,
			ProbeReport{Sent: 2, Failed: 1, OutageMS: 10, FirstOKMS: 15, Answered: "vs2", LastFailed: "in"}},
		{"microsecond resolution",
			[]Result{{At: t0.Add(1500 * time.Microsecond)}, {At: t0.Add(4 * time.Millisecond), OK: true}}, 100,
			ProbeReport{Sent: 2, Failed: 1, OutageMS: 2.5, FirstOKMS: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.Target = "http://vip/"
			got := summarize("http://vip/", tc.results, t0, at(tc.to))
			if got != tc.want {
				t.Errorf("summarize:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
