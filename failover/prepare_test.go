package failover

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// prepSender is a recSender that also opens its "sockets" ahead, and
// records when.
type prepSender struct {
	*recSender
	mu       sync.Mutex
	prepared []string // "ifname addr", in call order
	fail     error    // returned by prepare
}

func (s *prepSender) prepare(ifname string, addr netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prepared = append(s.prepared, ifname+" "+addr.String())
	return s.fail
}

func (s *prepSender) preparedSoFar() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.prepared)
}

func newPrepAnnouncer(t *testing.T, fail error, vips ...VIP) (*Announcer, *prepSender) {
	t.Helper()
	clock := newFakeClock()
	ps := &prepSender{recSender: &recSender{clock: clock}, fail: fail}
	a := newAnnouncer(AnnouncerConfig{AnnounceConfig: AnnounceConfig{Repeat: 0}, VIPs: vips, Clock: clock, Logger: quietLog()}, ps)
	return a, ps
}

// TestAnnouncerPreparesAtCreation: the sockets are opened when the
// Announcer is made, before any takeover, one per VIP's interface and
// family, and nothing is sent.
func TestAnnouncerPreparesAtCreation(t *testing.T) {
	a, ps := newPrepAnnouncer(t, nil, vip4, vip6)
	want := []string{"eth0 10.99.0.100", "eth1 fd99::100"}
	if got := ps.preparedSoFar(); !slices.Equal(got, want) {
		t.Fatalf("prepared at creation %q, want %q", got, want)
	}
	if n := len(ps.snapshot()); n != 0 {
		t.Fatalf("%d packets sent at creation, want none", n)
	}
	a.Start()
	if n := len(ps.snapshot()); n != 2 {
		t.Fatalf("%d announce calls at Start, want 2", n)
	}
}

// TestAnnouncerPreparesNewVIPs: a reload adding a VIP on another
// interface opens its socket at once, even as backup.
func TestAnnouncerPreparesNewVIPs(t *testing.T) {
	a, ps := newPrepAnnouncer(t, nil, vip4)
	a.reconfigure(AnnounceConfig{}, []VIP{vip4, vip6})
	if got := ps.preparedSoFar(); !slices.Contains(got, "eth1 fd99::100") {
		t.Fatalf("prepared %q after the reload, want the new VIP's eth1", got)
	}
	if n := len(ps.snapshot()); n != 0 {
		t.Fatalf("%d packets sent by a backup's reload, want none", n)
	}
}

// TestAnnouncerPrepareFailureFallsBack: a socket that cannot be opened
// ahead (interface not there yet) does not stop the announcer: the round
// still tries, and the move to backup tries to open it again for the
// next takeover. Close does not.
func TestAnnouncerPrepareFailureFallsBack(t *testing.T) {
	a, ps := newPrepAnnouncer(t, errors.New("no such interface"), vip4)
	a.Start()
	if n := len(ps.snapshot()); n != 1 {
		t.Fatalf("%d announce calls at Start after a failed prepare, want 1", n)
	}
	before := len(ps.preparedSoFar())
	a.Stop()
	if got := len(ps.preparedSoFar()); got != before+1 {
		t.Fatalf("prepare calls %d -> %d across Stop, want one more", before, got)
	}
	a.Stop() // not active: nothing to do
	a.Start()
	a.Close()
	if got := len(ps.preparedSoFar()); got != before+1 {
		t.Fatalf("prepare calls %d -> %d after Close, want none", before+1, got)
	}
	if ps.closes != 1 {
		t.Fatalf("sockets closed %d times, want 1", ps.closes)
	}
}

// TestPacketSenderPrepareMissingInterface: the real sender reports an
// interface it cannot open a socket on, rather than caching anything.
func TestPacketSenderPrepareMissingInterface(t *testing.T) {
	s := newPacketSender(nil)
	defer s.close()
	for _, addr := range []string{"10.99.0.100", "fd99::100"} {
		if err := s.prepare("vigil-nosuch0", netip.MustParseAddr(addr)); err == nil {
			t.Errorf("prepare %s on a missing interface: no error", addr)
		}
	}
	if len(s.arp) != 0 || len(s.ndp) != 0 {
		t.Fatalf("sockets cached for a missing interface: %d ARP, %d NDP", len(s.arp), len(s.ndp))
	}
}
