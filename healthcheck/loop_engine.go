package healthcheck

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// runEngine is the run loop on the real clock: one goroutine that waits in
// epoll_wait until the next check is due, a socket is ready or something
// wakes it (Set, a goroutine check finishing, ctx ending), like HAProxy's
// event loop. TCP and plain HTTP checks never leave this goroutine.
func (s *Scheduler) runEngine(ctx context.Context, e *engine) error {
	var (
		due       checkHeap
		pending   []Change
		gInflight int // checks on goroutines (exec, https, custom)
		max       = s.opts.MaxConcurrent
	)
	e.finish = func(j *job, r Result) {
		s.complete(done{c: j.c, scheduled: j.scheduled, started: j.start, r: r}, &due, &pending)
	}
	deliver := func(d done) {
		s.goMu.Lock()
		s.goDone = append(s.goDone, d)
		e.wake() // under goMu: Run closes the eventfd only after taking every result
		s.goMu.Unlock()
	}
	drain := func() {
		s.goMu.Lock()
		ds := s.goDone
		s.goDone = nil
		s.goMu.Unlock()
		for _, d := range ds {
			gInflight--
			s.complete(d, &due, &pending)
		}
	}

	s.mu.Lock()
	s.wakeFn = e.wake
	s.mu.Unlock()
	stopWake := context.AfterFunc(ctx, e.wake)
	defer stopWake()

	// Changes go out through a forwarder, so a slow reader never blocks
	// the loop.
	var (
		outMu sync.Mutex
		outQ  []Change
		outCh = make(chan struct{}, 1)
	)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-outCh:
			}
			outMu.Lock()
			q := outQ
			outQ = nil
			outMu.Unlock()
			for _, c := range q {
				select {
				case s.changes <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()

	for {
		if ctx.Err() != nil {
			e.finish = func(*job, Result) {}
			for gInflight > 0 {
				e.poll(10 * time.Millisecond)
				s.goMu.Lock()
				gInflight -= len(s.goDone)
				s.goDone = nil
				s.goMu.Unlock()
			}
			s.mu.Lock()
			s.wakeFn = nil
			s.mu.Unlock()
			e.close("cancelled")
			return nil
		}
		select {
		case <-s.kick:
			s.admit(&due, &pending)
		default:
		}
		now := time.Now()
		e.expire(now)
		for e.inflight+gInflight < max && len(due) > 0 && !due[0].due.After(now) {
			c := due.pop()
			if c.removed.Load() || s.deferExec(c, now, &due) {
				continue
			}
			if !s.startOnEngine(e, c) {
				gInflight++
				go s.runCheck(ctx, c, c.due, deliver)
			}
		}
		timeout := time.Duration(-1)
		if e.inflight+gInflight < max && len(due) > 0 {
			timeout = max0(due[0].due.Sub(now))
		}
		if dl, ok := e.nextDeadline(); ok {
			if d := max0(dl.Sub(now)); timeout < 0 || d < timeout {
				timeout = d
			}
		}
		if len(pending) > 0 {
			outMu.Lock()
			outQ = append(outQ, pending...)
			outMu.Unlock()
			clear(pending)
			pending = pending[:0]
			select {
			case outCh <- struct{}{}:
			default:
			}
		}
		if err := e.poll(timeout); err != nil {
			e.finish = func(*job, Result) {}
			return s.abandonEngine(e, gInflight, err)
		}
		drain()
	}
}

// startOnEngine starts c on the engine if its checker runs there.
func (s *Scheduler) startOnEngine(e *engine, c *check) bool {
	var (
		sa     unix.Sockaddr
		family int
		j      *job
	)
	switch ch := c.checker.(type) {
	case *TCPChecker:
		if ch.sa == nil {
			var err error
			if ch.sa, ch.family, err = sockaddr(ch.Addr); err != nil {
				return false
			}
		}
		j = e.newJob()
		j.tcp, j.addr = ch, ch.Addr
		sa, family = ch.sa, ch.family
	case *HTTPChecker:
		if ch.tls != nil {
			return false
		}
		if ch.sa == nil {
			var err error
			if ch.sa, ch.family, err = sockaddr(ch.addr); err != nil {
				return false
			}
		}
		j = e.newJob()
		j.http, j.addr = ch, ch.addr
		sa, family = ch.sa, ch.family
	default:
		return false
	}
	j.c, j.scheduled = c, c.due
	e.start(j, sa, family, c.spec.Timeout)
	return true
}

// abandonEngine ends Run after epoll failed: it waits for goroutine checks
// and reports the error.
func (s *Scheduler) abandonEngine(e *engine, gInflight int, err error) error {
	s.mu.Lock()
	s.wakeFn = nil
	s.mu.Unlock()
	for gInflight > 0 {
		time.Sleep(10 * time.Millisecond)
		s.goMu.Lock()
		gInflight -= len(s.goDone)
		s.goDone = nil
		s.goMu.Unlock()
	}
	e.close("stopped")
	return err
}

func max0(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}
