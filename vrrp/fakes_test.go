package vrrp

import (
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"
)

// fakeClock fires timers synchronously from Advance, in time order.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    int
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	when    time.Time
	seq     int
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
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

// Advance moves time forward by d, firing every timer that falls due, each
// at its own instant.
func (c *fakeClock) Advance(d time.Duration) {
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
			c.now = end
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
// every timer due in between fires late, at the end.
func (c *fakeClock) Stall(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var due *fakeTimer
		for i, t := range c.timers {
			if !t.when.After(c.now) && (due == nil || t.when.Before(due.when)) {
				due = c.timers[i]
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

// bus is an in-memory LAN for fake transports; links can be cut.
type bus struct {
	mu    sync.Mutex
	ports []*fakeTransport
}

type fakeTransport struct {
	bus     *bus
	local   netip.Addr
	mu      sync.Mutex
	handler func(Packet)
	sent    []Advert
	cut     bool
	ttl     int
}

func (b *bus) port(addr string) *fakeTransport {
	ft := &fakeTransport{bus: b, local: netip.MustParseAddr(addr), ttl: TTL}
	if b != nil {
		b.mu.Lock()
		b.ports = append(b.ports, ft)
		b.mu.Unlock()
	}
	return ft
}

func (ft *fakeTransport) LocalAddr() netip.Addr { return ft.local }
func (ft *fakeTransport) Close() error          { return nil }
func (ft *fakeTransport) SetHandler(h func(Packet)) {
	ft.mu.Lock()
	ft.handler = h
	ft.mu.Unlock()
}

func (ft *fakeTransport) Send(a Advert) error {
	ft.mu.Lock()
	ft.sent = append(ft.sent, a)
	cut := ft.cut
	ft.mu.Unlock()
	if ft.bus == nil || cut {
		return nil
	}
	group := Group4
	if ft.local.Is6() {
		group = Group6
	}
	b, err := a.Marshal(ft.local, group)
	if err != nil {
		return err
	}
	ft.bus.mu.Lock()
	ports := append([]*fakeTransport(nil), ft.bus.ports...)
	ft.bus.mu.Unlock()
	for _, p := range ports {
		if p != ft {
			p.deliver(Packet{Payload: b, Src: ft.local, Dst: group, TTL: ft.ttl})
		}
	}
	return nil
}

func (ft *fakeTransport) deliver(p Packet) {
	ft.mu.Lock()
	h, cut := ft.handler, ft.cut
	ft.mu.Unlock()
	if h != nil && !cut {
		h(p)
	}
}

func (ft *fakeTransport) setCut(c bool) {
	ft.mu.Lock()
	ft.cut = c
	ft.mu.Unlock()
}

// take returns and forgets the adverts sent so far.
func (ft *fakeTransport) take() []Advert {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	s := ft.sent
	ft.sent = nil
	return s
}

// inject delivers an advert from a peer as if received on the wire.
func (ft *fakeTransport) inject(t *testing.T, from string, a Advert) {
	t.Helper()
	src := netip.MustParseAddr(from)
	b, err := a.Marshal(src, Group4)
	if err != nil {
		t.Fatal(err)
	}
	ft.deliver(Packet{Payload: b, Src: src, Dst: Group4, TTL: TTL})
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
