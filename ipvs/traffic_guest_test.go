package ipvs_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vigil-lb/vigil/ipvs"
	"github.com/vigil-lb/vigil/ipvs/ipvsadm"
)

// inNS runs f on a locked thread inside the named namespace; sockets made
// there stay there.
func inNS(t *testing.T, name string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		t.Fatal(err)
	}
	f()
	if err := netns.Set(orig); err != nil {
		t.Fatalf("restore netns: %v", err) // thread stays locked and is discarded
	}
	runtime.UnlockOSThread()
}

// TestGuestTrafficThroughNATService programs a NAT service with the
// reconciler and sends real TCP connections through it (client netns ->
// director netns with IPVS -> real-server netns), then reads the
// connection counters back through Snapshot and ipvsadm.
func TestGuestTrafficThroughNATService(t *testing.T) {
	dir := newGuestNS(t)
	cl, rs := newGuestNS(t), newGuestNS(t)
	link := func(a, b *guestNS, an, bn, aAddr, bAddr string) {
		dir.run(t, guestIP, "link", "add", an, "type", "veth", "peer", "name", bn)
		dir.run(t, guestIP, "link", "set", bn, "netns", b.name)
		dir.run(t, guestIP, "addr", "add", aAddr, "dev", an)
		dir.run(t, guestIP, "link", "set", an, "up")
		b.run(t, guestIP, "addr", "add", bAddr, "dev", bn)
		b.run(t, guestIP, "link", "set", bn, "up")
	}
	link(dir, cl, "d0", "c0", "10.99.5.1/24", "10.99.5.2/24")
	link(dir, rs, "d1", "r0", "10.99.6.1/24", "10.99.6.2/24")
	cl.run(t, guestIP, "route", "add", "default", "via", "10.99.5.1")
	rs.run(t, guestIP, "route", "add", "default", "via", "10.99.6.1")
	dir.run(t, guestIP, "addr", "add", "10.99.5.100/32", "dev", "d0")
	dir.run(t, "/bin/sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")

	var ln net.Listener
	inNS(t, rs.name, func() {
		var err error
		if ln, err = net.Listen("tcp4", "10.99.6.2:8080"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "rs %s\n", c.LocalAddr())
			c.Close()
		}
	}()

	svc := ipvs.AddrKey(ipvs.TCP, ap("10.99.5.100:80"))
	want := build(t, []ipvs.VirtualServer{{Name: "web", Key: svc, Scheduler: "rr", Forwarding: ipvs.NAT,
		RealServers: []ipvs.RealServer{{Addr: ip("10.99.6.2"), Port: 8080, Weight: 1}}}}, nil)
	r := ipvs.NewReconciler(dir.k, nil)
	apply(t, r, want)

	const conns = 5
	for i := 0; i < conns; i++ {
		inNS(t, cl.name, func() {
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err := d.Dial("tcp4", "10.99.5.100:80")
			if err != nil {
				t.Fatalf("connection %d through the VIP: %v", i, err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "rs 10.99.6.2:8080") {
				t.Fatalf("connection %d: read %q, %v", i, line, err)
			}
		})
	}
	// The kernel folds its per-CPU counters into what it reports every ~2 s
	// (the rate estimator): poll.
	var s *ipvs.Service
	var d ipvs.Destination
	for deadline := time.Now().Add(30 * time.Second); ; {
		snap, err := r.Snapshot(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		s, ok = snap.Lookup(svc)
		if !ok || len(s.Destinations) != 1 {
			t.Fatalf("snapshot: %+v", snap)
		}
		d = s.Destinations[0]
		if s.Stats.Connections >= conns || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if s.Stats.Connections != conns || d.Stats.Connections != conns {
		t.Fatalf("connection counters: service %d, destination %d, want %d", s.Stats.Connections, d.Stats.Connections, conns)
	}
	if s.Stats.PacketsIn < conns*3 || s.Stats.BytesOut == 0 {
		t.Fatalf("packet counters: %+v", s.Stats)
	}
	if d.ActiveConns+d.InactiveConns == 0 {
		t.Fatalf("no active or inactive connections on the destination: %+v", d)
	}
	w, err := ipvsadm.ParseList(dir.ipvsadm(t, "-Ln"), false)
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := w.Lookup(svc)
	if ws == nil || len(ws.Destinations) != 1 || ws.Destinations[0].ActiveConns+ws.Destinations[0].InactiveConns != d.ActiveConns+d.InactiveConns {
		t.Fatalf("ipvsadm shows %+v, snapshot %+v", ws, d)
	}
}
