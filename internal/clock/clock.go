// Package clock is the time source of the timer-driven parts (the
// election, announcements): the real clock, and a fake one that tests
// advance by hand so state machines are tested without sleeping.
package clock

import (
	"runtime"
	"sort"
	"sync"
	"time"
)

// Clock is a time source with callbacks.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d (like time.AfterFunc).
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it did.
	Stop() bool
}

// System is the real clock.
func System() Clock { return system{} }

type system struct{}

func (system) Now() time.Time                            { return time.Now() }
func (system) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// IsSystem reports whether c is the real clock. A loop that sleeps in a
// system call (epoll_wait) passes its timeout to the call on the real
// clock; on any other clock time passes only when the clock says so, so
// the loop must be woken by a timer of c instead.
func IsSystem(c Clock) bool {
	_, ok := c.(system)
	return ok
}

// Fake is a clock that moves only when told; its timers fire
// synchronously, on the caller's goroutine, in time order (ties in the
// order they were set).
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	seq    int
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *Fake
	when    time.Time
	seq     int
	f       func()
	stopped bool
}

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now is the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f at Now()+d.
func (c *Fake) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return was
		}
	}
	return false
}

// Pending is the number of timers not yet fired or stopped.
func (c *Fake) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Advance moves time forward by d, firing every timer that falls due
// (including ones those timers set) each at its own instant.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.Slice(c.timers, func(i, j int) bool {
			if !c.timers[i].when.Equal(c.timers[j].when) {
				return c.timers[i].when.Before(c.timers[j].when)
			}
			return c.timers[i].seq < c.timers[j].seq
		})
		if len(c.timers) == 0 || c.timers[0].when.After(end) {
			// A timer may have advanced the clock itself (a slow step
			// simulated inside a callback): time never goes back.
			if end.After(c.now) {
				c.now = end
			}
			c.mu.Unlock()
			return
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		t.stopped = true
		c.now = t.when
		c.mu.Unlock()
		t.f()
	}
}

// Stall jumps time forward by d as if the process had been descheduled:
// every timer due in between fires late, at the end, earliest first.
func (c *Fake) Stall(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var due *fakeTimer
		for _, t := range c.timers {
			if !t.when.After(c.now) && (due == nil || t.when.Before(due.when)) {
				due = t
			}
		}
		if due == nil {
			c.mu.Unlock()
			return
		}
		for i, t := range c.timers {
			if t == due {
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				break
			}
		}
		due.stopped = true
		c.mu.Unlock()
		due.f()
	}
}

// spinWindow is how early AfterFuncPrecise arms the runtime timer. Go's
// netpoller sleeps in whole milliseconds, so a timer fires up to about
// 1 ms late; what is left after the early wake-up is waited out on the
// CPU.
const spinWindow = 1500 * time.Microsecond

// AfterFuncPrecise is AfterFunc for the few timers whose lateness a user
// sees, such as a backup's Master_Down timer: on the system clock it
// wakes up to spinWindow early and spins until d has passed, so f runs
// within microseconds of the deadline instead of up to a millisecond
// after it. The spin costs at most spinWindow of CPU per firing, so it is
// not for timers that fire all the time. Other clocks get AfterFunc.
func AfterFuncPrecise(c Clock, d time.Duration, f func()) Timer {
	if _, ok := c.(system); !ok {
		return c.AfterFunc(d, f)
	}
	due := time.Now().Add(d)
	return time.AfterFunc(max(0, d-spinWindow), func() {
		for time.Until(due) > 0 {
			runtime.Gosched() // spin, but let other goroutines run
		}
		f()
	})
}
