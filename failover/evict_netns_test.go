package failover_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vigil-lb/vigil/failover"
	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// TestNetnsVIPAddedWhileNotMasterIsRemoved: a director that is not master
// holds no VIP. A VIP that appears on its interface while released (a
// claim that lost a race with a step-down, or a hand) is taken away at
// once, another interface's copy of the address is left alone, and once
// claimed again the VIP stays.
func TestNetnsVIPAddedWhileNotMasterIsRemoved(t *testing.T) {
	testenv.NeedNetns(t)
	ctx := context.Background()
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	vs1.MustRun(t, "ip", "link", "add", "other9", "type", "veth", "peer", "name", "other9p")
	c := newClaimer(t, vs1, failover.ClaimerConfig{VIPs: []failover.VIP{
		mustVIP("10.99.0.100/24", "eth0", "eth0:101"),
		mustVIP("fd99::100/128", "eth0", ""),
	}})
	time.Sleep(200 * time.Millisecond) // let the watcher subscribe
	vs1.MustRun(t, "ip", "addr", "add", "10.99.0.100/24", "dev", "eth0")
	vs1.MustRun(t, "ip", "addr", "add", "fd99::100/128", "dev", "eth0", "nodad")
	vs1.MustRun(t, "ip", "addr", "add", "10.99.0.100/32", "dev", "other9") // not where our VIP lives
	waitUntil(t, "the VIPs added while not master to go", 5*time.Second, func() bool {
		return findAddrOn(t, vs1, "eth0", "10.99.0.100") == nil && findAddrOn(t, vs1, "eth0", "fd99::100") == nil
	})
	if findAddrOn(t, vs1, "other9", "10.99.0.100") == nil {
		t.Fatal("the address on another interface was removed too")
	}
	if st := c.Status(); st.Evicted != 2 {
		t.Fatalf("status says %d evicted, want 2", st.Evicted)
	}
	// Claimed, the VIPs stay (the watcher's own adds are not evicted).
	if err := c.BecomeMaster(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if findAddrOn(t, vs1, "eth0", "10.99.0.100") == nil || findAddrOn(t, vs1, "eth0", "fd99::100") == nil {
		t.Fatal("claimed VIPs went away")
	}
}

// TestNetnsRemoveRecorded: the VIP record written at start lets the next
// start remove stale VIPs without the site file.
func TestNetnsRemoveRecorded(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	rec := filepath.Join(t.TempDir(), "run", "vs1.vips")
	vips := []failover.VIP{mustVIP("10.99.0.100/24", "eth0", "eth0:101"), mustVIP("fd99::100/128", "eth0", ""), mustVIP("10.99.0.102/24", "eth0", "")}
	if err := failover.WriteRecord(rec, vips); err != nil {
		t.Fatal(err)
	}
	got, err := failover.ReadRecord(rec)
	if err != nil || len(got) != 3 || got[0] != vips[0] || got[1] != vips[1] || got[2] != vips[2] {
		t.Fatalf("read back %v, %v; want %v", got, err, vips)
	}
	vs1.MustRun(t, "ip", "addr", "add", "10.99.0.100/32", "dev", "eth0") // another prefix length: still ours
	vs1.MustRun(t, "ip", "addr", "add", "fd99::100/128", "dev", "eth0", "nodad")
	vs1.MustRun(t, "ip", "addr", "add", "10.99.0.50/24", "dev", "eth0") // not a VIP
	removed, err := failover.RemoveRecorded(rec, &vs1.NS, testLog(t))
	if err != nil || len(removed) != 2 {
		t.Fatalf("removed %v, %v; want the 2 present VIPs", removed, err)
	}
	if findAddr(t, vs1, "10.99.0.100") != nil || findAddr(t, vs1, "fd99::100") != nil || findAddr(t, vs1, "10.99.0.50") == nil {
		t.Fatal("wrong addresses removed")
	}
	// No record: nothing to do, no error.
	if removed, err := failover.RemoveRecorded(filepath.Join(t.TempDir(), "none"), &vs1.NS, testLog(t)); err != nil || removed != nil {
		t.Fatalf("missing record: %v, %v", removed, err)
	}
}

// findAddrOn is findAddr on a named interface of h.
func findAddrOn(t *testing.T, h *netlab.Host, ifname, ip string) *netlink.Addr {
	t.Helper()
	for _, a := range addrsOn(t, h, ifname) {
		if a.IP.String() == ip {
			return &a
		}
	}
	return nil
}
