package healthcheck

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// One engine, many checks in a row: reused sockets give the same verdicts
// as fresh ones, TCP checks stay half-open, and open files stay bounded.
func TestEngineReusesSockets(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	var sn seen
	web := httpServer(t, &sn)
	cases := []struct {
		spec   Spec
		up     bool
		reason string
	}{
		{Spec{Kind: KindTCP, Target: addrOf(t, l.Addr())}, true, "connected"},
		{Spec{Kind: KindTCP, Target: refusingAddr(t)}, false, "connection refused"},
		{Spec{Kind: KindHTTP, Target: web}, true, "HTTP 200"},
		{Spec{Kind: KindHTTP, Target: web, HTTP: &HTTPSpec{Path: "/503"}}, false, "HTTP 503"},
		{Spec{Kind: KindHTTP, Target: web, HTTP: &HTTPSpec{Path: "/big", BodyContains: "needle"}}, true, "body as expected"},
		{Spec{Kind: KindHTTP, Target: hangingAddr(t)}, false, "timeout after 200ms waiting for the response"},
		{Spec{Kind: KindTCP, Target: addrOf(t, l.Addr())}, true, "connected"},
	}
	e, err := newEngine(clock.System())
	if err != nil {
		t.Fatal(err)
	}
	defer e.close("test over")
	var got *Result
	e.finish = func(j *job, r Result) { got = &r }
	fdsBefore := openFiles(t)
	for round := 0; round < 3; round++ {
		for i, tc := range cases {
			c, err := New(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			ck := &check{spec: tc.spec.WithDefaults(), checker: c}
			ck.spec.Timeout = timeoutFor(tc.reason, 200*time.Millisecond)
			got = nil
			if !e.startCheck(ck, time.Now()) {
				t.Fatalf("case %d not on the engine", i)
			}
			for got == nil {
				now := time.Now()
				e.expire(now)
				if dl, ok := e.nextDeadline(); ok && got == nil {
					if err := e.poll(max(dl.Sub(now), 0)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got.Up != tc.up || !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("round %d case %d: up=%v %q, want up=%v %q", round, i, got.Up, got.Reason, tc.up, tc.reason)
			}
		}
	}
	if n := len(e.pool[0]); n == 0 || n > 3 {
		t.Errorf("%d idle sockets after sequential checks, want 1-3", n)
	}
	// Idle sockets plus the hanging server's three accepted connections.
	if after := openFiles(t); after > fdsBefore+len(e.pool[0])+3 {
		t.Errorf("open files grew from %d to %d with %d idle sockets", fdsBefore, after, len(e.pool[0]))
	}
	select {
	case <-accepted:
		t.Error("a TCP check was accepted: not half-open")
	case <-time.After(100 * time.Millisecond):
	}
}

func openFiles(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// The engine's cost per check, one check at a time on loopback: TCP
// (connect, reset) and HTTP (connect, request, response, reset).
func BenchmarkEngineCheck(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 512)
				if n, _ := c.Read(buf); n > 0 {
					c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"))
				}
			}()
		}
	}()
	target := netip.MustParseAddrPort(l.Addr().String())
	for _, sp := range []Spec{{Kind: KindTCP, Target: target}, {Kind: KindHTTP, Target: target}} {
		b.Run(string(sp.Kind), func(b *testing.B) {
			c, err := New(sp)
			if err != nil {
				b.Fatal(err)
			}
			e, err := newEngine(clock.System())
			if err != nil {
				b.Fatal(err)
			}
			defer e.close("benchmark over")
			var got *Result
			e.finish = func(j *job, r Result) { got = &r }
			ck := &check{spec: sp.WithDefaults(), checker: c}
			for b.Loop() {
				got = nil
				if !e.startCheck(ck, time.Now()) {
					b.Fatal("not on the engine")
				}
				for got == nil {
					now := time.Now()
					e.expire(now)
					if dl, ok := e.nextDeadline(); ok && got == nil {
						if err := e.poll(max(dl.Sub(now), 0)); err != nil {
							b.Fatal(err)
						}
					}
				}
				if !got.Up {
					b.Fatalf("check failed: %s", got.Reason)
				}
			}
		})
	}
}
