package ipvs_test

// Full resync against real IPVS in the vm-tier guest (started by
// TestVMIPVS): idle connections through a master director, which the
// kernel's own sync never sends, reach a backup director's table through
// Resync, and survive the backup taking the VIPs over.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/ipvs"
)

// resyncLab is a LAN (a bridge in its own namespace) with a client, two
// directors and a real server, each in its own namespace.
type resyncLab struct {
	lan, client, master, backup, rs *guestNS
	mac                             map[*guestNS]string
	n                               int
}

func newResyncLab(t *testing.T) *resyncLab {
	l := &resyncLab{lan: newGuestNS(t), mac: map[*guestNS]string{}}
	l.lan.run(t, guestIP, "link", "add", "br0", "type", "bridge")
	l.lan.run(t, guestIP, "link", "set", "br0", "up")
	l.client = l.attach(t, "c0", "10.99.8.2", "fd99:8::2")
	l.master = l.attach(t, "m0", "10.99.8.11", "fd99:8::11")
	l.backup = l.attach(t, "b0", "10.99.8.12", "fd99:8::12")
	l.rs = l.attach(t, "r0", "10.99.8.3", "fd99:8::3")
	return l
}

// attach creates a namespace with interface ifname on the bridge.
func (l *resyncLab) attach(t *testing.T, ifname, a4, a6 string) *guestNS {
	g := newGuestNS(t)
	l.n++
	peer := fmt.Sprintf("p%d", l.n)
	l.lan.run(t, guestIP, "link", "add", ifname, "type", "veth", "peer", "name", peer)
	l.lan.run(t, guestIP, "link", "set", peer, "master", "br0", "up")
	l.lan.run(t, guestIP, "link", "set", ifname, "netns", g.name)
	g.run(t, guestIP, "addr", "add", a4+"/24", "dev", ifname)
	g.run(t, guestIP, "-6", "addr", "add", a6+"/64", "dev", ifname, "nodad")
	g.run(t, guestIP, "link", "set", ifname, "up")
	out := g.run(t, "/bin/cat", "/sys/class/net/"+ifname+"/address")
	l.mac[g] = strings.TrimSpace(out)
	return g
}

// route points the client at dir for the VIPs (static neighbour entries:
// no ARP or ND for a VIP, so a takeover is one command).
func (l *resyncLab) route(t *testing.T, dir *guestNS, vips ...string) {
	for _, v := range vips {
		l.client.run(t, guestIP, "neigh", "replace", v, "lladdr", l.mac[dir], "dev", "c0", "nud", "permanent")
	}
}

// table reads a namespace's connection table with the package's reader,
// through a process in that namespace.
func table(t *testing.T, g *guestNS, file string) []ipvs.Conn {
	t.Helper()
	text := g.run(t, "/bin/cat", "/proc/net/"+file)
	var out []ipvs.Conn
	if err := ipvs.ScanConns(strings.NewReader(text), 0, func(c ipvs.Conn) error {
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatalf("parse %s:\n%s\n%v", file, text, err)
	}
	return out
}

// connID is what identifies an entry on both directors.
type connID struct {
	proto                 ipvs.Protocol
	client, virtual, dest netip.AddrPort
	template              bool
}

func idOf(c ipvs.Conn) connID {
	return connID{c.Protocol, c.Client, c.Virtual, c.Dest, c.Template}
}

// echoServer accepts on ln and echoes lines, keeping every connection.
func echoServer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := c.Write([]byte(line)); err != nil {
					return
				}
			}
		}()
	}
}

// dialIdle opens n connections from the client namespace and sends
// nothing on them (no keep-alive either).
func dialIdle(t *testing.T, l *resyncLab, network, addr string, n int) []net.Conn {
	var out []net.Conn
	inNS(t, l.client.name, func() {
		d := net.Dialer{Timeout: 20 * time.Second, KeepAlive: -1}
		for i := 0; i < n; i++ {
			c, err := d.Dial(network, addr)
			if err != nil {
				t.Fatalf("connection %d to %s: %v", i, addr, err)
			}
			out = append(out, c)
		}
	})
	t.Cleanup(func() {
		for _, c := range out {
			c.Close()
		}
	})
	return out
}

// echo sends a line on c and reports whether it came back.
func echo(c net.Conn, line string) error {
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("echoed %q", got)
	}
	return nil
}

const resyncSyncID = 14

func TestGuestResync(t *testing.T) {
	ctx := context.Background()
	l := newResyncLab(t)
	vip4, vipP, vip6 := "10.99.8.101", "10.99.8.102", "fd99:8::101"

	// The real server: DR, so the VIPs on lo, never answered for in ARP.
	for _, v := range []string{vip4 + "/32", vipP + "/32"} {
		l.rs.run(t, guestIP, "addr", "add", v, "dev", "lo")
	}
	l.rs.run(t, guestIP, "-6", "addr", "add", vip6+"/128", "dev", "lo", "nodad")
	l.rs.run(t, "/bin/sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore; echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce")
	var lns []net.Listener
	inNS(t, l.rs.name, func() {
		lc := net.ListenConfig{KeepAlive: -1}
		for _, a := range [][2]string{{"tcp4", "0.0.0.0:23"}, {"tcp6", "[::]:23"}} {
			ln, err := lc.Listen(ctx, a[0], a[1])
			if err != nil {
				t.Fatal(err)
			}
			lns = append(lns, ln)
		}
	})
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
	})
	for _, ln := range lns {
		go echoServer(ln)
	}

	// The same virtual services on both directors, as a site declares them.
	rs4, rs6 := ip("10.99.8.3"), ip("fd99:8::3")
	site := build(t, []ipvs.VirtualServer{
		{Name: "telnet", Key: ipvs.AddrKey(ipvs.TCP, ap(vip4+":23")), Scheduler: "rr", Forwarding: ipvs.DR,
			RealServers: []ipvs.RealServer{{Addr: rs4, Weight: 1}}},
		{Name: "sticky", Key: ipvs.AddrKey(ipvs.TCP, ap(vipP+":23")), Scheduler: "rr", Forwarding: ipvs.DR,
			Persistence: 600 * time.Second, RealServers: []ipvs.RealServer{{Addr: rs4, Weight: 1}}},
		{Name: "dns", Key: ipvs.AddrKey(ipvs.UDP, ap(vip4+":53")), Scheduler: "rr", Forwarding: ipvs.DR,
			RealServers: []ipvs.RealServer{{Addr: rs4, Weight: 1}}},
		{Name: "telnet6", Key: ipvs.AddrKey(ipvs.TCP, ap("["+vip6+"]:23")), Scheduler: "rr", Forwarding: ipvs.DR,
			RealServers: []ipvs.RealServer{{Addr: rs6, Weight: 1}}},
	}, nil)
	for _, d := range []*guestNS{l.master, l.backup} {
		apply(t, ipvs.NewReconciler(d.k, nil), site)
	}
	l.master.run(t, guestIP, "addr", "add", vip4+"/32", "dev", "m0")
	l.master.run(t, guestIP, "addr", "add", vipP+"/32", "dev", "m0")
	l.master.run(t, guestIP, "-6", "addr", "add", vip6+"/128", "dev", "m0", "nodad")
	l.route(t, l.master, vip4, vipP, vip6)

	// The backup listens; the master runs no sync daemon at all, so nothing
	// but Resync can tell the backup about these connections.
	if err := l.backup.k.StartSyncDaemon(ctx, ipvs.SyncDaemon{Role: ipvs.SyncBackup, Interface: "b0", SyncID: resyncSyncID}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.backup.k.StopSyncDaemon(context.Background(), ipvs.SyncBackup) })

	const n4, nP, n6 = 24, 4, 4
	idle := dialIdle(t, l, "tcp4", vip4+":23", n4)
	idle = append(idle, dialIdle(t, l, "tcp4", vipP+":23", nP)...)
	idle = append(idle, dialIdle(t, l, "tcp6", "["+vip6+"]:23", n6)...)
	inNS(t, l.client.name, func() {
		u, err := net.Dial("udp4", vip4+":53")
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if _, err := u.Write([]byte("query")); err != nil {
			t.Fatal(err)
		}
	})

	// Wait for the master to see every handshake through: 32 established
	// TCP connections, one UDP entry and one persistence template.
	var master []ipvs.Conn
	deadline := time.Now().Add(60 * time.Second)
	for {
		master = table(t, l.master, "ip_vs_conn")
		est, udp, tpl := 0, 0, 0
		for _, c := range master {
			switch {
			case c.Template:
				tpl++
			case c.Protocol == ipvs.TCP && c.StateName == "ESTABLISHED":
				est++
			case c.Protocol == ipvs.UDP:
				udp++
			}
		}
		if est == n4+nP+n6 && udp == 1 && tpl == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("master's table: %d established, %d udp, %d templates:\n%s", est, udp, tpl, l.master.run(t, "/bin/cat", "/proc/net/ip_vs_conn"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	want := len(master)
	// Samples of real tables for the parser's unit tests (testdata).
	t.Logf("master /proc/net/ip_vs_conn:\n%s", l.master.run(t, "/bin/cat", "/proc/net/ip_vs_conn"))
	t.Logf("master /proc/net/ip_vs_conn_sync:\n%s", l.master.run(t, "/bin/cat", "/proc/net/ip_vs_conn_sync"))
	if got := table(t, l.backup, "ip_vs_conn"); len(got) != 0 {
		t.Fatalf("backup has %d entries before any resync (no master daemon runs)", len(got))
	}

	opts := ipvs.ResyncOptions{Interface: "m0", SyncID: resyncSyncID + 1, Services: site}
	resync := func() ipvs.ResyncResult {
		t.Helper()
		var res ipvs.ResyncResult
		var err error
		inNS(t, l.master.name, func() { res, err = ipvs.Resync(ctx, opts) })
		if err != nil {
			t.Fatalf("resync: %v (%+v)", err, res)
		}
		if res.Entries != want || res.Sent != want || res.Messages != 1 {
			t.Fatalf("resync read %d entries, sent %d in %d messages; want %d in 1: %+v", res.Entries, res.Sent, res.Messages, want, res)
		}
		return res
	}

	// Another site's sync id: the backup's kernel drops every message.
	resync()
	time.Sleep(2 * time.Second)
	if got := table(t, l.backup, "ip_vs_conn"); len(got) != 0 {
		t.Fatalf("backup took %d entries with a foreign sync id", len(got))
	}

	opts.SyncID = resyncSyncID
	res := resync()
	t.Logf("resync: %+v", res)
	wantIDs := map[connID]ipvs.Conn{}
	for _, c := range master {
		wantIDs[idOf(c)] = c
	}
	var backup []ipvs.Conn
	for deadline := time.Now().Add(30 * time.Second); ; {
		backup = table(t, l.backup, "ip_vs_conn")
		if len(backup) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("backup /proc/net/ip_vs_conn_sync:\n%s", l.backup.run(t, "/bin/cat", "/proc/net/ip_vs_conn_sync"))
	found := 0
	for _, c := range backup {
		m, ok := wantIDs[idOf(c)]
		if !ok {
			t.Errorf("backup has an entry the master does not: %+v", c)
			continue
		}
		if c.StateName != m.StateName {
			t.Errorf("%s -> %s: state %s on the backup, %s on the master", c.Client, c.Virtual, c.StateName, m.StateName)
		}
		if c.Protocol == ipvs.TCP && !c.Template && c.StateName != "ESTABLISHED" {
			t.Errorf("%s -> %s: state %s, want ESTABLISHED", c.Client, c.Virtual, c.StateName)
		}
		found++
	}
	t.Logf("backup holds %d of %d entries", found, want)
	if found != want || len(backup) != want {
		t.Fatalf("backup holds %d of the master's %d entries (%d in all)", found, want, len(backup))
	}
	for _, c := range table(t, l.backup, "ip_vs_conn_sync") {
		if c.Origin != "SYNC" {
			t.Fatalf("backup entry %+v not created by sync", c)
		}
	}
	witness := ipvsadmConns(t, l.backup)
	if len(witness) != want {
		t.Fatalf("ipvsadm -Lnc shows %d entries on the backup, want %d", len(witness), want)
	}
	for _, c := range backup {
		k := ipvsadmConn{strings.ToUpper(c.Protocol.String()), c.StateName, c.Client, c.Virtual, c.Dest}
		if c.Template && c.Protocol == 0 {
			continue
		}
		if !witness[k] {
			t.Fatalf("ipvsadm -Lnc lacks %+v:\n%s", k, l.backup.ipvsadm(t, "-Lnc"))
		}
	}
	// Bound to the backup's own real servers: counted there as active.
	snap, err := ipvs.NewReconciler(l.backup.k, nil).Snapshot(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for key, wantActive := range map[ipvs.ServiceKey]int{
		ipvs.AddrKey(ipvs.TCP, ap(vip4+":23")): n4, ipvs.AddrKey(ipvs.TCP, ap(vipP+":23")): nP,
		ipvs.AddrKey(ipvs.TCP, ap("["+vip6+"]:23")): n6,
	} {
		s, ok := snap.Lookup(key)
		if !ok || len(s.Destinations) != 1 || s.Destinations[0].ActiveConns != wantActive {
			t.Fatalf("backup's %s: %+v, want %d active connections", key, s, wantActive)
		}
	}

	// A second resync refreshes the entries, it does not duplicate them.
	resync()
	time.Sleep(2 * time.Second)
	if got := table(t, l.backup, "ip_vs_conn"); len(got) != want {
		t.Fatalf("after a second resync the backup holds %d entries, want %d", len(got), want)
	}

	// Control: connections opened after the resync are unknown to the
	// backup. Then the backup takes the VIPs: every resynced connection
	// carries on, every control one is reset.
	control := dialIdle(t, l, "tcp4", vip4+":23", 4)
	l.master.run(t, guestIP, "addr", "del", vip4+"/32", "dev", "m0")
	l.master.run(t, guestIP, "addr", "del", vipP+"/32", "dev", "m0")
	l.master.run(t, guestIP, "-6", "addr", "del", vip6+"/128", "dev", "m0")
	l.backup.run(t, guestIP, "addr", "add", vip4+"/32", "dev", "b0")
	l.backup.run(t, guestIP, "addr", "add", vipP+"/32", "dev", "b0")
	l.backup.run(t, guestIP, "-6", "addr", "add", vip6+"/128", "dev", "b0", "nodad")
	l.route(t, l.backup, vip4, vipP, vip6)
	alive := 0
	for i, c := range idle {
		if err := echo(c, fmt.Sprintf("line %d", i)); err != nil {
			t.Errorf("resynced connection %d (%s) after the takeover: %v", i, c.LocalAddr(), err)
			continue
		}
		alive++
	}
	t.Logf("after the takeover: %d of %d resynced connections answer", alive, len(idle))
	for i, c := range control {
		if err := echo(c, "control"); err == nil {
			t.Errorf("control connection %d answered through a backup that never heard of it: the test proves nothing", i)
		}
	}
}

// ipvsadmConn is one line of ipvsadm -Lnc.
type ipvsadmConn struct {
	proto, state          string
	client, virtual, dest netip.AddrPort
}

// ipvsadmConns parses ipvsadm -Lnc:
//
//	IPVS connection entries
//	pro expire state       source             virtual            destination
//	TCP 14:59  ESTABLISHED 10.99.8.2:41234    10.99.8.101:23     10.99.8.3:23
func ipvsadmConns(t *testing.T, g *guestNS) map[ipvsadmConn]bool {
	t.Helper()
	out := g.ipvsadm(t, "-Lnc")
	got := map[ipvsadmConn]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 6 || f[0] == "pro" {
			continue
		}
		var a [3]netip.AddrPort
		for i := range a {
			p, err := netip.ParseAddrPort(f[3+i])
			if err != nil {
				t.Fatalf("ipvsadm -Lnc line %q: %v", line, err)
			}
			a[i] = p
		}
		got[ipvsadmConn{f[0], f[2], a[0], a[1], a[2]}] = true
	}
	return got
}

// TestGuestResyncRate measures how many connections per second a backup
// sync daemon takes without loss: synthetic connections (no service
// needed: the backup keeps them unbound) at several rates, each counted in
// the backup's table. The backup's sync id is 0, which takes any.
func TestGuestResyncRate(t *testing.T) {
	ctx := context.Background()
	sender, backup := newGuestNS(t), newGuestNS(t)
	sender.run(t, guestIP, "link", "add", "s0", "type", "veth", "peer", "name", "k0")
	sender.run(t, guestIP, "link", "set", "k0", "netns", backup.name)
	sender.run(t, guestIP, "addr", "add", "10.99.9.1/24", "dev", "s0")
	sender.run(t, guestIP, "link", "set", "s0", "up")
	backup.run(t, guestIP, "addr", "add", "10.99.9.2/24", "dev", "k0")
	backup.run(t, guestIP, "link", "set", "k0", "up")
	if err := backup.k.StartSyncDaemon(ctx, ipvs.SyncDaemon{Role: ipvs.SyncBackup, Interface: "k0", SyncID: 0}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backup.k.StopSyncDaemon(context.Background(), ipvs.SyncBackup) })

	const n = 10_000
	runs := []struct {
		rate, burst int
		mustAll     bool
	}{
		{-1, 0, false},
		{200_000, 0, false},
		{100_000, 0, false},
		{ipvs.DefaultResyncRate, 0, true},
		{20_000, 0, true},
	}
	for r, run := range runs {
		conns := make([]ipvs.SyncConn, n)
		for i := range conns {
			conns[i] = ipvs.SyncConn{
				Protocol: ipvs.TCP, Flags: uint32(ipvs.DR) | ipvs.ConnFlagNoOutput, State: ipvs.TCPStateEstablished,
				Client:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 99, byte(100 + r), byte(i%250 + 1)}), uint16(10000+i/250)),
				Virtual: ap("10.99.9.101:23"), Dest: ap("10.99.9.3:23"), Timeout: 600,
			}
		}
		msgs, err := ipvs.MarshalSyncMessages(7, conns, 1472)
		if err != nil {
			t.Fatal(err)
		}
		var took time.Duration
		inNS(t, sender.name, func() {
			s, err := ipvs.NewSyncSender(ipvs.ResyncOptions{Interface: "s0", Rate: run.rate, Burst: run.burst})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			start := time.Now()
			if _, sent, err := s.Send(ctx, msgs); err != nil || sent != n {
				t.Fatalf("sent %d of %d: %v", sent, n, err)
			}
			took = time.Since(start)
		})
		prefix := fmt.Sprintf("TCP 0A63%02X", 100+r)
		count := func() int {
			text := backup.run(t, "/bin/cat", "/proc/net/ip_vs_conn")
			c := 0
			for _, line := range strings.Split(text, "\n") {
				if strings.HasPrefix(line, prefix) {
					c++
				}
			}
			return c
		}
		got, last := 0, -1
		for deadline := time.Now().Add(30 * time.Second); got != n && got != last && time.Now().Before(deadline); {
			last = got
			time.Sleep(time.Second)
			got = count()
		}
		rate := "unpaced"
		if run.rate > 0 {
			rate = fmt.Sprintf("%d/s", run.rate)
		}
		t.Logf("rate %s: sent %d connections in %d messages in %v (%.0f/s); backup took %d (%.1f%% lost)",
			rate, n, len(msgs), took.Round(time.Millisecond), float64(n)/took.Seconds(), got, 100*float64(n-got)/n)
		if run.mustAll && got != n {
			t.Errorf("rate %s: backup took %d of %d", rate, got, n)
		}
	}
}
