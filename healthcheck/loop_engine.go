package healthcheck

import (
	"context"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// runEngine is the run loop: one goroutine that waits in epoll_wait until
// the next check is due, a socket is ready or something wakes it (Set, a
// goroutine check finishing, ctx ending), like HAProxy's event loop.
// Checkers that implement engineChecker (TCP, plain HTTP) never leave this
// goroutine; every other Checker runs on a goroutine of its own.
//
// Every clock runs this loop. On the real clock epoll_wait's timeout
// measures the wait; on another clock (a test's fake one) time passes only
// when that clock says so, and a timer of the clock wakes the loop.
func (s *Scheduler) runEngine(ctx context.Context, e *engine) error {
	var (
		due         checkHeap
		pending     []Change
		gInflight   int // checks on goroutines (exec, https, custom)
		maxInflight = s.opts.MaxConcurrent
		realTime    = clock.IsSystem(s.clock)
		wakeAt      clock.Timer // not on the real clock: wakes the poll when due
		// busy is set by every step the loop takes, so a test hears of
		// each idle moment once, not again after a spurious wake-up.
		busy = true
	)
	complete := func(d done) {
		busy = true
		s.complete(d, &due, &pending)
	}
	e.finish = func(j *job, r Result) {
		complete(done{c: j.c, scheduled: j.scheduled, started: j.start, r: r})
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
			complete(d)
		}
	}

	s.mu.Lock()
	s.wakeFn = e.wake
	s.mu.Unlock()
	stopWake := context.AfterFunc(ctx, e.wake)
	defer stopWake()

	out := &outbox{kick: make(chan struct{}, 1)}
	if s.testIdle != nil {
		out.emptied = e.wake // the loop reports idle only once every change is read
	}
	go out.forward(ctx, s.changes)

	for {
		if ctx.Err() != nil {
			if wakeAt != nil {
				wakeAt.Stop()
			}
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
			busy = true
			s.admit(&due, &pending)
		default:
		}
		now := s.clock.Now()
		e.expire(now)
		for e.inflight+gInflight < maxInflight && len(due) > 0 && !due[0].due.After(now) {
			busy = true
			c := due.pop()
			if c.removed.Load() || s.deferExec(c, now, &due) {
				continue
			}
			if !e.startCheck(c, now) {
				gInflight++
				go s.runCheck(ctx, c, c.due, deliver)
			}
		}
		timeout := time.Duration(-1)
		if e.inflight+gInflight < maxInflight && len(due) > 0 {
			timeout = max(due[0].due.Sub(now), 0)
		}
		if dl, ok := e.nextDeadline(); ok {
			if d := max(dl.Sub(now), 0); timeout < 0 || d < timeout {
				timeout = d
			}
		}
		if len(pending) > 0 {
			out.put(pending)
			clear(pending)
			pending = pending[:0]
		}
		if !realTime {
			if wakeAt != nil {
				wakeAt.Stop()
				wakeAt = nil
			}
			if timeout >= 0 {
				// The timer must fall at now+timeout exactly, and a test
				// may move the clock at any moment: if it moved before or
				// while the timer was armed, look again at once instead.
				target := now.Add(timeout)
				timeout = 0
				if pre := s.clock.Now(); target.After(pre) {
					t := s.clock.AfterFunc(target.Sub(pre), e.wake)
					if s.clock.Now().Equal(pre) {
						wakeAt, timeout = t, -1
					} else {
						t.Stop()
					}
				}
			}
		}
		if s.testIdle != nil && busy && e.inflight+gInflight == 0 && out.empty() {
			// After the wake timer is armed: the test may move the clock
			// as soon as it hears this.
			busy = false
			var next time.Time
			if len(due) > 0 {
				next = due[0].due
			}
			select {
			case s.testIdle <- next:
			case <-ctx.Done():
			}
		}
		if err := e.poll(timeout); err != nil {
			e.finish = func(*job, Result) {}
			return s.abandonEngine(e, gInflight, err)
		}
		drain()
	}
}

// outbox hands Changes to the reader from a goroutine of its own, so a
// slow reader never blocks the loop.
type outbox struct {
	mu      sync.Mutex
	q       []Change
	unsent  int // queued or being sent
	kick    chan struct{}
	emptied func() // if set, called when the last queued change is read
}

// put queues cs (copied) for the reader.
func (o *outbox) put(cs []Change) {
	o.mu.Lock()
	o.q = append(o.q, cs...)
	o.unsent += len(cs)
	o.mu.Unlock()
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// empty reports whether every change put has been read.
func (o *outbox) empty() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.unsent == 0
}

// forward sends the queued changes to ch until ctx ends.
func (o *outbox) forward(ctx context.Context, ch chan<- Change) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.kick:
		}
		o.mu.Lock()
		q := o.q
		o.q = nil
		o.mu.Unlock()
		for _, c := range q {
			select {
			case ch <- c:
			case <-ctx.Done():
				return
			}
			o.mu.Lock()
			o.unsent--
			last := o.unsent == 0
			o.mu.Unlock()
			if last && o.emptied != nil {
				o.emptied()
			}
		}
	}
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
