package main

// Long-lived sessions through a VIP, and the bookkeeping of which of them
// survived a director change: `labsrv sessions` holds them open and
// answers checks on a control socket; `labsrv sessions-check` asks it.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sessKind is what a session does between checks.
type sessKind int

const (
	kindActive sessKind = iota // a line every interval, echo expected
	kindIdle                   // one line at the start, then silent until poked
	kindHTTP                   // an HTTP/1.1 request every interval on one kept-alive connection
)

func (k sessKind) String() string {
	switch k {
	case kindActive:
		return "line"
	case kindIdle:
		return "line idle"
	default:
		return "http keep-alive"
	}
}

// active reports whether the kind sends on its own, so a gap in its
// answers is an interruption the client saw.
func (k sessKind) active() bool { return k != kindIdle }

// lostError is why a session was lost; How is reset, timeout, closed or
// error.
type lostError struct {
	How string
	Err error
}

func (e *lostError) Error() string { return e.How + ": " + e.Err.Error() }
func (e *lostError) Unwrap() error { return e.Err }

// classify names how err ended a session.
func classify(err error) *lostError {
	var le *lostError
	if errors.As(err, &le) {
		return le
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return &lostError{How: "reset", Err: err}
	case errors.As(err, &ne) && ne.Timeout():
		return &lostError{How: "timeout", Err: err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return &lostError{How: "closed", Err: err}
	}
	return &lostError{How: "error", Err: err}
}

// poke asks a session for one exchange answered by deadline.
type poke struct {
	deadline time.Time
	reply    chan error
}

// session is one TCP connection through the VIP. It never redials: a new
// connection would be a new session, and the old one counts as lost.
type session struct {
	id     string
	kind   sessKind
	target string // host:port
	server string // the real server that answered when it opened
	c      net.Conn
	rd     *bufio.Reader
	seq    int
	pokes  chan poke

	mu     sync.Mutex
	lost   *lostError
	lastOK time.Time     // end of the last answered exchange
	maxGap time.Duration // longest time between answered exchanges since the last check
}

// recordOK notes an answered exchange ending at t; for sessions that send
// on their own, the time since the previous one is a gap the client saw.
func (s *session) recordOK(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kind.active() && !s.lastOK.IsZero() {
		s.maxGap = max(s.maxGap, t.Sub(s.lastOK))
	}
	s.lastOK = t
}

// takeGap returns the longest gap since the previous call, counting an
// interruption still running at now, and starts a new period.
func (s *session) takeGap(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.kind.active() {
		return 0
	}
	g := s.maxGap
	if s.lost == nil && !s.lastOK.IsZero() {
		g = max(g, now.Sub(s.lastOK))
	}
	s.maxGap = 0
	return g
}

// fail records the first loss and closes the connection.
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.lost == nil {
		s.lost = classify(err)
	}
	s.mu.Unlock()
	_ = s.c.Close()
}

func (s *session) lostErr() *lostError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

// open dials the session, learns its real server and makes the first
// exchange (every session sends once at the start).
func (s *session) open(timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", s.target, timeout)
	if err != nil {
		return fmt.Errorf("open %s to %s: %w", s.id, s.target, err)
	}
	s.c, s.rd = c, bufio.NewReader(c)
	deadline := time.Now().Add(timeout)
	if s.kind != kindHTTP {
		_ = c.SetDeadline(deadline)
		banner, err := s.rd.ReadString('\n')
		if err != nil {
			c.Close()
			return fmt.Errorf("open %s to %s: read the banner: %w", s.id, s.target, err)
		}
		f := strings.Fields(banner)
		if len(f) == 0 {
			c.Close()
			return fmt.Errorf("open %s to %s: empty banner", s.id, s.target)
		}
		s.server = f[0]
	}
	if err := s.exchange(deadline); err != nil {
		c.Close()
		return fmt.Errorf("open %s to %s: first exchange: %w", s.id, s.target, err)
	}
	s.recordOK(time.Now())
	return nil
}

// exchange sends one line (or request) and reads its answer by deadline.
func (s *session) exchange(deadline time.Time) error {
	s.seq++
	if err := s.c.SetDeadline(deadline); err != nil {
		return err
	}
	if s.kind == kindHTTP {
		return s.httpExchange()
	}
	line := fmt.Sprintf("%s #%d", s.id, s.seq)
	if _, err := fmt.Fprintf(s.c, "%s\r\n", line); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	got, err := s.rd.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read the echo: %w", err)
	}
	if want := s.server + ": " + line; strings.TrimSpace(got) != want {
		return &lostError{How: "error", Err: fmt.Errorf("echo %q, want %q", strings.TrimSpace(got), want)}
	}
	return nil
}

func (s *session) httpExchange() error {
	if _, err := fmt.Fprintf(s.c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive\r\nUser-Agent: labsrv-sessions\r\n\r\n", s.target); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	resp, err := http.ReadResponse(s.rd, nil)
	if err != nil {
		return fmt.Errorf("read the response: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read the body: %w", err)
	}
	who := strings.TrimSpace(string(b))
	switch {
	case resp.StatusCode != http.StatusOK:
		return &lostError{How: "error", Err: fmt.Errorf("HTTP %d", resp.StatusCode)}
	case s.server == "":
		s.server = who
	case who != s.server:
		return &lostError{How: "error", Err: fmt.Errorf("answered by %q, the session is with %q", who, s.server)}
	}
	if resp.Close {
		// The next request would need a new connection: a new session.
		return &lostError{How: "closed", Err: errors.New("the server closed the keep-alive connection")}
	}
	return nil
}

// run sends on the session's own schedule (active kinds) and answers
// pokes, until ctx ends or the session is lost.
func (s *session) run(ctx context.Context, every, lostAfter time.Duration) {
	var tick <-chan time.Time
	if s.kind.active() {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			_ = s.c.Close()
			return
		case <-tick:
			if err := s.exchange(time.Now().Add(lostAfter)); err != nil {
				s.fail(err)
				return
			}
			s.recordOK(time.Now())
		case p := <-s.pokes:
			err := s.exchange(p.deadline)
			if err == nil {
				s.recordOK(time.Now())
			} else {
				s.fail(err)
			}
			p.reply <- err
			if err != nil {
				return
			}
		}
	}
}

// poolConfig says which sessions a pool holds and how it judges them.
type poolConfig struct {
	LineTarget string        // host:port of the line service
	Lines      int           // line sessions, idle ones included
	Idle       int           // of which idle
	HTTPTarget string        // host:port of the WWW service ("" for none)
	KeepAlive  int           // HTTP keep-alive sessions
	Every      time.Duration // active sessions' interval
	LostAfter  time.Duration // an active exchange unanswered this long loses the session
	Dial       time.Duration // connect + first exchange timeout
}

// stallMeter measures how late the client's own timer wakes it. A client
// that is not scheduled (an emulated guest on a busy machine) sees gaps
// that no director caused; the check reports this beside the gaps.
type stallMeter struct {
	every time.Duration
	mu    sync.Mutex
	last  time.Time
	worst time.Duration
}

// observe notes a wake-up at t.
func (m *stallMeter) observe(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.last.IsZero() {
		m.worst = max(m.worst, t.Sub(m.last)-m.every)
	}
	m.last = t
}

// take returns the worst lateness since the previous call.
func (m *stallMeter) take() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.worst
	m.worst = 0
	return w
}

func (m *stallMeter) run(ctx context.Context) {
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.observe(time.Now())
		}
	}
}

// pool holds the sessions and answers checks.
type pool struct {
	cfg    poolConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ckMu   sync.Mutex // one check at a time
	stall  *stallMeter

	mu       sync.Mutex
	sessions []*session
	gen      map[string]int // reopen count per slot, for the sessions' names
}

// newPool opens every session; it fails if one cannot be opened.
func newPool(ctx context.Context, cfg poolConfig) (*pool, error) {
	if cfg.Idle > cfg.Lines {
		return nil, fmt.Errorf("sessions: %d idle of %d line sessions", cfg.Idle, cfg.Lines)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &pool{cfg: cfg, ctx: ctx, cancel: cancel, gen: map[string]int{}, stall: &stallMeter{every: 50 * time.Millisecond}}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.stall.run(ctx) }()
	var slots []*session
	for i := range cfg.Lines {
		k := kindActive
		if i < cfg.Idle {
			k = kindIdle
		}
		slots = append(slots, &session{id: fmt.Sprintf("line-%02d", i+1), kind: k, target: cfg.LineTarget})
	}
	for i := range cfg.KeepAlive {
		slots = append(slots, &session{id: fmt.Sprintf("http-%02d", i+1), kind: kindHTTP, target: cfg.HTTPTarget})
	}
	for _, s := range slots {
		if err := p.start(s); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

// start opens s and runs it.
func (p *pool) start(s *session) error {
	s.pokes = make(chan poke)
	if err := s.open(p.cfg.Dial); err != nil {
		return err
	}
	p.mu.Lock()
	p.sessions = append(p.sessions, s)
	p.mu.Unlock()
	p.wg.Add(1)
	go func() { defer p.wg.Done(); s.run(p.ctx, p.cfg.Every, p.cfg.LostAfter) }()
	return nil
}

// close ends every session and waits for them.
func (p *pool) close() {
	p.cancel()
	p.mu.Lock()
	for _, s := range p.sessions {
		_ = s.c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// lostSession names one session a check found lost.
type lostSession struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Server string `json:"server"`
	How    string `json:"how"` // reset, timeout, closed, error
	Error  string `json:"error"`
}

// checkReport is a check's answer: the sessions open at the previous check
// (or the start) and how many of them still answer.
type checkReport struct {
	Lines, LinesAlive int
	Idle, IdleAlive   int
	HTTP, HTTPAlive   int
	Resets            int
	LongestGap        time.Duration // among active sessions, since the previous check
	GapSession        string        // which one, and via which server
	ClientStall       time.Duration // the client's own worst scheduling delay since the previous check
	Lost              []lostSession
	Renewed           int      // lost sessions replaced by new ones after the check
	RenewErrors       []string // replacements that could not be opened
}

// ok reports whether every session answered.
func (r checkReport) ok() bool {
	return r.LinesAlive == r.Lines && r.HTTPAlive == r.HTTP && len(r.Lost) == 0
}

func (r checkReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sessions: %d/%d line (%d/%d idle) alive, %d/%d http keep-alive alive, %d resets, longest active gap %d ms",
		r.LinesAlive, r.Lines, r.IdleAlive, r.Idle, r.HTTPAlive, r.HTTP, r.Resets, r.LongestGap.Milliseconds())
	if r.GapSession != "" {
		fmt.Fprintf(&b, " (%s)", r.GapSession)
	}
	fmt.Fprintf(&b, ", client stalled up to %d ms", r.ClientStall.Milliseconds())
	for _, l := range r.Lost {
		fmt.Fprintf(&b, "\n  lost %s (%s) via %s: %s: %s", l.ID, l.Kind, l.Server, l.How, l.Error)
	}
	if r.Renewed > 0 {
		fmt.Fprintf(&b, "\n  reopened %d lost session(s) for what follows", r.Renewed)
	}
	for _, e := range r.RenewErrors {
		fmt.Fprintf(&b, "\n  could not reopen: %s", e)
	}
	return b.String()
}

// check pokes every session open since the previous check: each must
// answer within bound. Active sessions are first given up to settle to
// answer on their own (a TCP retransmission after an outage can be
// seconds away). With renew, lost sessions are replaced afterwards so the
// next check starts again with every slot open.
func (p *pool) check(bound, settle time.Duration, renew bool) checkReport {
	p.ckMu.Lock()
	defer p.ckMu.Unlock()
	p.mu.Lock()
	ss := slices.Clone(p.sessions)
	p.mu.Unlock()

	start := time.Now()
	for end := start.Add(settle); time.Now().Before(end) && !allAnsweredSince(ss, start); {
		time.Sleep(20 * time.Millisecond)
	}

	var wg sync.WaitGroup
	for _, s := range ss {
		if s.lostErr() != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(bound)
			pk := poke{deadline: deadline, reply: make(chan error, 1)}
			t := time.NewTimer(time.Until(deadline) + 100*time.Millisecond)
			defer t.Stop()
			select {
			case s.pokes <- pk:
			case <-t.C:
				// Stuck in an exchange of its own since before the check.
				s.fail(&lostError{How: "timeout", Err: fmt.Errorf("no answer within %v of the check", bound)})
				return
			}
			select {
			case <-pk.reply:
			case <-t.C:
				s.fail(&lostError{How: "timeout", Err: fmt.Errorf("no answer within %v of the check", bound)})
			}
		}()
	}
	wg.Wait()

	now := time.Now()
	r := checkReport{ClientStall: p.stall.take()}
	var keep, lost []*session
	for _, s := range ss {
		if g := s.takeGap(now); g > r.LongestGap {
			r.LongestGap, r.GapSession = g, s.id+" via "+s.server
		}
		le := s.lostErr()
		alive := le == nil
		switch s.kind {
		case kindHTTP:
			r.HTTP++
			r.HTTPAlive += b2i(alive)
		case kindIdle:
			r.Idle++
			r.IdleAlive += b2i(alive)
			fallthrough
		default:
			r.Lines++
			r.LinesAlive += b2i(alive)
		}
		if alive {
			keep = append(keep, s)
			continue
		}
		lost = append(lost, s)
		if le.How == "reset" {
			r.Resets++
		}
		r.Lost = append(r.Lost, lostSession{ID: s.id, Kind: s.kind.String(), Server: s.server, How: le.How, Error: le.Err.Error()})
	}
	p.mu.Lock()
	p.sessions = keep
	p.mu.Unlock()
	if renew {
		for _, s := range lost {
			base, _, _ := strings.Cut(s.id, ".")
			p.mu.Lock()
			p.gen[base]++
			id := fmt.Sprintf("%s.%d", base, p.gen[base]+1)
			p.mu.Unlock()
			target := p.cfg.LineTarget
			if s.kind == kindHTTP {
				target = p.cfg.HTTPTarget
			}
			if err := p.start(&session{id: id, kind: s.kind, target: target}); err != nil {
				r.RenewErrors = append(r.RenewErrors, err.Error())
				continue
			}
			r.Renewed++
		}
	}
	return r
}

// allAnsweredSince reports whether every live active session has had an
// answer at or after t.
func allAnsweredSince(ss []*session, t time.Time) bool {
	for _, s := range ss {
		s.mu.Lock()
		waiting := s.kind.active() && s.lost == nil && s.lastOK.Before(t)
		s.mu.Unlock()
		if waiting {
			return false
		}
	}
	return true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkRequest is what sessions-check (op "check") and sessions-ports
// (op "ports") send on the control socket.
type checkRequest struct {
	Op     string        `json:"op"`
	Bound  time.Duration `json:"bound_ns"`
	Settle time.Duration `json:"settle_ns"`
	Renew  bool          `json:"renew"`
}

// serveControl answers checks on ln until it is closed.
func (p *pool) serveControl(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			var req checkRequest
			if err := json.NewDecoder(c).Decode(&req); err != nil {
				fmt.Fprintf(os.Stderr, "labsrv sessions: control request: %v\n", err)
				return
			}
			switch req.Op {
			case "ports":
				_ = json.NewEncoder(c).Encode(p.ports())
			default:
				_ = json.NewEncoder(c).Encode(p.check(req.Bound, req.Settle, req.Renew))
			}
		}()
	}
}

// sessionAddr is one open session's client-side address, by which a
// director's connection table (ipvsadm -Lnc) names it.
type sessionAddr struct {
	ID    string `json:"id"`
	Local string `json:"local"`
}

// ports lists the sessions not known to be lost.
func (p *pool) ports() []sessionAddr {
	p.mu.Lock()
	ss := slices.Clone(p.sessions)
	p.mu.Unlock()
	var out []sessionAddr
	for _, s := range ss {
		if s.lostErr() == nil {
			out = append(out, sessionAddr{ID: s.id, Local: s.c.LocalAddr().String()})
		}
	}
	return out
}

func hostPort(s string) string {
	if s == "" {
		return ""
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return s + ":80"
}

// sessions is `labsrv sessions`: open the sessions, then answer checks on
// the control socket until SIGTERM/SIGINT.
func sessions(args []string) error {
	fs := flag.NewFlagSet("sessions", flag.ExitOnError)
	var cfg poolConfig
	fs.StringVar(&cfg.LineTarget, "target", "", "line service through the VIP, host:port")
	fs.IntVar(&cfg.Lines, "n", 20, "line sessions")
	fs.IntVar(&cfg.Idle, "idle", 10, "of which idle: one line at the start, then silent until a check")
	httpTarget := fs.String("http", "", "WWW through the VIP, host[:port] (empty: no keep-alive clients)")
	fs.IntVar(&cfg.KeepAlive, "keepalive", 4, "HTTP keep-alive clients (one connection each, never reopened)")
	fs.DurationVar(&cfg.Every, "every", 100*time.Millisecond, "active sessions' interval")
	fs.DurationVar(&cfg.LostAfter, "lost-after", 30*time.Second, "an active line or request unanswered this long loses its session")
	fs.DurationVar(&cfg.Dial, "dial", 5*time.Second, "timeout to open a session")
	ctl := fs.String("ctl", "", "control socket for sessions-check")
	_ = fs.Parse(args)
	if cfg.LineTarget == "" || *ctl == "" {
		return errors.New("sessions: -target and -ctl are required")
	}
	cfg.HTTPTarget = hostPort(*httpTarget)
	if cfg.HTTPTarget == "" {
		cfg.KeepAlive = 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p, err := newPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.close()
	_ = os.Remove(*ctl)
	ln, err := net.Listen("unix", *ctl)
	if err != nil {
		return fmt.Errorf("sessions: listen on %s: %w", *ctl, err)
	}
	defer os.Remove(*ctl)
	go func() { <-ctx.Done(); ln.Close() }()
	fmt.Printf("sessions: %d line (%d idle) to %s, %d http keep-alive to %s open; checks on %s\n",
		cfg.Lines, cfg.Idle, cfg.LineTarget, cfg.KeepAlive, cfg.HTTPTarget, *ctl)
	if err := p.serveControl(ln); err != nil && ctx.Err() == nil {
		return fmt.Errorf("sessions: control socket: %w", err)
	}
	return nil
}

// control sends one request to the sessions client and decodes its answer.
func control(ctl string, req checkRequest, timeout time.Duration, answer any) error {
	c, err := net.Dial("unix", ctl)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("send to %s: %w", ctl, err)
	}
	if err := json.NewDecoder(c).Decode(answer); err != nil {
		return fmt.Errorf("read from %s: %w", ctl, err)
	}
	return nil
}

// sessionsPorts is `labsrv sessions-ports`: "LOCAL-ADDRESS ID" of every
// open session, one a line, for scripts that look for them in a
// director's connection table.
func sessionsPorts(args []string) error {
	fs := flag.NewFlagSet("sessions-ports", flag.ExitOnError)
	ctl := fs.String("ctl", "", "the sessions client's control socket")
	_ = fs.Parse(args)
	if *ctl == "" {
		return errors.New("sessions-ports: -ctl is required")
	}
	var addrs []sessionAddr
	if err := control(*ctl, checkRequest{Op: "ports"}, 10*time.Second, &addrs); err != nil {
		return fmt.Errorf("sessions-ports: %w", err)
	}
	for _, a := range addrs {
		fmt.Println(a.Local, a.ID)
	}
	return nil
}

// sessionsCheck is `labsrv sessions-check`: it prints the check and fails
// unless every session answered.
func sessionsCheck(args []string) error {
	fs := flag.NewFlagSet("sessions-check", flag.ExitOnError)
	ctl := fs.String("ctl", "", "the sessions client's control socket")
	var req checkRequest
	fs.DurationVar(&req.Bound, "answer", 2*time.Second, "each session must answer a line within this")
	fs.DurationVar(&req.Settle, "settle", 20*time.Second, "first wait up to this for every active session to answer on its own")
	fs.BoolVar(&req.Renew, "renew", true, "replace lost sessions afterwards, so the next check starts with all open")
	label := fs.String("label", "", "prefix the summary with \"event LABEL: \"")
	_ = fs.Parse(args)
	if *ctl == "" {
		return errors.New("sessions-check: -ctl is required")
	}
	req.Op = "check"
	var r checkReport
	if err := control(*ctl, req, req.Settle+req.Bound+time.Minute, &r); err != nil {
		return fmt.Errorf("sessions-check: %w", err)
	}
	if *label != "" {
		fmt.Printf("event %s: ", *label)
	}
	fmt.Println(r)
	if !r.ok() {
		return fmt.Errorf("sessions-check: %d session(s) lost", len(r.Lost))
	}
	return nil
}
