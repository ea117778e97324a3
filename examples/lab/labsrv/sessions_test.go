package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// realServer runs the lab's line service and WWW on loopback, as
// `labsrv serve` does, and returns their addresses.
func realServer(t *testing.T, name string, www http.Handler) (line, web string) {
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
			go lineSession(c, name)
		}
	}()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: www, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(hl) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), hl.Addr().String()
}

// faultProxy stands for the director: it forwards TCP connections to a
// target and can black-hole one (packets lost, as during a takeover) or
// reset it (as a director without the connection does).
type faultProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*proxied // in accept order: the pool opens its sessions in slot order
}

type proxied struct {
	client net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	held   bool
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.hold(false)
			c.client.Close()
		}
	})
	go p.serve()
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pc := &proxied{client: c}
		pc.cond = sync.NewCond(&pc.mu)
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		p.mu.Unlock()
		go pc.pipe(s, c)
		go pc.pipe(c, s)
	}
}

// pipe copies src to dst, waiting while the connection is held.
func (pc *proxied) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			pc.mu.Lock()
			for pc.held {
				pc.cond.Wait()
			}
			pc.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (pc *proxied) hold(on bool) {
	pc.mu.Lock()
	pc.held = on
	pc.mu.Unlock()
	pc.cond.Broadcast()
}

func (p *faultProxy) conn(i int) *proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i >= len(p.conns) {
		p.t.Fatalf("proxy has %d connections, want #%d", len(p.conns), i)
	}
	return p.conns[i]
}

// reset sends the client of connection i a TCP RST.
func (p *faultProxy) reset(i int) {
	c := p.conn(i).client.(*net.TCPConn)
	_ = c.SetLinger(0)
	_ = c.Close()
}

// testPool opens lines line sessions (idle of them idle) through lp and
// keepalive HTTP sessions through hp.
func testPool(t *testing.T, lp, hp *faultProxy, lines, idle, keepalive int) *pool {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := poolConfig{LineTarget: lp.addr(), Lines: lines, Idle: idle, KeepAlive: keepalive,
		Every: 20 * time.Millisecond, LostAfter: 10 * time.Second, Dial: 2 * time.Second}
	if hp != nil {
		cfg.HTTPTarget = hp.addr()
	}
	p, err := newPool(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); p.close() })
	return p
}

func TestSessionsCheck(t *testing.T) {
	type fault func(t *testing.T, lp, hp *faultProxy)
	// Sessions open in slot order: line-01..line-02 idle, line-03..line-04
	// active, http-01..http-02.
	tests := []struct {
		name      string
		fault     fault
		lost      string // "id how", "" for none
		minGap    time.Duration
		keepAlive bool // the WWW honours keep-alive (false: it closes after each answer)
	}{
		{name: "nothing happens", keepAlive: true},
		{name: "idle line reset", keepAlive: true, lost: "line-01 reset",
			fault: func(t *testing.T, lp, hp *faultProxy) { lp.reset(0) }},
		{name: "active line reset", keepAlive: true, lost: "line-03 reset",
			fault: func(t *testing.T, lp, hp *faultProxy) { lp.reset(2); time.Sleep(200 * time.Millisecond) }},
		{name: "http reset", keepAlive: true, lost: "http-02 reset",
			fault: func(t *testing.T, lp, hp *faultProxy) { hp.reset(1); time.Sleep(200 * time.Millisecond) }},
		{name: "idle line black-holed", keepAlive: true, lost: "line-02 timeout",
			fault: func(t *testing.T, lp, hp *faultProxy) { lp.conn(1).hold(true) }},
		{name: "active line black-holed", keepAlive: true, lost: "line-04 timeout",
			fault: func(t *testing.T, lp, hp *faultProxy) { lp.conn(3).hold(true) }},
		{name: "active line interrupted 600 ms", keepAlive: true, minGap: 600 * time.Millisecond,
			fault: func(t *testing.T, lp, hp *faultProxy) {
				lp.conn(3).hold(true)
				time.Sleep(600 * time.Millisecond)
				lp.conn(3).hold(false)
			}},
		{name: "http interrupted 600 ms", keepAlive: true, minGap: 600 * time.Millisecond,
			fault: func(t *testing.T, lp, hp *faultProxy) {
				hp.conn(0).hold(true)
				time.Sleep(600 * time.Millisecond)
				hp.conn(0).hold(false)
			}},
		{name: "server ends keep-alive", keepAlive: false, lost: "http-01 closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			www := wwwHandler("rs1")
			if !tt.keepAlive {
				www = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Connection", "close")
					fmt.Fprintln(w, "rs1")
				})
			}
			line, web := realServer(t, "rs1", www)
			lp, hp := newFaultProxy(t, line), newFaultProxy(t, web)
			var p *pool
			if tt.keepAlive {
				p = testPool(t, lp, hp, 4, 2, 2)
			} else {
				// A server that closes fails the first exchange: the
				// session cannot even open.
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				_, err := newPool(ctx, poolConfig{LineTarget: lp.addr(), Lines: 1, HTTPTarget: hp.addr(), KeepAlive: 1,
					Every: 20 * time.Millisecond, LostAfter: 10 * time.Second, Dial: 2 * time.Second})
				if err == nil || !strings.Contains(err.Error(), "closed the keep-alive connection") {
					t.Fatalf("opening against a server that closes: %v, want the keep-alive connection closed", err)
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
			if tt.fault != nil {
				tt.fault(t, lp, hp)
			}
			start := time.Now()
			r := p.check(500*time.Millisecond, 2*time.Second, false)
			took := time.Since(start)
			t.Logf("%v (check took %v)", r, took.Round(time.Millisecond))
			if took > 4*time.Second {
				t.Errorf("the check took %v: its bounds are 2 s settle + 0.5 s answer", took)
			}
			if r.Lines != 4 || r.Idle != 2 || r.HTTP != 2 {
				t.Fatalf("counted %d line (%d idle), %d http; want 4 (2), 2", r.Lines, r.Idle, r.HTTP)
			}
			var got string
			for _, l := range r.Lost {
				got += fmt.Sprintf("%s %s", l.ID, l.How)
				if l.Server != "rs1" {
					t.Errorf("lost %s names server %q, want rs1", l.ID, l.Server)
				}
			}
			if got != tt.lost {
				t.Errorf("lost %q, want %q", got, tt.lost)
			}
			if r.ok() != (tt.lost == "") {
				t.Errorf("ok() = %v with lost %q", r.ok(), got)
			}
			wantResets := 0
			if strings.HasSuffix(tt.lost, "reset") {
				wantResets = 1
			}
			if r.Resets != wantResets {
				t.Errorf("resets %d, want %d", r.Resets, wantResets)
			}
			alive := r.LinesAlive + r.HTTPAlive
			if want := 6 - len(r.Lost); alive != want {
				t.Errorf("%d alive, want %d", alive, want)
			}
			if tt.minGap > 0 && (r.LongestGap < tt.minGap || r.LongestGap > tt.minGap+time.Second) {
				t.Errorf("longest gap %v, want between %v and %v", r.LongestGap, tt.minGap, tt.minGap+time.Second)
			}
			if tt.minGap == 0 && tt.lost == "" && r.LongestGap > 400*time.Millisecond {
				t.Errorf("longest gap %v with nothing happening (sessions send every 20 ms)", r.LongestGap)
			}
			// The next check measures from this one: no gap carried over,
			// and a lost session is not counted again.
			time.Sleep(100 * time.Millisecond)
			r2 := p.check(500*time.Millisecond, 2*time.Second, false)
			if !r2.ok() || r2.Lines+r2.HTTP != alive {
				t.Errorf("second check: %v; want all %d answering", r2, alive)
			}
			if r2.LongestGap > 400*time.Millisecond {
				t.Errorf("second check: longest gap %v, the interruption was before the first", r2.LongestGap)
			}
		})
	}
}

// TestSessionsRenew: a check with renew replaces the lost sessions, so the
// next event starts with every slot open again.
func TestSessionsRenew(t *testing.T) {
	line, web := realServer(t, "rs2", wwwHandler("rs2"))
	lp, hp := newFaultProxy(t, line), newFaultProxy(t, web)
	p := testPool(t, lp, hp, 3, 1, 1)
	lp.reset(0)
	hp.reset(0)
	time.Sleep(100 * time.Millisecond)
	r := p.check(500*time.Millisecond, 2*time.Second, true)
	if len(r.Lost) != 2 || r.Renewed != 2 || len(r.RenewErrors) != 0 {
		t.Fatalf("%v: want 2 lost and 2 reopened", r)
	}
	r = p.check(500*time.Millisecond, 2*time.Second, true)
	if !r.ok() || r.Lines != 3 || r.Idle != 1 || r.HTTP != 1 {
		t.Fatalf("after reopening: %v; want 3/3 line (1/1 idle), 1/1 http", r)
	}
	p.mu.Lock()
	var ids []string
	for _, s := range p.sessions {
		ids = append(ids, s.id)
	}
	p.mu.Unlock()
	if got := strings.Join(ids, " "); got != "line-02 line-03 line-01.2 http-01.2" {
		t.Errorf("sessions %q", got)
	}
}

func TestSessionGap(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name string
		kind sessKind
		oks  []int // answered exchanges, ms
		lost bool
		now  int
		want time.Duration
	}{
		{"steady", kindActive, []int{0, 100, 200, 300}, false, 350, 100 * time.Millisecond},
		{"one interruption", kindActive, []int{0, 100, 3700, 3800}, false, 3850, 3600 * time.Millisecond},
		{"interruption still running at the check", kindActive, []int{0, 100}, false, 2100, 2000 * time.Millisecond},
		{"lost: only what it saw before", kindActive, []int{0, 100, 250}, true, 5000, 150 * time.Millisecond},
		{"idle sessions have no gap", kindIdle, []int{0, 60000}, false, 60001, 0},
		{"http counts like a line", kindHTTP, []int{0, 900}, false, 950, 900 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &session{kind: tt.kind}
			for _, o := range tt.oks {
				s.recordOK(ms(o))
			}
			if tt.lost {
				s.lost = &lostError{How: "reset", Err: syscall.ECONNRESET}
			}
			if got := s.takeGap(ms(tt.now)); got != tt.want {
				t.Errorf("gap %v, want %v", got, tt.want)
			}
			// takeGap starts a new period at the check.
			if tt.kind.active() && !tt.lost {
				if got := s.takeGap(ms(tt.now)); got != ms(tt.now).Sub(ms(tt.oks[len(tt.oks)-1])) {
					t.Errorf("second takeGap %v, want the time since the last answer", got)
				}
			}
		})
	}
}

func TestStallMeter(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &stallMeter{every: 50 * time.Millisecond}
	for _, ms := range []int{0, 50, 101, 150, 1350, 1400} {
		m.observe(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	if got := m.take(); got != 1150*time.Millisecond {
		t.Errorf("worst lateness %v, want 1.15s (a wake-up 1.2 s after the previous one, every 50 ms)", got)
	}
	m.observe(t0.Add(1460 * time.Millisecond))
	if got := m.take(); got != 10*time.Millisecond {
		t.Errorf("after take: %v, want 10ms", got)
	}
}

func TestClassify(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("read the echo: %w", &net.OpError{Op: "read", Err: syscall.ECONNRESET}), "reset"},
		{fmt.Errorf("send: %w", syscall.EPIPE), "reset"},
		{fmt.Errorf("read the echo: %w", timeout), "timeout"},
		{fmt.Errorf("read the echo: %w", io.EOF), "closed"},
		{&lostError{How: "timeout", Err: errors.New("no answer within 2s of the check")}, "timeout"},
		{errors.New("no route to host"), "error"},
	}
	for _, tt := range tests {
		if got := classify(tt.err).How; got != tt.want {
			t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// TestSessionsControl runs sessions-check against a pool's control socket:
// exit status and summary follow the check.
func TestSessionsControl(t *testing.T) {
	line, web := realServer(t, "rs1", wwwHandler("rs1"))
	lp, hp := newFaultProxy(t, line), newFaultProxy(t, web)
	p := testPool(t, lp, hp, 2, 1, 1)
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { _ = p.serveControl(ln) }()
	if err := sessionsCheck([]string{"-ctl", sock, "-label", "quiet", "-answer", "1s", "-settle", "2s"}); err != nil {
		t.Fatalf("all sessions answer, sessions-check says %v", err)
	}
	// sessions-ports names each session by the address the director sees
	// as its source.
	var addrs []sessionAddr
	if err := control(sock, checkRequest{Op: "ports"}, 5*time.Second, &addrs); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		lp.conn(0).client.RemoteAddr().String(): "line-01", lp.conn(1).client.RemoteAddr().String(): "line-02",
		hp.conn(0).client.RemoteAddr().String(): "http-01",
	}
	if len(addrs) != len(want) {
		t.Errorf("ports %v, want %v", addrs, want)
	}
	for _, a := range addrs {
		if want[a.Local] != a.ID {
			t.Errorf("port %s named %s, want %q", a.Local, a.ID, want[a.Local])
		}
	}
	lp.reset(0)
	if err := sessionsCheck([]string{"-ctl", sock, "-label", "reset", "-answer", "1s", "-settle", "2s"}); err == nil {
		t.Fatal("a reset session: sessions-check passed")
	}
	// Renewed by the failed check (the default): the next one passes.
	if err := sessionsCheck([]string{"-ctl", sock, "-answer", "1s", "-settle", "2s"}); err != nil {
		t.Fatalf("after renewal: %v", err)
	}
}

// TestWWWKeepAlive: the WWW closes after each answer (probes are new
// connections each time) unless the client asks for keep-alive.
func TestWWWKeepAlive(t *testing.T) {
	_, web := realServer(t, "rs1", wwwHandler("rs1"))
	for _, tt := range []struct {
		header    string
		wantClose bool
	}{{"", true}, {"keep-alive", false}, {"close", true}} {
		req, _ := http.NewRequest("GET", "http://"+web+"/", nil)
		if tt.header != "" {
			req.Header.Set("Connection", tt.header)
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Close != tt.wantClose || strings.TrimSpace(string(b)) != "rs1" {
			t.Errorf("Connection: %q: close %v body %q, want close %v body rs1", tt.header, resp.Close, b, tt.wantClose)
		}
	}
}
