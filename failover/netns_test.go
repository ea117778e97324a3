package failover_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vigil-lb/vigil/failover"
	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newClaimer makes a Claimer in h's namespace, closed when the test ends.
func newClaimer(t testing.TB, h *netlab.Host, cfg failover.ClaimerConfig) *failover.Claimer {
	t.Helper()
	cfg.Netns = &h.NS
	if cfg.Instance == "" {
		cfg.Instance = "www"
	}
	cfg.Logger = testLog(t)
	c, err := failover.NewClaimer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Release(ctx)
		if err := c.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return c
}

func mustVIP(s, ifname, label string) failover.VIP {
	return failover.VIP{Prefix: netip.MustParsePrefix(s), Interface: ifname, Label: label}
}

// addrs lists h's eth0 addresses as netlink sees them.
func addrs(t *testing.T, h *netlab.Host) []netlink.Addr { return addrsOn(t, h, "eth0") }

// addrsOn lists the addresses of h's interface ifname.
func addrsOn(t *testing.T, h *netlab.Host, ifname string) []netlink.Addr {
	t.Helper()
	hd := h.Handle()
	defer hd.Close()
	link, err := hd.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	as, err := hd.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func findAddr(t *testing.T, h *netlab.Host, ip string) *netlink.Addr {
	t.Helper()
	return findAddrOn(t, h, "eth0", ip)
}

func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNetnsVIPAddRemoveIdempotent(t *testing.T) {
	testenv.NeedNetns(t)
	ctx := context.Background()
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	notified := filepath.Join(t.TempDir(), "notified")
	script := filepath.Join(t.TempDir(), "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$* $VIGIL_OLD_STATE $VIGIL_VIPS\" >> "+notified+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newClaimer(t, vs1, failover.ClaimerConfig{
		VIPs: []failover.VIP{
			mustVIP("10.99.0.100/24", "eth0", "eth0:101"),
			mustVIP("fd99::100/128", "eth0", ""),
		},
		Announce: failover.AnnounceConfig{},
		Notify:   []failover.NotifyCommand{{Argv: []string{script}}},
	})
	if err := c.Transition(ctx, failover.Transition{From: failover.StateBackup, To: failover.StateMaster, Priority: 150}); err != nil {
		t.Fatal(err)
	}
	out := vs1.MustRun(t, "ip", "-o", "-4", "addr", "show", "dev", "eth0")
	if !strings.Contains(out, "inet 10.99.0.100/24") || !strings.Contains(out, "eth0:101") {
		t.Fatalf("IPv4 VIP with its label not on eth0:\n%s", out)
	}
	a6 := findAddr(t, vs1, "fd99::100")
	if a6 == nil {
		t.Fatalf("IPv6 VIP not on eth0: %v", addrs(t, vs1))
	}
	if a6.Flags&unix.IFA_F_NODAD == 0 || a6.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
		t.Fatalf("IPv6 VIP flags %#x: want nodad, not tentative", a6.Flags)
	}
	// Deprecated: the director's own traffic does not leave from the VIP.
	if out := vs1.MustRun(t, "ip", "-6", "route", "get", "fd99::3"); !strings.Contains(out, "src fd99::1 ") {
		t.Fatalf("source for a neighbour is not the host's address:\n%s", out)
	}
	// Again: nothing to do, no error.
	if err := c.BecomeMaster(ctx); err != nil {
		t.Fatalf("second BecomeMaster: %v", err)
	}
	st := c.Status()
	if !st.Master || st.State != failover.StateMaster || len(st.VIPs) != 2 || !st.VIPs[0].Held || !st.VIPs[1].Held {
		t.Fatalf("status %+v", st)
	}
	if st.Announce.FirstSent.IsZero() || st.Announce.Sent == 0 || st.Announce.Errors != 0 {
		t.Fatalf("announce stats %+v: want packets sent without errors", st.Announce)
	}
	if err := c.Transition(ctx, failover.Transition{To: failover.StateBackup, Priority: 150}); err != nil { // From filled in
		t.Fatal(err)
	}
	if a := findAddr(t, vs1, "10.99.0.100"); a != nil {
		t.Fatalf("IPv4 VIP still there after release: %v", a)
	}
	if a := findAddr(t, vs1, "fd99::100"); a != nil {
		t.Fatalf("IPv6 VIP still there after release: %v", a)
	}
	if findAddr(t, vs1, "10.99.0.1") == nil || findAddr(t, vs1, "fd99::1") == nil {
		t.Fatal("release removed the host's own addresses")
	}
	if err := c.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	waitUntil(t, "both notify commands", 10*time.Second, func() bool {
		b, _ := os.ReadFile(notified)
		return strings.Count(string(b), "\n") == 2
	})
	b, _ := os.ReadFile(notified)
	if want := "INSTANCE www MASTER 150 BACKUP 10.99.0.100/24 fd99::100/128\nINSTANCE www BACKUP 150 MASTER 10.99.0.100/24 fd99::100/128\n"; string(b) != want {
		t.Fatalf("notify ran with\n%s\nwant\n%s", b, want)
	}
}

func TestNetnsRemoveStaleVIPs(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	// Left over by a run that died: one with the prefix it had then.
	vs1.MustRun(t, "ip", "addr", "add", "10.99.0.100/32", "dev", "eth0", "label", "eth0:old")
	vs1.MustRun(t, "ip", "addr", "add", "fd99::100/128", "dev", "eth0", "nodad")
	vs1.MustRun(t, "ip", "addr", "add", "10.99.0.50/24", "dev", "eth0") // not ours
	c := newClaimer(t, vs1, failover.ClaimerConfig{VIPs: []failover.VIP{
		mustVIP("10.99.0.100/24", "eth0", "eth0:101"),
		mustVIP("fd99::100/128", "eth0", ""),
		mustVIP("10.99.0.101/24", "eth0", ""), // absent: nothing to do
	}})
	removed, err := c.RemoveStale(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Fatalf("removed %v, want the two stale VIPs", removed)
	}
	for _, ip := range []string{"10.99.0.100", "fd99::100"} {
		if a := findAddr(t, vs1, ip); a != nil {
			t.Fatalf("stale VIP %s still there", a)
		}
	}
	for _, ip := range []string{"10.99.0.1", "10.99.0.50", "fd99::1"} {
		if findAddr(t, vs1, ip) == nil {
			t.Fatalf("RemoveStale removed %s, which is not a VIP", ip)
		}
	}
	if removed, err := c.RemoveStale(context.Background()); err != nil || len(removed) != 0 {
		t.Fatalf("second RemoveStale: %v, %v", removed, err)
	}
}

func TestNetnsVIPDeletedByHandComesBack(t *testing.T) {
	testenv.NeedNetns(t)
	ctx := context.Background()
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	c := newClaimer(t, vs1, failover.ClaimerConfig{VIPs: []failover.VIP{
		mustVIP("10.99.0.100/24", "eth0", "eth0:101"),
		mustVIP("fd99::100/128", "eth0", ""),
	}})
	if err := c.BecomeMaster(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the watcher subscribe
	vs1.MustRun(t, "ip", "addr", "del", "10.99.0.100/24", "dev", "eth0")
	vs1.MustRun(t, "ip", "addr", "del", "fd99::100/128", "dev", "eth0")
	waitUntil(t, "the VIPs to come back", 5*time.Second, func() bool {
		return findAddr(t, vs1, "10.99.0.100") != nil && findAddr(t, vs1, "fd99::100") != nil
	})
	if out := vs1.MustRun(t, "ip", "-o", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(out, "eth0:101") {
		t.Fatalf("VIP came back without its label:\n%s", out)
	}
	if st := c.Status(); st.Restored < 2 {
		t.Fatalf("status says %d restored, want 2", st.Restored)
	}
	// Once released, a VIP stays gone.
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if a := findAddr(t, vs1, "10.99.0.100"); a != nil {
		t.Fatalf("VIP %s back after release", a)
	}
}

// capture records the gratuitous ARPs and neighbour advertisements for a
// VIP that reach h's eth0.
type capture struct {
	mu    sync.Mutex
	arps  []*arp.Packet
	nas   []*ndp.NeighborAdvertisement
	naSrc []netip.Addr // IPv6 source of each NA
}

func startCapture(t *testing.T, h *netlab.Host, vips ...netip.Addr) *capture {
	t.Helper()
	var pc *packet.Conn
	if err := h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Link)
		if err != nil {
			return err
		}
		pc, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	want := map[netip.Addr]bool{}
	for _, v := range vips {
		want[v] = true
	}
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var f ethernet.Frame
			if f.UnmarshalBinary(buf[:n]) != nil {
				continue
			}
			switch f.EtherType {
			case ethernet.EtherTypeARP:
				var p arp.Packet
				if p.UnmarshalBinary(f.Payload) == nil && want[p.SenderIP] && p.SenderIP == p.TargetIP {
					c.mu.Lock()
					c.arps = append(c.arps, &p)
					c.mu.Unlock()
				}
			case ethernet.EtherTypeIPv6:
				// Fixed header only: NDP carries no extension headers.
				if len(f.Payload) < 40 || f.Payload[6] != unix.IPPROTO_ICMPV6 {
					continue
				}
				m, err := ndp.ParseMessage(f.Payload[40:])
				if na, ok := m.(*ndp.NeighborAdvertisement); err == nil && ok && want[na.TargetAddress] {
					c.mu.Lock()
					c.nas = append(c.nas, na)
					c.naSrc = append(c.naSrc, netip.AddrFrom16([16]byte(f.Payload[8:24])))
					c.mu.Unlock()
				}
			}
		}
	}()
	return c
}

func (c *capture) counts() (arps, nas int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.arps), len(c.nas)
}

// neighMAC is the MAC h's neighbour table has for ip, or "".
func neighMAC(t *testing.T, h *netlab.Host, ip string) string {
	t.Helper()
	out := h.MustRun(t, "ip", "neigh", "show", ip, "dev", "eth0")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

func TestNetnsGARPMovesClientNeighbour(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24")
	vs2 := lab.AddHost("vs2", "10.99.0.2/24")
	client := lab.AddHost("client", "10.99.0.3/24")
	const vip = "10.99.0.100"
	// The client last talked to the VIP on vs1.
	client.MustRun(t, "ip", "neigh", "replace", vip, "lladdr", vs1.MAC.String(), "dev", "eth0", "nud", "stale")
	time.Sleep(1200 * time.Millisecond) // past the 1 s locktime of that update
	capt := startCapture(t, client, netip.MustParseAddr(vip))
	c := newClaimer(t, vs2, failover.ClaimerConfig{
		VIPs:     []failover.VIP{mustVIP(vip+"/24", "eth0", "eth0:100")},
		Announce: failover.AnnounceConfig{Repeat: 1},
	})
	if err := c.BecomeMaster(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the client's entry to move to vs2", 5*time.Second, func() bool {
		return neighMAC(t, client, vip) == vs2.MAC.String()
	})
	waitUntil(t, "a request and a reply", 5*time.Second, func() bool { n, _ := capt.counts(); return n >= 2 })
	capt.mu.Lock()
	ops := map[arp.Operation]bool{}
	for _, p := range capt.arps[:2] {
		ops[p.Operation] = true
		if p.SenderHardwareAddr.String() != vs2.MAC.String() {
			t.Errorf("GARP from %s, want vs2's %s", p.SenderHardwareAddr, vs2.MAC)
		}
	}
	capt.mu.Unlock()
	if !ops[arp.OperationRequest] || !ops[arp.OperationReply] {
		t.Fatalf("first round operations %v, want a request and a reply", ops)
	}
	cs := c.Status()
	st := cs.Announce
	if st.FirstSent.IsZero() || st.FirstSent.Before(st.Started) || cs.VIPsAdded.IsZero() || cs.VIPsAdded.After(st.FirstSent) {
		t.Fatalf("status %+v: want VIPs added, then the first GARP", cs)
	}
	t.Logf("VIP added to first GARP: %s", st.FirstSent.Sub(cs.VIPsAdded))
}

func TestNetnsUnsolicitedNAMovesClientNeighbour(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "fd99::1/64")
	vs2 := lab.AddHost("vs2", "fd99::2/64")
	client := lab.AddHost("client", "fd99::3/64")
	const vip = "fd99::100"
	client.MustRun(t, "ip", "-6", "neigh", "replace", vip, "lladdr", vs1.MAC.String(), "dev", "eth0", "nud", "stale")
	capt := startCapture(t, client, netip.MustParseAddr(vip))
	c := newClaimer(t, vs2, failover.ClaimerConfig{
		VIPs:     []failover.VIP{mustVIP(vip+"/128", "eth0", "")},
		Announce: failover.AnnounceConfig{Repeat: 1, Router: true},
	})
	if err := c.BecomeMaster(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the client's entry to move to vs2", 5*time.Second, func() bool {
		return neighMAC(t, client, vip) == vs2.MAC.String()
	})
	waitUntil(t, "the advertisement", 5*time.Second, func() bool { _, n := capt.counts(); return n >= 1 })
	capt.mu.Lock()
	na, src := capt.nas[0], capt.naSrc[0]
	capt.mu.Unlock()
	if !src.IsLinkLocalUnicast() {
		t.Errorf("NA from %s, want vs2's link-local address", src)
	}
	if !na.Override || na.Solicited || !na.Router {
		t.Fatalf("NA flags override=%v solicited=%v router=%v, want O=1 S=0 R=1", na.Override, na.Solicited, na.Router)
	}
	var lla string
	for _, o := range na.Options {
		if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target {
			lla = l.Addr.String()
		}
	}
	if lla != vs2.MAC.String() {
		t.Fatalf("NA target link-layer address %q, want vs2's %s", lla, vs2.MAC)
	}
	if st := c.Status().Announce; st.Errors != 0 || st.FirstSent.IsZero() {
		t.Fatalf("announce stats %+v", st)
	}
}

func TestNetnsNoAnnouncementAfterWithdraw(t *testing.T) {
	testenv.NeedNetns(t)
	ctx := context.Background()
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	client := lab.AddHost("client", "10.99.0.3/24", "fd99::3/64")
	v4, v6 := netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("fd99::100")
	capt := startCapture(t, client, v4, v6)
	c := newClaimer(t, vs1, failover.ClaimerConfig{
		VIPs: []failover.VIP{mustVIP("10.99.0.100/24", "eth0", ""), mustVIP("fd99::100/128", "eth0", "")},
		// Rounds at 0, 1.1, 2.2, 3.3 s and a refresh every 2 s.
		Announce: failover.AnnounceConfig{Repeat: 3, Interval: 1100 * time.Millisecond, Refresh: 2 * time.Second},
	})
	if err := c.BecomeMaster(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first round", 5*time.Second, func() bool { a, n := capt.counts(); return a >= 2 && n >= 1 })
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	sentAtWithdraw := c.Status().Announce.Sent
	time.Sleep(300 * time.Millisecond) // frames already on the wire arrive
	a0, n0 := capt.counts()
	time.Sleep(4 * time.Second) // past every round and refresh once due
	a1, n1 := capt.counts()
	if a1 != a0 || n1 != n0 {
		t.Fatalf("after withdraw: %d more ARP and %d more NA reached the client", a1-a0, n1-n0)
	}
	// A fresh bridge port may drop the very first frames, so at most
	// what was sent.
	if uint64(a0+n0) > sentAtWithdraw {
		t.Fatalf("client saw %d ARP and %d NA, the announcer sent only %d before withdraw", a0, n0, sentAtWithdraw)
	}
	if st := c.Status().Announce; st.Sent != sentAtWithdraw || st.Active {
		t.Fatalf("announcer counted %d packets after withdraw (active=%v)", st.Sent-sentAtWithdraw, st.Active)
	}
}

// Right after link-up the link-local address is tentative (DAD) and
// cannot be the source; the advertisement must still go out.
func TestNetnsNAWhileLinkLocalTentative(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	vs2 := lab.AddHost("vs2", "10.99.0.2/24")
	client := lab.AddHost("client", "fd99::3/64")
	vs2.Sysctl("net.ipv6.conf.eth0.accept_dad", "1")
	vs2.Sysctl("net.ipv6.conf.eth0.dad_transmits", "3") // tentative for about 3 s
	vs2.MustRun(t, "ip", "link", "set", "eth0", "down")
	vs2.MustRun(t, "ip", "link", "set", "eth0", "up")
	if out := vs2.MustRun(t, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link"); !strings.Contains(out, "tentative") {
		t.Fatalf("link-local not tentative, the test proves nothing:\n%s", out)
	}
	const vip = "fd99::100"
	capt := startCapture(t, client, netip.MustParseAddr(vip))
	// Repeats: the bridge may still drop the first round, as its port
	// follows the link-up a moment later (linkwatch).
	c := newClaimer(t, vs2, failover.ClaimerConfig{
		VIPs:     []failover.VIP{mustVIP(vip+"/128", "eth0", "")},
		Announce: failover.AnnounceConfig{Repeat: 3},
	})
	if err := c.BecomeMaster(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := c.Status().Announce; st.Errors != 0 || st.Sent != 1 {
		t.Fatalf("announce stats %+v, want the NA sent at once without error", st)
	}
	if out := vs2.MustRun(t, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link"); !strings.Contains(out, "tentative") {
		t.Logf("link-local no longer tentative when we sent; the test may prove less:\n%s", out)
	}
	waitUntil(t, "an advertisement", 6*time.Second, func() bool { _, n := capt.counts(); return n >= 1 })
	if st := c.Status().Announce; st.Errors != 0 {
		t.Fatalf("announce errors: %+v", st)
	}
	capt.mu.Lock()
	src := capt.naSrc[0]
	capt.mu.Unlock()
	t.Logf("NA sent from %s while the link-local address was tentative", src)
}

func TestNetnsReconfigureWhileMaster(t *testing.T) {
	testenv.NeedNetns(t)
	ctx := context.Background()
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24")
	cfg := failover.ClaimerConfig{Instance: "www", VIPs: []failover.VIP{
		mustVIP("10.99.0.100/24", "eth0", "eth0:100"),
		mustVIP("10.99.0.101/24", "eth0", ""),
		mustVIP("10.99.0.102/24", "eth0", ""),
	}}
	c := newClaimer(t, vs1, cfg)
	if err := c.BecomeMaster(ctx); err != nil {
		t.Fatal(err)
	}
	sent := c.Status().Announce.Sent
	// .100 stays, .101 goes, .102 changes label, .103 is new.
	cfg.VIPs = []failover.VIP{
		mustVIP("10.99.0.100/24", "eth0", "eth0:100"),
		mustVIP("10.99.0.102/24", "eth0", "eth0:102"),
		mustVIP("10.99.0.103/24", "eth0", ""),
	}
	cfg.Logger = testLog(t)
	cfg.Netns = &vs1.NS
	if err := c.Reconfigure(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	out := vs1.MustRun(t, "ip", "-o", "-4", "addr", "show", "dev", "eth0")
	for _, want := range []string{"10.99.0.100/24 brd 10.99.0.255 scope global secondary eth0:100", "10.99.0.102/24 brd 10.99.0.255 scope global secondary eth0:102", "10.99.0.103/24"} {
		if !strings.Contains(out, want) {
			t.Errorf("after reload, no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "10.99.0.101") {
		t.Errorf("dropped VIP still there:\n%s", out)
	}
	if st := c.Status(); st.State != failover.StateInit || !st.Master || st.Announce.Sent <= sent {
		t.Fatalf("status %+v: want still master, no transition, the new VIPs announced", st)
	}
	bad := cfg
	bad.VIPs = append(bad.VIPs, mustVIP("10.99.0.104/24", "eth0", "eth1:x"))
	if err := c.Reconfigure(ctx, bad); err == nil {
		t.Fatal("bad label accepted")
	}
	if findAddr(t, vs1, "10.99.0.103") == nil {
		t.Fatal("a rejected reload changed the addresses")
	}
}

// BenchmarkNetnsClaimRelease measures what a transition costs on top of
// the election: BecomeMaster (add an IPv4 and an IPv6 VIP, send the first
// round) and Release (cancel, remove). It reports the time from the
// BecomeMaster call to the first packet sent ("first GARP").
func BenchmarkNetnsClaimRelease(b *testing.B) {
	testenv.NeedNetns(b)
	ctx := context.Background()
	lab := netlab.New(b)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	c := newClaimer(b, vs1, failover.ClaimerConfig{
		VIPs:     []failover.VIP{mustVIP("10.99.0.100/24", "eth0", "eth0:100"), mustVIP("fd99::100/128", "eth0", "")},
		Announce: failover.AnnounceConfig{Repeat: 4},
	})
	var master, firstGARP, backup time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := c.BecomeMaster(ctx); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		st := c.Status().Announce
		if err := c.Release(ctx); err != nil {
			b.Fatal(err)
		}
		master += t1.Sub(t0)
		firstGARP += st.FirstSent.Sub(t0)
		backup += time.Since(t1)
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64((master / n).Microseconds()), "us/master")
	b.ReportMetric(float64((firstGARP / n).Microseconds()), "us/first-garp")
	b.ReportMetric(float64((backup / n).Microseconds()), "us/backup")
}

// Sockets stay open across transitions; when the interface is re-created
// under them, the next round reopens them instead of failing.
func TestNetnsAnnounceAfterInterfaceRecreated(t *testing.T) {
	testenv.NeedNetns(t)
	ctx := context.Background()
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24")
	mkD0 := func() { // a veth pair inside vs1 (this kernel has no dummy)
		vs1.MustRun(t, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d0p")
		vs1.MustRun(t, "ip", "link", "set", "d0p", "up")
		vs1.MustRun(t, "ip", "link", "set", "d0", "up")
	}
	mkD0()
	c := newClaimer(t, vs1, failover.ClaimerConfig{VIPs: []failover.VIP{
		mustVIP("10.99.1.100/24", "d0", "d0:1"),
		mustVIP("fd99:1::100/128", "d0", ""),
	}})
	if err := c.BecomeMaster(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	vs1.MustRun(t, "ip", "link", "del", "d0")
	mkD0()
	before := c.Status().Announce
	if err := c.BecomeMaster(ctx); err != nil {
		t.Fatal(err)
	}
	after := c.Status().Announce
	if after.Errors != before.Errors || after.Sent != before.Sent+3 {
		t.Fatalf("after re-creating d0: %d errors (%s), %d packets; want none and 3", after.Errors-before.Errors, after.LastError, after.Sent-before.Sent)
	}
	if out := vs1.MustRun(t, "ip", "-o", "addr", "show", "dev", "d0"); !strings.Contains(out, "10.99.1.100/24") || !strings.Contains(out, "fd99:1::100/128") {
		t.Fatalf("VIPs not on the new d0:\n%s", out)
	}
}
