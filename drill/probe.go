package drill

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// Prober probes one target at a steady rate and keeps every result.
type Prober struct {
	target  string
	every   time.Duration
	timeout time.Duration
	clk     clock.Clock

	mu  sync.Mutex
	res []Result
}

// Result is one probe: when it was sent, and what came back.
type Result struct {
	At  time.Time
	OK  bool
	Who string // the first words of the answer: which server answered
	Err string
}

// NewProber checks target (http://, https:// or tcp://HOST:PORT) and
// returns a prober that sends a probe every interval, each with its own
// timeout.
func NewProber(target string, every, timeout time.Duration, clk clock.Clock) (*Prober, error) {
	if every <= 0 || timeout <= 0 {
		return nil, fmt.Errorf("probe %s: interval %v and timeout %v must be positive", target, every, timeout)
	}
	switch {
	case strings.HasPrefix(target, "http://"), strings.HasPrefix(target, "https://"):
	case strings.HasPrefix(target, "tcp://"):
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(target, "tcp://")); err != nil {
			return nil, fmt.Errorf("probe %q: want tcp://HOST:PORT: %w", target, err)
		}
	default:
		return nil, fmt.Errorf("probe %q: want http://, https:// or tcp://HOST:PORT", target)
	}
	return &Prober{target: target, every: every, timeout: timeout, clk: clk}, nil
}

// Target is what the prober probes.
func (p *Prober) Target() string { return p.target }

// Run sends a probe every interval until ctx ends, each in its own
// goroutine, so one that hangs until its timeout does not hide the ones
// after it: an outage is measured to the probe interval, not to the
// timeout. It returns when every probe has returned; probes cut short by
// the end of ctx are not recorded.
func (p *Prober) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		at := p.clk.Now()
		wg.Go(func() {
			who, err := probeOnce(ctx, p.target, p.timeout)
			if ctx.Err() != nil {
				return
			}
			r := Result{At: at, OK: err == nil, Who: who}
			if err != nil {
				r.Err = err.Error()
			}
			p.mu.Lock()
			p.res = append(p.res, r)
			p.mu.Unlock()
		})
		_ = sleep(ctx, p.clk, p.every)
	}
}

// Results returns a copy of the results so far, in the order they came
// back (not necessarily the order they were sent).
func (p *Prober) Results() []Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.res)
}

// OKSince reports whether a probe sent at or after t succeeded.
func (p *Prober) OKSince(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.ContainsFunc(p.res, func(r Result) bool { return r.OK && !r.At.Before(t) })
}

// probeOnce makes one request: an HTTP GET (any answer below 500 counts;
// the body's start names the server) or a TCP connect (the first word of
// the first line read, if any, names the server).
func probeOnce(ctx context.Context, target string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if addr, ok := strings.CutPrefix(target, "tcp://"); ok {
		return probeTCP(ctx, addr)
	}
	return probeHTTP(ctx, target)
}

func probeHTTP(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("probe %s: %w", url, err)
	}
	// A new connection per probe: a kept-alive one would stay with the
	// old master and hide the takeover.
	cl := http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode >= 500 {
		return "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), nil
}

func probeTCP(ctx context.Context, addr string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(dl)
	}
	// A server that sends nothing still answered: the connect is the probe.
	line, _ := bufio.NewReader(c).ReadString('\n')
	if f := strings.Fields(line); len(f) > 0 {
		return f[0], nil
	}
	return "", nil
}

// summarize reports on the results sent in [from, to): an interruption
// is a run of failures, from its first failure to the next success, or
// to `to` if none came.
func summarize(target string, results []Result, from, to time.Time) ProbeReport {
	rs := slices.Clone(results)
	slices.SortStableFunc(rs, func(a, b Result) int { return a.At.Compare(b.At) })
	r := ProbeReport{Target: target, FirstOKMS: -1}
	var failStart time.Time
	for _, x := range rs {
		if x.At.Before(from) || !x.At.Before(to) {
			continue
		}
		r.Sent++
		if !x.OK {
			r.Failed++
			r.LastFailed = x.Err
			if failStart.IsZero() {
				failStart = x.At
			}
			continue
		}
		if r.FirstOKMS < 0 {
			r.FirstOKMS = ms(x.At.Sub(from))
		}
		if !failStart.IsZero() {
			r.OutageMS = max(r.OutageMS, ms(x.At.Sub(failStart)))
			failStart = time.Time{}
		}
		r.Answered = x.Who
	}
	if !failStart.IsZero() {
		r.OutageMS = max(r.OutageMS, ms(to.Sub(failStart)))
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// sleep waits d on clk, or until ctx ends.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) error {
	done := make(chan struct{})
	t := clk.AfterFunc(d, func() { close(done) })
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
