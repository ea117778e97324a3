package vrrp

import (
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// fakeClock fires timers synchronously from Advance, in time order.
type fakeClock = clock.Fake

func newFakeClock() *fakeClock { return clock.NewFake(time.Unix(1_700_000_000, 0)) }

// bus is an in-memory LAN for fake transports; links can be cut. A
// packet is delivered by a zero-delay timer of clk, as by a socket reader
// of its own on a real LAN: never from inside the sender's Send, which
// runs within the sender's step.
type bus struct {
	clk   *fakeClock
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
			pkt := Packet{Payload: b, Src: ft.local, Dst: group, TTL: ft.ttl}
			ft.bus.clk.AfterFunc(0, func() { p.deliver(pkt) })
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
func (ft *fakeTransport) take() []Advert { return takeAll(&ft.mu, &ft.sent) }

// takeAll returns *s and empties it, under mu.
func takeAll[T any](mu *sync.Mutex, s *[]T) []T {
	mu.Lock()
	defer mu.Unlock()
	out := *s
	*s = nil
	return out
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
