package failover_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/failover"
	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// TestNetnsQuietKeepsVIPsStopsAnnouncing: a resigned master lingering in
// a make-before-break handover keeps its VIPs but sends no gratuitous ARP
// or NA (one after the successor's would point clients back at it); a
// later claim announces again.
func TestNetnsQuietKeepsVIPsStopsAnnouncing(t *testing.T) {
	testenv.NeedNetns(t)
	ctx := context.Background()
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	client := lab.AddHost("client", "10.99.0.3/24", "fd99::3/64")
	v4, v6 := netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("fd99::100")
	capt := startCapture(t, client, v4, v6)
	c := newClaimer(t, vs1, failover.ClaimerConfig{
		VIPs:     []failover.VIP{mustVIP("10.99.0.100/24", "eth0", ""), mustVIP("fd99::100/128", "eth0", "")},
		Announce: failover.AnnounceConfig{Repeat: 3, Interval: 500 * time.Millisecond, Refresh: time.Second},
	})
	if err := c.BecomeMaster(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first round", 5*time.Second, func() bool { a, n := capt.counts(); return a >= 2 && n >= 1 })
	c.Quiet()
	time.Sleep(300 * time.Millisecond) // frames already on the wire arrive
	a0, n0 := capt.counts()
	time.Sleep(2500 * time.Millisecond) // past every round and refresh once due
	if a1, n1 := capt.counts(); a1 != a0 || n1 != n0 {
		t.Fatalf("quiet: %d more ARP and %d more NA reached the client", a1-a0, n1-n0)
	}
	if findAddr(t, vs1, "10.99.0.100") == nil || findAddr(t, vs1, "fd99::100") == nil {
		t.Fatal("quiet released the VIPs")
	}
	if st := c.Status(); !st.Master || st.Announce.Active {
		t.Fatalf("quiet: master %v, announcing %v; want master, not announcing", st.Master, st.Announce.Active)
	}
	// Back to master (the handover found no successor): announce again.
	if err := c.Transition(ctx, failover.Transition{To: failover.StateMaster, Reason: "no successor"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "announcements after the new claim", 5*time.Second, func() bool { a, _ := capt.counts(); return a > a0 })
}
