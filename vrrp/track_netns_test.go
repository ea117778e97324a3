package vrrp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// TestNetnsTrackInterface: the master tracks a second interface; when it
// goes down the master enters Fault, resigns with priority 0 and the
// backup takes over; when it comes back the master preempts again.
func TestNetnsTrackInterface(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	h1 := lab.AddHost("vs1", "10.99.0.1/24")
	h2 := lab.AddHost("vs2", "10.99.0.2/24")
	h1.MustRun(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	h1.MustRun(t, "ip", "link", "set", "eth1p", "up")
	h1.MustRun(t, "ip", "link", "set", "eth1", "up")
	iv := 100 * time.Millisecond
	a := startDirector(t, h1, Config{Name: "www", VRID: 51, Priority: 200, Interval: iv, VIPs: vips}, RawConfig{Source: src(1)})
	b := startDirector(t, h2, Config{Name: "www", VRID: 51, Priority: 100, Interval: iv, VIPs: vips}, RawConfig{Source: src(2)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- WatchInterfaces(ctx, h1.NS, []InterfaceTrack{{Interface: "eth1"}, {Interface: "eth0", Weight: -150}}, nil, a.in)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	waitOneMaster(t, a, margin, a, b)

	start := time.Now()
	h1.MustRun(t, "ip", "link", "set", "eth1", "down")
	waitState(t, a, Fault, margin)
	waitState(t, b, Master, margin)
	t.Logf("backup master %v after the tracked interface went down", time.Since(start))
	if f := a.in.Status().Faults; len(f) != 1 || f[0] != "interface eth1 down" {
		t.Fatalf("faults %v", f)
	}

	h1.MustRun(t, "ip", "link", "set", "eth1", "up")
	waitOneMaster(t, a, margin, a, b)

	// A deleted tracked interface counts as down.
	h1.MustRun(t, "ip", "link", "del", "eth1")
	waitState(t, a, Fault, margin)
}

// TestNetnsSyncGroup: a NAT site's external and gateway instances form a
// sync group on each director; a fault of the tracked interface of one
// member on the master moves both instances to the other director, and
// both come back when it heals.
func TestNetnsSyncGroup(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	h1 := lab.AddHost("vs1", "10.99.0.1/24")
	h2 := lab.AddHost("vs2", "10.99.0.2/24")
	h1.MustRun(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	h1.MustRun(t, "ip", "link", "set", "eth1p", "up")
	h1.MustRun(t, "ip", "link", "set", "eth1", "up")
	iv := 100 * time.Millisecond
	mk := func(h *netlab.Host, i int, prio uint8) (ext, gw *director) {
		ext = &director{t: t, h: h, hold: true, rc: RawConfig{Source: src(i)},
			cfg: Config{Name: "ext", VRID: 51, Priority: prio, Interval: iv, VIPs: vips}}
		gw = &director{t: t, h: h, hold: true, rc: RawConfig{Source: src(i)},
			cfg: Config{Name: "gw", VRID: 52, Priority: prio, Interval: iv, VIPs: []netip.Addr{netip.MustParseAddr("10.99.0.254")}}}
		ext.prepare()
		gw.prepare()
		NewSyncGroup("nat", ext.in, gw.in)
		ext.run()
		gw.run()
		t.Cleanup(ext.kill)
		t.Cleanup(gw.kill)
		return ext, gw
	}
	e1, g1 := mk(h1, 1, 200)
	e2, g2 := mk(h2, 2, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- WatchInterfaces(ctx, h1.NS, []InterfaceTrack{{Interface: "eth1"}}, nil, e1.in) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	waitOneMaster(t, e1, margin, e1, e2)
	waitOneMaster(t, g1, margin, g1, g2)

	start := time.Now()
	h1.MustRun(t, "ip", "link", "set", "eth1", "down")
	waitState(t, g1, Fault, margin)
	waitState(t, e2, Master, margin)
	waitState(t, g2, Master, margin)
	t.Logf("both instances on vs2 %v after vs1's eth1 went down", time.Since(start))
	if s := e1.state(); s != Fault {
		t.Fatalf("ext on vs1 is %v", s)
	}

	h1.MustRun(t, "ip", "link", "set", "eth1", "up")
	waitOneMaster(t, e1, margin, e1, e2)
	waitOneMaster(t, g1, margin, g1, g2)
}
