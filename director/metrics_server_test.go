package director

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startMetrics serves metrics on a free loopback port until the test ends.
func startMetrics(t *testing.T, opts ...metricsOption) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr := freeAddr(t)
	if err := serveMetrics(ctx, addr, func() Status { return Status{} }, opts...); err != nil {
		t.Fatal(err)
	}
	return addr
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("skipping: cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// idleClients opens n connections to addr, each sending one keep-alive
// request and then nothing: what a hostile or careless scraper leaves
// behind. They are closed when the test ends.
func idleClients(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("write %d: %v", len(conns), err)
		}
	}
	return conns
}

// settledFDs polls the fd count until it stops changing for a while (the
// server has accepted what it will accept), within a few seconds.
func settledFDs(t *testing.T) int {
	t.Helper()
	last, stable := openFDs(t), 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && stable < 5; {
		time.Sleep(100 * time.Millisecond)
		n := openFDs(t)
		if n == last {
			stable++
		} else {
			last, stable = n, 0
		}
	}
	return last
}

// TestMetricsServerCapsConnections: a thousand idle keep-alive clients
// must not cost the daemon a thousand file descriptors. Before the cap,
// 3,000 such clients held 3,016 fds and the backup could not open its
// ARP socket at takeover.
func TestMetricsServerCapsConnections(t *testing.T) {
	const clients = 1000
	addr := startMetrics(t)
	base := settledFDs(t)
	idleClients(t, addr, clients)
	server := settledFDs(t) - base - clients // the clients' own fds are ours too
	t.Logf("%d idle clients: the server holds %d fds (cap %d)", clients, server, maxMetricsConns)
	if server > maxMetricsConns+8 {
		t.Fatalf("the metrics server holds %d fds for %d idle clients, want at most about %d", server, clients, maxMetricsConns)
	}
}

// TestMetricsServerClosesIdle: with the cap reached by idle keep-alive
// clients, the idle timeout frees the slots and a new scrape is served.
func TestMetricsServerClosesIdle(t *testing.T) {
	lim := defaultMetricsLimits(false)
	lim.idle = 200 * time.Millisecond
	lim.maxConns = 8
	addr := startMetrics(t, withMetricsLimits(lim))
	conns := idleClients(t, addr, lim.maxConns)
	// The server closes every one of them once idle.
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("idle client %d: %v, want the server to close it", i, err)
		}
	}
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape after the idle clients: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape after the idle clients: %s", resp.Status)
	}
}

// TestMetricsServerSlowHeader: a client that never finishes its request
// header is cut off, so slowloris clients cannot keep the slots.
func TestMetricsServerSlowHeader(t *testing.T) {
	lim := defaultMetricsLimits(false)
	lim.readHeader = 200 * time.Millisecond
	addr := startMetrics(t, withMetricsLimits(lim))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("slow client: %v, want the server to close it", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("slow client closed after %v, want about %v", took, lim.readHeader)
	}
}

// get returns the status code of a GET on the metrics server.
func get(t *testing.T, url string) int {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestMetricsPprofOffByDefault: profiles (goroutine dumps, heap, CPU)
// are not served unless the site says pprof = true.
func TestMetricsPprofOffByDefault(t *testing.T) {
	addr := startMetrics(t)
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=2", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		if code := get(t, "http://"+addr+p); code != http.StatusNotFound {
			t.Errorf("GET %s without pprof: %d, want 404", p, code)
		}
	}
	if code := get(t, "http://"+addr+"/metrics"); code != http.StatusOK {
		t.Errorf("GET /metrics: %d, want 200", code)
	}
}

// TestMetricsPprofOn: with pprof = true the index and a short CPU profile
// are served (the write timeout leaves room for the profile).
func TestMetricsPprofOn(t *testing.T) {
	addr := startMetrics(t, withPprof(true))
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/profile?seconds=1"} {
		if code := get(t, "http://"+addr+p); code != http.StatusOK {
			t.Errorf("GET %s with pprof: %d, want 200", p, code)
		}
	}
}

// TestMetricsPprofWriteTimeout: with pprof on, the write timeout allows
// a default (30 s) and a 60 s CPU profile; pprof refuses a profile as
// long as the server's write timeout. Without pprof, writes stay short.
func TestMetricsPprofWriteTimeout(t *testing.T) {
	if w := defaultMetricsLimits(true).write; w <= 60*time.Second {
		t.Errorf("write timeout with pprof %v, want above 60s", w)
	}
	if w := defaultMetricsLimits(false).write; w > 30*time.Second {
		t.Errorf("write timeout without pprof %v, want short", w)
	}
}
