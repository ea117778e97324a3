package failover

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// fakeClock runs timers when the test advances it, on the test's
// goroutine, in time order.
type fakeClock = clock.Fake

func newFakeClock() *fakeClock { return clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// sent is one announce call a recSender saw.
type sent struct {
	at     time.Time
	ifname string
	addr   netip.Addr
	router bool
}

// recSender records announcements instead of sending them.
type recSender struct {
	clock  clock.Clock
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
