package cluster

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// blockVRRP makes h's firewall drop what clouds drop: IP protocol 112 and
// multicast, in and out, counting what it dropped.
const blockVRRP = `
table inet vigil_block_vrrp {
	chain in {
		type filter hook input priority 0; policy accept;
		meta l4proto 112 counter drop
		ip daddr 224.0.0.0/4 counter drop
		ip6 daddr ff00::/8 counter drop
	}
	chain out {
		type filter hook output priority 0; policy accept;
		meta l4proto 112 counter drop
		ip daddr 224.0.0.0/4 counter drop
		ip6 daddr ff00::/8 counter drop
	}
}
`

// TestNetnsChannelWithVRRPBlocked runs two directors' channels in two
// namespaces on one bridge, with IP protocol 112 and multicast dropped by
// nftables on both: the channel joins, carries topic messages and state,
// raises drift on both sides, survives a cut link, and a director with
// another key is refused.
func TestNetnsChannelWithVRRPBlocked(t *testing.T) {
	testenv.NeedNetns(t, "nft")
	lab := netlab.New(t)
	h1 := lab.AddHost("vs1", "10.99.0.1/24")
	h2 := lab.AddHost("vs2", "10.99.0.2/24")
	h3 := lab.AddHost("vs3", "10.99.0.3/24")
	for _, h := range []*netlab.Host{h1, h2} {
		cmd := h.Command(context.Background(), "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(blockVRRP)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft in %s: %v\n%s", h.Name, err, out)
		}
	}
	proveVRRPBlocked(t, h1, h2)

	const port = 7946
	a1, a2, a3 := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.3")
	peers := []netip.AddrPort{netip.AddrPortFrom(a1, port), netip.AddrPortFrom(a2, port)}
	key := writeKey(t, "the www site's shared passphrase\n")
	mk := func(h *netlab.Host, name string, addr netip.Addr, key string) *node {
		n := &node{events: &eventLog{}, logs: &logBuffer{}}
		ch, err := New(Config{Site: "www", NodeName: name, BindAddr: addr, Port: port, Peers: peers, KeyFile: key,
			OnEvent: n.events.add, Logger: slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Timings:     testTimings(),
			InNamespace: h.Do})
		if err != nil {
			t.Fatalf("New(%s): %v", name, err)
		}
		n.Channel = ch
		t.Cleanup(func() {
			ch.Close()
			if t.Failed() {
				t.Logf("--- log of %s ---\n%s", name, n.logs.String())
			}
		})
		if err := ch.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		return n
	}
	n1 := mk(h1, "vs1", a1, key)
	n2 := mk(h2, "vs2", a2, key)
	n3 := mk(h3, "vs3", a3, writeKey(t, "some other site's passphrase"))
	waitJoined(t, n1, n2)

	// Adverts-like messages cross while protocol 112 and multicast cannot.
	var got atomic.Int64
	var from atomic.Value
	n2.Messenger("vrrp").SetHandler(func(f netip.Addr, p []byte) { from.Store(f); got.Add(1) })
	for range 10 {
		if err := n1.Messenger("vrrp").Broadcast([]byte("advert")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitUntil(t, "messages over the channel", 10*time.Second, func() bool { return got.Load() >= 8 })
	if f := from.Load().(netip.Addr); f != a1 {
		t.Fatalf("message from %v, want %v", f, a1)
	}

	// A changed site file on one director raises drift on both.
	n1.SetLocal(State{ConfigDigest: "sha256:aaaa"})
	n2.SetLocal(State{ConfigDigest: "sha256:aaaa"})
	n2.UpdateLocal(func(s *State) { s.ConfigDigest = "sha256:bbbb" })
	n1.events.waitFor(t, "drift on vs1", 10*time.Second, kindIs(Drift, "vs2"))
	n2.events.waitFor(t, "drift on vs2", 10*time.Second, kindIs(Drift, "vs1"))

	// The director with another key is refused by both, and counted.
	waitUntil(t, "vs3 refused and counted", 20*time.Second, func() bool {
		return n1.Stats().AuthFailures+n2.Stats().AuthFailures > 0 && n3.Stats().AuthFailures > 0
	})
	for _, n := range []*node{n1, n2} {
		if _, ok := peerView(n, "vs3"); ok {
			t.Fatalf("%s lists vs3, which has another key", n.self.Name)
		}
	}
	if len(n3.Peers()) != 0 {
		t.Fatalf("vs3 sees %+v", n3.Peers())
	}

	// A cut link is detected; after the heal the pair is whole again.
	lab.Cut(h2)
	n1.events.waitFor(t, "vs1 to lose vs2", 15*time.Second, kindIs(PeerLeave, "vs2"))
	lab.Heal(h2)
	waitUntil(t, "vs1 to see vs2 again", 30*time.Second, func() bool {
		p, _ := peerView(n1, "vs2")
		return p.Alive && n1.events.count(kindIs(PeerJoin, "vs2")) >= 2
	})
	got.Store(0)
	if os.Getenv("CLUSTER_DUMP_LOGS") != "" {
		t.Logf("vs1 log:\n%s", n1.logs.String())
	}
	waitUntil(t, "messages after the heal", 10*time.Second, func() bool {
		n1.Messenger("vrrp").Broadcast([]byte("advert"))
		return got.Load() > 0
	})
}

// proveVRRPBlocked shows the firewall works: a protocol-112 packet from
// h1 to h2, unicast and to VRRP's group, never arrives.
func proveVRRPBlocked(t *testing.T, h1, h2 *netlab.Host) {
	t.Helper()
	var rx, tx net.PacketConn
	if err := h2.Do(func() (err error) { rx, err = net.ListenPacket("ip4:112", "0.0.0.0"); return }); err != nil {
		t.Fatalf("raw socket in vs2: %v", err)
	}
	defer rx.Close()
	if err := h1.Do(func() (err error) { tx, err = net.ListenPacket("ip4:112", "10.99.0.1"); return }); err != nil {
		t.Fatalf("raw socket in vs1: %v", err)
	}
	defer tx.Close()
	advert := []byte{0x31, 51, 100, 0, 0, 100, 0, 0, 10, 99, 0, 100} // VRRPv3-shaped
	for _, dst := range []string{"10.99.0.2", "224.0.0.18"} {
		tx.WriteTo(advert, &net.IPAddr{IP: net.ParseIP(dst)}) // an EPERM from the output hook is fine
	}
	rx.SetReadDeadline(time.Now().Add(time.Second))
	if n, src, err := rx.ReadFrom(make([]byte, 1500)); err == nil {
		t.Fatalf("protocol 112 crossed the firewall: %d bytes from %v", n, src)
	}
	out := h1.MustRun(t, "nft", "list", "chain", "inet", "vigil_block_vrrp", "out")
	if !regexp.MustCompile(`l4proto (112|vrrp) counter packets [1-9]`).MatchString(out) {
		t.Fatalf("vs1's firewall did not count the dropped protocol-112 packets:\n%s", out)
	}
}
