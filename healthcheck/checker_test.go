package healthcheck

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// Servers on loopback, started by the tests.

func addrOf(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// refusingAddr is a loopback port with nothing listening.
func refusingAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := addrOf(t, l.Addr())
	l.Close()
	return a
}

// silentAddr is a listener whose SYNs go unanswered: backlog 0, never
// accepting, with its one queue slot taken.
func silentAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
	c, err := net.DialTimeout("tcp", a.String(), time.Second) // fills the queue
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return a
}

// hangingAddr accepts connections and never answers.
func hangingAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return addrOf(t, l.Addr())
}

func runCheck(t *testing.T, s Spec, timeout time.Duration) Result {
	t.Helper()
	c, err := New(s)
	if err != nil {
		t.Fatalf("New(%+v): %v", s, err)
	}
	start := time.Now()
	r := c.Check(context.Background(), start.Add(timeout))
	if took := time.Since(start); took > timeout+5*time.Second { // generous: the machine is shared
		t.Errorf("check took %v, timeout %v: it outlived its timeout", took, timeout)
	}
	if r.Latency <= 0 {
		t.Errorf("result without latency: %+v", r)
	}
	// The scheduler runs TCP and HTTP checks on its epoll engine instead:
	// it must reach the same verdict for the same reason.
	if er, ok := engineCheck(t, s, timeout); ok && (er.Up != r.Up || er.Reason != r.Reason) {
		t.Errorf("engine: up=%v %q; Check: up=%v %q", er.Up, er.Reason, r.Up, r.Reason)
	}
	return r
}

// engineCheck runs s once on a fresh engine, if s is an engine kind.
func engineCheck(t *testing.T, s Spec, timeout time.Duration) (Result, bool) {
	t.Helper()
	c, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newEngine(clock.System())
	if err != nil {
		t.Fatal(err)
	}
	defer e.close("test over")
	var got *Result
	e.finish = func(j *job, r Result) { got = &r }
	ck := &check{spec: s.WithDefaults(), checker: c}
	ck.spec.Timeout = timeout
	start := time.Now()
	if !e.startCheck(ck, time.Now()) {
		return Result{}, false
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
	if took := time.Since(start); took > timeout+5*time.Second { // generous: the machine is shared
		t.Errorf("engine check took %v, timeout %v", took, timeout)
	}
	if got.Latency <= 0 {
		t.Errorf("engine result without latency: %+v", got)
	}
	return *got, true
}

// timeoutFor gives cases that expect a timeout the short timeout they
// name, and the others a long one: the machine is shared, and a check that
// should pass must not fail for want of CPU.
func timeoutFor(reason string, short time.Duration) time.Duration {
	if strings.Contains(reason, "timeout after") {
		return short
	}
	return 10 * time.Second
}

func expect(t *testing.T, r Result, up bool, reason string) {
	t.Helper()
	if r.Up != up || !strings.Contains(r.Reason, reason) {
		t.Errorf("got up=%v %q, want up=%v with %q", r.Up, r.Reason, up, reason)
	}
}

func TestTCPCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 10)
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
	up := addrOf(t, l.Addr())
	l6, err := net.Listen("tcp", "[::1]:0")
	if err == nil {
		defer l6.Close()
	}
	tests := []struct {
		name   string
		spec   Spec
		up     bool
		reason string
	}{
		{"listening", Spec{Kind: KindTCP, Target: up}, true, "connected to " + up.String()},
		{"check port", Spec{Kind: KindTCP, Target: netip.AddrPortFrom(up.Addr(), 1), CheckPort: up.Port()}, true, "connected"},
		{"refused", Spec{Kind: KindTCP, Target: refusingAddr(t)}, false, "connection refused"},
		{"SYN unanswered", Spec{Kind: KindTCP, Target: silentAddr(t)}, false, "timeout after 300ms connecting to"},
	}
	if l6 != nil {
		tests = append(tests, struct {
			name   string
			spec   Spec
			up     bool
			reason string
		}{"ipv6", Spec{Kind: KindTCP, Target: addrOf(t, l6.Addr())}, true, "connected"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, runCheck(t, tt.spec, timeoutFor(tt.reason, 300*time.Millisecond)), tt.up, tt.reason)
		})
	}
	// Half-open: the server application never accepts a TCP check.
	select {
	case <-accepted:
		t.Error("the listener accepted a TCP check: the check is not half-open")
	case <-time.After(100 * time.Millisecond):
	}
}

func TestTCPCheckCancelled(t *testing.T) {
	c, _ := New(Spec{Kind: KindTCP, Target: silentAddr(t)})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	r := c.Check(ctx, start.Add(time.Minute))
	if time.Since(start) > 20*time.Second || r.Up { // far below the deadline, generous for a shared machine
		t.Errorf("cancelled check: %+v after %v", r, time.Since(start))
	}
	expect(t, r, false, "cancel")
}

// seen records what the HTTP test server received.
type seen struct {
	mu              sync.Mutex
	proto, host, ua string
	method          string
	close           bool
}

func httpServer(t *testing.T, s *seen) netip.AddrPort {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.proto, s.host, s.ua, s.method, s.close = r.Proto, r.Host, r.UserAgent(), r.Method, r.Close
		s.mu.Unlock()
		fmt.Fprint(w, "hello, vigil\n")
	})
	mux.HandleFunc("/503", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down for maintenance", 503) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "late")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/503", http.StatusFound) })
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Transfer-Encoding", "chunked")
		w.(http.Flusher).Flush()
		fmt.Fprint(w, "part one, ")
		w.(http.Flusher).Flush()
		fmt.Fprint(w, "part two")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 100_000) + "needle"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return addrOf(t, srv.Listener.Addr())
}

func TestHTTPCheck(t *testing.T) {
	var s seen
	a := httpServer(t, &s)
	sum := md5.Sum([]byte("hello, vigil\n"))
	hexsum := hex.EncodeToString(sum[:])
	bigsum := md5.Sum([]byte(strings.Repeat("x", 100_000) + "needle"))
	h := func(hs HTTPSpec) Spec { return Spec{Kind: KindHTTP, Target: a, HTTP: &hs} }
	tests := []struct {
		name   string
		spec   Spec
		up     bool
		reason string
	}{
		{"200", h(HTTPSpec{}), true, "HTTP 200 from " + a.String()},
		{"HEAD", h(HTTPSpec{Method: "HEAD"}), true, "HTTP 200"},
		{"503", h(HTTPSpec{Path: "/503"}), false, "HTTP 503 from " + a.String() + " (want 200-399)"},
		{"503 expected", h(HTTPSpec{Path: "/503", Expect: []StatusRange{{Min: 503}}}), true, "HTTP 503"},
		{"slow", h(HTTPSpec{Path: "/slow"}), false, "timeout after 300ms waiting for the response from " + a.String()},
		{"redirect not followed, 3xx up by default", h(HTTPSpec{Path: "/redirect"}), true, "HTTP 302"},
		{"redirect not followed, only 200 wanted", h(HTTPSpec{Path: "/redirect", Expect: []StatusRange{{200, 299}}}), false, "HTTP 302 from " + a.String() + " (want 200-299)"},
		{"body contains", h(HTTPSpec{BodyContains: "vigil"}), true, "body as expected"},
		{"wrong body", h(HTTPSpec{BodyContains: "goodbye"}), false, `body does not contain "goodbye"`},
		{"body regexp", h(HTTPSpec{BodyRegexp: `^hello, \w+$`}), false, "does not match"},
		{"body regexp multiline", h(HTTPSpec{BodyRegexp: `(?m)^hello, \w+$`}), true, "body as expected"},
		{"md5", h(HTTPSpec{BodyMD5: strings.ToUpper(hexsum)}), true, "body as expected"},
		{"md5 wrong", h(HTTPSpec{BodyMD5: strings.Repeat("0", 32)}), false, "body MD5 " + hexsum},
		{"md5 big body", h(HTTPSpec{Path: "/big", BodyMD5: hex.EncodeToString(bigsum[:])}), true, "body as expected"},
		{"contains past the first buffer", h(HTTPSpec{Path: "/big", BodyContains: "needle"}), true, "body as expected"},
		{"chunked body", h(HTTPSpec{Path: "/chunked", BodyContains: "one, part two"}), true, "body as expected"},
		{"refused", Spec{Kind: KindHTTP, Target: refusingAddr(t)}, false, "connection refused"},
		{"accepts then hangs", Spec{Kind: KindHTTP, Target: hangingAddr(t)}, false, "timeout after 300ms waiting for the response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, runCheck(t, tt.spec, timeoutFor(tt.reason, 300*time.Millisecond)), tt.up, tt.reason)
		})
	}
	// What the server saw: HTTP/1.0, keep-alive off, our Host header.
	runCheck(t, h(HTTPSpec{Host: "www.example.test"}), 10*time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proto != "HTTP/1.0" || !s.close || s.host != "www.example.test" || s.ua != "vigil-healthcheck" || s.method != "GET" {
		t.Errorf("server saw %s %s host=%q ua=%q close=%v", s.method, s.proto, s.host, s.ua, s.close)
	}
}

// rawHTTPServer answers every connection with reply, then closes.
func rawHTTPServer(t *testing.T, reply string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 1024)
				c.Read(buf)
				c.Write([]byte(reply))
			}()
		}
	}()
	return addrOf(t, l.Addr())
}

func TestHTTPCheckOddServers(t *testing.T) {
	tests := []struct {
		name, reply string
		hs          HTTPSpec
		up          bool
		reason      string
	}{
		{"not HTTP", "SSH-2.0-OpenSSH_9.2\r\n", HTTPSpec{}, false, `malformed status line "SSH-2.0-OpenSSH_9.2"`},
		{"closes at once", "", HTTPSpec{}, false, "connection closed by"},
		{"bare LF", "HTTP/1.1 204 No Content\nServer: x\n\n", HTTPSpec{}, true, "HTTP 204"},
		{"no reason phrase", "HTTP/1.0 200\r\n\r\nok", HTTPSpec{BodyContains: "ok"}, true, "body as expected"},
		{"content-length shorter than data", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", HTTPSpec{BodyRegexp: "^ok$"}, true, "body as expected"},
		{"headers cut", "HTTP/1.0 200 OK\r\nContent-Le", HTTPSpec{BodyContains: "ok"}, false, "closed inside the headers"},
		{"1xx code", "HTTP/1.0 99 Odd\r\n\r\n", HTTPSpec{}, false, "malformed status line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := tt.hs
			expect(t, runCheck(t, Spec{Kind: KindHTTP, Target: rawHTTPServer(t, tt.reply), HTTP: &hs}, 10*time.Second), tt.up, tt.reason)
		})
	}
}

func TestHTTPSCheck(t *testing.T) {
	var mu sync.Mutex
	var sni []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "secure hello")
	}))
	srv.TLS = &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		sni = append(sni, h.ServerName)
		mu.Unlock()
		return nil, nil
	}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are the point
	srv.StartTLS()                                   // self-signed for example.com and 127.0.0.1
	defer srv.Close()
	a := addrOf(t, srv.Listener.Addr())
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	h := func(hs HTTPSpec) Spec { return Spec{Kind: KindHTTPS, Target: a, HTTP: &hs} }
	tests := []struct {
		name    string
		spec    Spec
		up      bool
		reason  string
		wantSNI string
	}{
		{"verify off passes", h(HTTPSpec{ServerName: "www.example.com", BodyContains: "secure"}), true, "HTTPS 200", "www.example.com"},
		{"verify on fails on a self-signed certificate", h(HTTPSpec{ServerName: "example.com", Verify: true}), false, "TLS handshake with " + a.String() + ": tls: failed to verify certificate", "example.com"},
		{"verify on with the CA passes", h(HTTPSpec{ServerName: "example.com", Verify: true, CAFile: caFile}), true, "HTTPS 200", "example.com"},
		{"verify on, wrong name", h(HTTPSpec{ServerName: "wrong.test", Verify: true, CAFile: caFile}), false, "not wrong.test", "wrong.test"},
		{"SNI from the Host header", h(HTTPSpec{Host: "example.com:8443", Verify: true, CAFile: caFile}), true, "HTTPS 200", "example.com"},
		{"IP verified against IP SAN, no SNI", h(HTTPSpec{Verify: true, CAFile: caFile}), true, "HTTPS 200", ""},
		{"plain HTTP to a TLS port", Spec{Kind: KindHTTP, Target: a}, false, "HTTP 400", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			sni = nil
			mu.Unlock()
			expect(t, runCheck(t, tt.spec, 10*time.Second), tt.up, tt.reason)
			mu.Lock()
			defer mu.Unlock()
			if tt.spec.Kind == KindHTTPS && (len(sni) != 1 || sni[0] != tt.wantSNI) {
				t.Errorf("server saw SNI %q, want [%q]", sni, tt.wantSNI)
			}
		})
	}
	t.Run("handshake timeout", func(t *testing.T) {
		expect(t, runCheck(t, Spec{Kind: KindHTTPS, Target: hangingAddr(t)}, 300*time.Millisecond), false, "timeout after 300ms in the TLS handshake")
	})
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExecCheck(t *testing.T) {
	target := netip.MustParseAddrPort("10.99.0.3:80")
	envFile := filepath.Join(t.TempDir(), "env")
	pidFile := filepath.Join(t.TempDir(), "pid")
	tests := []struct {
		name    string
		script  string
		dynamic bool
		up      bool
		weight  int
		reason  string
	}{
		{"exit 0", "exit 0", false, true, NoWeight, "exit 0"},
		{"exit 1 with output", "echo 'backend says no' >&2; exit 1", false, false, NoWeight, "exit 1: backend says no"},
		{"exit 7 not dynamic", "exit 7", false, false, NoWeight, "exit 7"},
		{"dynamic exit 0 keeps weight", "exit 0", true, true, NoWeight, "exit 0"},
		{"dynamic exit 1 is down", "exit 1", true, false, NoWeight, "exit 1"},
		{"dynamic exit 7 is weight 5", "exit 7", true, true, 5, "exit 7 (weight 5)"},
		{"dynamic exit 2 is weight 0", "exit 2", true, true, 0, "weight 0"},
		{"dynamic exit 255 is weight 253", "exit 255", true, true, 253, "weight 253"},
		{"environment", `echo "$VIGIL_RS_ADDRESS $VIGIL_RS_PORT $VIGIL_RS_NAME" > ` + envFile, false, true, NoWeight, "exit 0"},
		{"timeout kills the group", "sleep 30 & echo $! > " + pidFile + "; wait", false, false, NoWeight, "timeout after 500ms"},
		{"killed by a signal", "kill -9 $$", false, false, NoWeight, "killed by signal 9 (killed)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Spec{Kind: KindExec, Target: target, Name: "rs1", Exec: &ExecSpec{Command: []string{writeScript(t, tt.script)}, Dynamic: tt.dynamic}}
			r := runCheck(t, s, timeoutFor(tt.reason, 500*time.Millisecond))
			expect(t, r, tt.up, tt.reason)
			if r.Weight != tt.weight {
				t.Errorf("weight %d, want %d", r.Weight, tt.weight)
			}
		})
	}
	if b, err := os.ReadFile(envFile); err != nil || string(b) != "10.99.0.3 80 rs1\n" {
		t.Errorf("environment seen by the command: %q, %v", b, err)
	}
	// The grandchild of the timed-out check died with its group.
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	deadline := time.Now().Add(2 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the timed-out check's child %d is still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Run("missing command", func(t *testing.T) {
		s := Spec{Kind: KindExec, Target: target, Exec: &ExecSpec{Command: []string{"/nonexistent/check"}}}
		expect(t, runCheck(t, s, 10*time.Second), false, "no such file")
	})
}
