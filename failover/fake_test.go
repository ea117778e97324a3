package failover

import (
	"errors"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// fakeClock runs timers when the test advances it, on the test's
// goroutine, in time order.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    int
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	seq     int
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, at: c.now.Add(d), seq: c.seq, f: f}
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

// pending is the number of timers not yet fired or stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Advance moves time forward by d, firing every timer due on the way
// (including ones those timers schedule) at its own time.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.Slice(c.timers, func(i, j int) bool {
			if c.timers[i].at.Equal(c.timers[j].at) {
				return c.timers[i].seq < c.timers[j].seq
			}
			return c.timers[i].at.Before(c.timers[j].at)
		})
		if len(c.timers) == 0 || c.timers[0].at.After(end) {
			c.now = end
			c.mu.Unlock()
			return
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		t.stopped = true
		c.now = t.at
		c.mu.Unlock()
		t.f()
	}
}

// sent is one announce call a recSender saw.
type sent struct {
	at     time.Time
	ifname string
	addr   netip.Addr
	router bool
}

// recSender records announcements instead of sending them.
type recSender struct {
	clock  Clock
	mu     sync.Mutex
	sends  []sent
	closes int
	fail   error
}

func (s *recSender) announce(ifname string, addr netip.Addr, router bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	s.sends = append(s.sends, sent{at: s.clock.Now(), ifname: ifname, addr: addr, router: router})
	if addr.Is4() {
		return 2, nil // request and reply
	}
	return 1, nil
}

func (s *recSender) close() {
	s.mu.Lock()
	s.closes++
	s.mu.Unlock()
}

func (s *recSender) snapshot() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sent(nil), s.sends...)
}

var errWire = errors.New("wire unplugged")
