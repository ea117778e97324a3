package ipvs_test

// Tests that run only inside the vm-tier guest (real IPVS), started by
// TestVMIPVS. Each test works in its own network namespace, which also
// proves NewKernel's netns path; ipvsadm, run in the same namespace, is the
// independent witness of what the kernel holds.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/testenv"
	"github.com/vigil-lb/vigil/ipvs"
	"github.com/vigil-lb/vigil/ipvs/ipvsadm"
)

const (
	guestIP      = "/sbin/ip"
	guestIpvsadm = "/usr/sbin/ipvsadm"
)

var nsSeq atomic.Int32

// guestNS is a fresh network namespace with a kernel backend bound to it.
type guestNS struct {
	name string
	k    *ipvs.Kernel
}

func newGuestNS(t *testing.T) *guestNS {
	t.Helper()
	testenv.NeedGuest(t)
	name := fmt.Sprintf("vg%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command(guestIP, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command(guestIP, "netns", "del", name).Run() })
	// lo up creates the local routing table: without it the kernel calls
	// every destination address "not unicast" and refuses it (EINVAL).
	if out, err := exec.Command(guestIP, "netns", "exec", name, guestIP, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v: %s", name, err, out)
	}
	k, err := ipvs.NewKernel(ipvs.KernelOptions{Netns: "/run/netns/" + name, CallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("NewKernel in netns %s: %v", name, err)
	}
	t.Cleanup(func() { k.Close() })
	return &guestNS{name: name, k: k}
}

// run runs a program inside the namespace and returns its output.
func (g *guestNS) run(t *testing.T, prog string, args ...string) string {
	t.Helper()
	out, err := exec.Command(guestIP, append([]string{"netns", "exec", g.name, prog}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", prog, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (g *guestNS) ipvsadm(t *testing.T, args ...string) string {
	t.Helper()
	return g.run(t, guestIpvsadm, args...)
}

// witness reads the table through ipvsadm (-Ln and -Ln --thresholds).
func (g *guestNS) witness(t *testing.T) ipvs.Table {
	t.Helper()
	tab, err := ipvsadm.ParseList(g.ipvsadm(t, "-Ln"), false)
	if err != nil {
		t.Fatalf("parse ipvsadm -Ln: %v", err)
	}
	th, err := ipvsadm.ParseList(g.ipvsadm(t, "-Ln", "--thresholds"), true)
	if err != nil {
		t.Fatalf("parse ipvsadm -Ln --thresholds: %v", err)
	}
	for i := range tab.Services {
		s := &tab.Services[i]
		ts, ok := th.Lookup(s.Key)
		if !ok || len(ts.Destinations) != len(s.Destinations) {
			t.Fatalf("ipvsadm listings disagree on %s", s.Key)
		}
		for j := range s.Destinations {
			s.Destinations[j].UpperThreshold = ts.Destinations[j].UpperThreshold
			s.Destinations[j].LowerThreshold = ts.Destinations[j].LowerThreshold
		}
	}
	return tab
}

// sameAsWitness fails t unless ipvsadm shows exactly want (plus the
// services in extra, compared by key only).
func (g *guestNS) sameAsWitness(t *testing.T, want ipvs.Table, extra ...ipvs.ServiceKey) {
	t.Helper()
	got := g.witness(t)
	want.Sort()
	if len(got.Services) != len(want.Services)+len(extra) {
		t.Fatalf("ipvsadm shows %d services, want %d:\n%s", len(got.Services), len(want.Services)+len(extra), g.ipvsadm(t, "-Ln"))
	}
	for _, k := range extra {
		if _, ok := got.Lookup(k); !ok {
			t.Fatalf("ipvsadm lacks %s:\n%s", k, g.ipvsadm(t, "-Ln"))
		}
	}
	for i := range want.Services {
		w := &want.Services[i]
		s, ok := got.Lookup(w.Key)
		if !ok {
			t.Fatalf("ipvsadm lacks %s:\n%s", w.Key, g.ipvsadm(t, "-Ln"))
		}
		wantFlags := w.Flags &^ (ipvs.FlagHashed | ipvs.FlagPersistent)
		if w.Timeout > 0 {
			wantFlags |= ipvs.FlagPersistent
		}
		if s.Scheduler != w.Scheduler || s.Flags != wantFlags || s.Timeout != w.Timeout {
			t.Fatalf("%s: ipvsadm shows scheduler %s flags %#x timeout %d, want %s %#x %d", w.Key, s.Scheduler, s.Flags, s.Timeout, w.Scheduler, wantFlags, w.Timeout)
		}
		if w.Timeout > 0 {
			wantMask := w.Netmask
			if wantMask == 0 {
				wantMask = map[ipvs.Family]int{ipvs.IPv4: 32, ipvs.IPv6: 128}[w.Key.Family]
			}
			if s.Netmask != wantMask {
				t.Fatalf("%s: ipvsadm shows mask /%d, want /%d", w.Key, s.Netmask, wantMask)
			}
		}
		if len(s.Destinations) != len(w.Destinations) {
			t.Fatalf("%s: ipvsadm shows %d destinations, want %d:\n%s", w.Key, len(s.Destinations), len(w.Destinations), g.ipvsadm(t, "-Ln"))
		}
		for j := range w.Destinations {
			gd, wd := s.Destinations[j], w.Destinations[j]
			if gd.Key() != wd.Key() || gd.Weight != wd.Weight || gd.Forwarding != wd.Forwarding ||
				gd.UpperThreshold != wd.UpperThreshold || gd.LowerThreshold != wd.LowerThreshold {
				t.Fatalf("%s: ipvsadm shows destination %+v, want %+v", w.Key, gd, wd)
			}
		}
	}
}

func apply(t *testing.T, r *ipvs.Reconciler, want ipvs.Table) ipvs.Report {
	t.Helper()
	rep, err := r.Apply(context.Background(), want)
	if err != nil {
		t.Fatalf("apply: %v (%v)", err, rep)
	}
	return rep
}

var (
	ap = netip.MustParseAddrPort
	ip = netip.MustParseAddr
)

// siteServers covers DR, NAT and tunnel forwarding, an fwmark service (v4
// and v6), an IPv6 service, persistence with a netmask, one-packet
// scheduling, scheduler flags, thresholds and a drained server.
func siteServers() []ipvs.VirtualServer {
	nat, tun := ipvs.NAT, ipvs.Tunnel
	return []ipvs.VirtualServer{
		{Name: "www", Key: ipvs.AddrKey(ipvs.TCP, ap("10.99.1.100:80")), Scheduler: "wrr", Forwarding: ipvs.DR, DrainOnFailure: true,
			RealServers: []ipvs.RealServer{
				{Addr: ip("10.99.1.3"), Weight: 3, UpperThreshold: 100, LowerThreshold: 50},
				{Addr: ip("10.99.1.4"), Weight: 1},
				{Addr: ip("10.99.1.5"), Port: 8080, Weight: 2, Forwarding: &nat},
			}},
		{Name: "telnet", Key: ipvs.AddrKey(ipvs.TCP, ap("10.99.1.100:23")), Scheduler: "rr", Forwarding: ipvs.Tunnel,
			Persistence: 300 * time.Second, PersistenceNetmask: 24,
			RealServers: []ipvs.RealServer{{Addr: ip("10.99.1.3"), Weight: 1}, {Addr: ip("10.99.1.4"), Weight: 1}}},
		{Name: "dns6", Key: ipvs.AddrKey(ipvs.UDP, ap("[fd99::100]:53")), Scheduler: "lc", Forwarding: ipvs.NAT, OnePacket: true,
			Persistence: time.Minute, PersistenceNetmask: 64,
			RealServers: []ipvs.RealServer{{Addr: ip("fd99::3"), Weight: 1}, {Addr: ip("fd99::4"), Weight: 1, Forwarding: &tun}}},
		{Name: "mark4", Key: ipvs.MarkKey(ipvs.IPv4, 5), Scheduler: "sh", SchedFlags: ipvs.FlagSched1 | ipvs.FlagSched2, Forwarding: ipvs.DR,
			RealServers: []ipvs.RealServer{{Addr: ip("10.99.1.3"), Weight: 1}, {Addr: ip("10.99.1.4"), Weight: 1}}},
		{Name: "mark6", Key: ipvs.MarkKey(ipvs.IPv6, 6), Scheduler: "mh", Forwarding: ipvs.DR,
			RealServers: []ipvs.RealServer{{Addr: ip("fd99::3"), Weight: 1}}},
	}
}

func build(t *testing.T, vss []ipvs.VirtualServer, h ipvs.Health) ipvs.Table {
	t.Helper()
	out, err := ipvs.Build(ipvs.BuildInput{VirtualServers: vss, Health: h, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return out.Table
}

func TestGuestReconcileSite(t *testing.T) {
	g := newGuestNS(t)
	ctx := context.Background()
	r := ipvs.NewReconciler(g.k, nil)

	// A foreign service made by someone else with ipvsadm.
	g.ipvsadm(t, "-A", "-t", "10.99.1.200:443", "-s", "rr")
	g.ipvsadm(t, "-a", "-t", "10.99.1.200:443", "-r", "10.99.1.20:443", "-m", "-w", "4")
	foreign := ipvs.AddrKey(ipvs.TCP, ap("10.99.1.200:443"))
	foreignBefore := g.ipvsadm(t, "-Ln", "-t", "10.99.1.200:443")

	want := build(t, siteServers(), nil)
	rep := apply(t, r, want)
	if rep.Creates != 5+10 || rep.Updates+rep.Deletes+rep.Errors != 0 {
		t.Fatalf("from empty: %v", rep)
	}
	g.sameAsWitness(t, want, foreign)

	t.Run("no-op pass makes no write", func(t *testing.T) {
		rep := apply(t, r, want)
		if rep.Writes() != 0 || rep.Errors != 0 {
			t.Fatalf("no-op pass: %v", rep)
		}
	})

	t.Run("updates in place", func(t *testing.T) {
		vss := siteServers()
		vss[0].RealServers[1].Weight = 7       // weight
		vss[1].Scheduler = "wlc"               // scheduler
		vss[1].Persistence = 600 * time.Second // persistence timeout
		vss[3].SchedFlags = ipvs.FlagSched1    // scheduler flags
		dr := ipvs.DR
		vss[2].RealServers[0].Forwarding = &dr // forwarding NAT -> DR
		vss[0].RealServers[0].UpperThreshold = 200
		want = build(t, vss, nil)
		rep := apply(t, r, want)
		if rep.Updates != 2+3 || rep.Creates+rep.Deletes+rep.Errors != 0 { // telnet, mark4; 3 destinations
			t.Fatalf("update pass: %v", rep)
		}
		g.sameAsWitness(t, want, foreign)
	})

	t.Run("manual changes are restored", func(t *testing.T) {
		g.ipvsadm(t, "-d", "-t", "10.99.1.100:80", "-r", "10.99.1.4:80")                  // destination deleted by hand
		g.ipvsadm(t, "-e", "-t", "10.99.1.100:80", "-r", "10.99.1.3:80", "-g", "-w", "9") // weight changed by hand
		g.ipvsadm(t, "-a", "-t", "10.99.1.100:80", "-r", "10.99.1.9:80", "-g", "-w", "1") // stray destination
		g.ipvsadm(t, "-D", "-f", "5")                                                     // service deleted by hand
		g.ipvsadm(t, "-E", "-u", "[fd99::100]:53", "-s", "rr")                            // scheduler changed by hand
		rep := apply(t, r, want)
		// www: create .4, update .3, delete .9; mark4: service + 2 dests; dns6: update
		if rep.Creates != 1+3 || rep.Updates != 2 || rep.Deletes != 1 || rep.Errors != 0 {
			t.Fatalf("restore pass: %v", rep)
		}
		g.sameAsWitness(t, want, foreign)
	})

	t.Run("failed server drained at weight 0", func(t *testing.T) {
		h := ipvs.Health{{VirtualServer: "www", Server: ap("10.99.1.4:0")}: {Up: false}}
		vss := siteServers()
		drained := build(t, vss, h)
		apply(t, r, drained)
		w := g.witness(t)
		s, ok := w.Lookup(ipvs.AddrKey(ipvs.TCP, ap("10.99.1.100:80")))
		if !ok {
			t.Fatal("www service missing")
		}
		found := false
		for _, d := range s.Destinations {
			if d.Addr == ip("10.99.1.4") {
				found = true
				if d.Weight != 0 {
					t.Fatalf("drained server has weight %d", d.Weight)
				}
			}
		}
		if !found {
			t.Fatal("drained server removed instead of kept at weight 0")
		}
		g.sameAsWitness(t, drained, foreign)
		want = drained
	})

	t.Run("snapshot reads counters and all services", func(t *testing.T) {
		all, err := r.Snapshot(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(all.Services) != 6 {
			t.Fatalf("snapshot has %d services, want 6", len(all.Services))
		}
		mine, err := r.Snapshot(ctx, true)
		if err != nil || len(mine.Services) != 5 {
			t.Fatalf("owned snapshot: %d services, %v", len(mine.Services), err)
		}
		f, _ := all.Lookup(foreign)
		if len(f.Destinations) != 1 || f.Destinations[0].Weight != 4 || f.Destinations[0].Forwarding != ipvs.NAT {
			t.Fatalf("foreign service read back as %+v", f)
		}
	})

	t.Run("shrinking the site deletes only what it owned", func(t *testing.T) {
		small := build(t, siteServers()[:1], nil)
		rep := apply(t, r, small)
		if rep.Deletes != 4 || rep.Errors != 0 {
			t.Fatalf("shrink pass: %v", rep)
		}
		g.sameAsWitness(t, small, foreign)
		rep, err := r.RemoveAll(ctx)
		if err != nil || rep.Deletes != 1 {
			t.Fatalf("RemoveAll: %v %v", rep, err)
		}
		g.sameAsWitness(t, ipvs.Table{}, foreign)
		if after := g.ipvsadm(t, "-Ln", "-t", "10.99.1.200:443"); after != foreignBefore {
			t.Fatalf("foreign service changed:\nbefore:\n%s\nafter:\n%s", foreignBefore, after)
		}
	})
}

// guestSchedulers lists the schedulers whose modules the guest loaded.
func guestSchedulers(t *testing.T) []string {
	data, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if s, ok := strings.CutPrefix(name, "ip_vs_"); ok && s != "ftp" && s != "pe_sip" {
			out = append(out, s)
		}
	}
	return out
}

func TestGuestEverySchedulerOfTheKernel(t *testing.T) {
	g := newGuestNS(t)
	r := ipvs.NewReconciler(g.k, nil)
	scheds := guestSchedulers(t)
	known := []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"}
	for _, s := range known {
		if !strings.Contains(" "+strings.Join(scheds, " ")+" ", " "+s+" ") {
			t.Logf("scheduler %s: not in this kernel, not tested", s)
		}
	}
	if len(scheds) < 6 {
		t.Fatalf("only %d schedulers loaded: %v", len(scheds), scheds)
	}
	t.Logf("schedulers: %v", scheds)
	var vss []ipvs.VirtualServer
	for i, s := range scheds {
		vss = append(vss, ipvs.VirtualServer{Name: s, Key: ipvs.AddrKey(ipvs.TCP, netip.AddrPortFrom(ip("10.99.2.100"), uint16(1000+i))),
			Scheduler: s, Forwarding: ipvs.DR,
			RealServers: []ipvs.RealServer{{Addr: ip("10.99.2.3"), Weight: 1}, {Addr: ip("10.99.2.4"), Weight: 2}}})
	}
	want := build(t, vss, nil)
	rep := apply(t, r, want)
	if rep.Creates != 3*len(scheds) || rep.Errors != 0 {
		t.Fatalf("create pass: %v", rep)
	}
	g.sameAsWitness(t, want)
	// Rotate: every service switches to the next scheduler, in place.
	for i := range vss {
		vss[i].Scheduler = scheds[(i+1)%len(scheds)]
	}
	want = build(t, vss, nil)
	rep = apply(t, r, want)
	if rep.Updates != len(scheds) || rep.Creates+rep.Deletes+rep.Errors != 0 {
		t.Fatalf("rotate pass: %v", rep)
	}
	g.sameAsWitness(t, want)
	// An unknown scheduler is a clear error from the kernel, not a silent success.
	bad := build(t, []ipvs.VirtualServer{{Name: "x", Key: ipvs.AddrKey(ipvs.TCP, ap("10.99.2.100:999")), Scheduler: "nosuch"}}, nil)
	rep, err := ipvs.NewReconciler(g.k, nil).Apply(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), "create service tcp 10.99.2.100:999") || rep.Errors != 1 || rep.Writes() != 0 {
		t.Fatalf("service with scheduler nosuch: %v (%v)", err, rep)
	}
	t.Logf("unknown scheduler: %v", err)
	// The batch carried on: the other services are still exactly as wanted.
	g.sameAsWitness(t, want)
}

func TestGuestNamespacesAreSeparate(t *testing.T) {
	a, b := newGuestNS(t), newGuestNS(t)
	want := build(t, siteServers()[:1], nil)
	apply(t, ipvs.NewReconciler(a.k, nil), want)
	a.sameAsWitness(t, want)
	b.sameAsWitness(t, ipvs.Table{})
	svcs, err := b.k.Services(context.Background())
	if err != nil || len(svcs) != 0 {
		t.Fatalf("namespace b sees %d services (%v)", len(svcs), err)
	}
	// The guest's root namespace holds nothing of it either.
	out, err := exec.Command(guestIpvsadm, "-Ln").CombinedOutput()
	if err != nil || strings.Contains(string(out), "10.99.1.100") {
		t.Fatalf("root namespace: %v\n%s", err, out)
	}
}

func TestGuestSyncDaemonAndTimeouts(t *testing.T) {
	g := newGuestNS(t)
	ctx := context.Background()
	g.run(t, guestIP, "link", "add", "sync0", "type", "dummy")
	g.run(t, guestIP, "link", "set", "sync0", "up")

	master := ipvs.SyncDaemon{Role: ipvs.SyncMaster, Interface: "sync0", SyncID: 51}
	backup := ipvs.SyncDaemon{Role: ipvs.SyncBackup, Interface: "sync0", SyncID: 52,
		Group: ip("239.1.2.3"), Port: 9000, TTL: 2, MaxLen: 1400}
	if err := g.k.StartSyncDaemon(ctx, master); err != nil {
		t.Fatalf("start master: %v", err)
	}
	if err := g.k.StartSyncDaemon(ctx, backup); err != nil {
		t.Fatalf("start backup: %v", err)
	}
	if err := g.k.StartSyncDaemon(ctx, master); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("second master: %v, want EEXIST", err)
	}
	got, err := g.k.SyncDaemons(ctx)
	if err != nil {
		t.Fatal(err)
	}
	witness, err := ipvsadm.ParseDaemons(g.ipvsadm(t, "-L", "--daemon"))
	if err != nil {
		t.Fatal(err)
	}
	// Kernel defaults filled in: group 224.0.0.81, port 8848, ttl 1.
	wantMaster := master
	wantMaster.Group, wantMaster.Port, wantMaster.TTL = ip("224.0.0.81"), 8848, 1
	for _, list := range [][]ipvs.SyncDaemon{got, witness} {
		if len(list) != 2 {
			t.Fatalf("daemons: %+v", list)
		}
		for _, d := range list {
			want := wantMaster
			if d.Role == ipvs.SyncBackup {
				want = backup
			}
			if want.MaxLen == 0 {
				want.MaxLen = d.MaxLen // derived from the MTU
			}
			if d != want {
				t.Fatalf("daemon read back as %+v, want %+v (netlink %+v, ipvsadm %+v)", d, want, got, witness)
			}
		}
	}
	if err := g.k.StopSyncDaemon(ctx, ipvs.SyncMaster); err != nil {
		t.Fatalf("stop master: %v", err)
	}
	witness, _ = ipvsadm.ParseDaemons(g.ipvsadm(t, "-L", "--daemon"))
	if got, _ := g.k.SyncDaemons(ctx); len(got) != 1 || got[0].Role != ipvs.SyncBackup || len(witness) != 1 || witness[0].Role != ipvs.SyncBackup {
		t.Fatalf("after stopping master: netlink %+v, ipvsadm %+v", got, witness)
	}
	if err := g.k.StopSyncDaemon(ctx, ipvs.SyncBackup); err != nil {
		t.Fatalf("stop backup: %v", err)
	}
	if got, _ := g.k.SyncDaemons(ctx); len(got) != 0 {
		t.Fatalf("after stopping both: %+v", got)
	}
	if err := g.k.StartSyncDaemon(ctx, ipvs.SyncDaemon{Role: ipvs.SyncMaster, Interface: "nosuch0", SyncID: 1}); err == nil {
		t.Fatal("daemon on a missing interface accepted")
	}

	// Timeouts: set, read back through netlink and ipvsadm.
	want := ipvs.Timeouts{TCP: 100 * time.Second, TCPFin: 20 * time.Second, UDP: 30 * time.Second}
	if err := g.k.SetTimeouts(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, err := g.k.Timeouts(ctx); err != nil || got != want {
		t.Fatalf("timeouts %+v %v, want %+v", got, err, want)
	}
	if w, err := ipvsadm.ParseTimeouts(g.ipvsadm(t, "-L", "--timeout")); err != nil || w != want {
		t.Fatalf("ipvsadm timeouts %+v %v, want %+v", w, err, want)
	}
	if err := g.k.SetTimeouts(ctx, ipvs.Timeouts{TCP: 500 * time.Millisecond}); err == nil {
		t.Fatal("sub-second timeout accepted")
	}
}
