package cluster

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestJoinStateAndLeave(t *testing.T) {
	a, b := pair(t)
	a.events.waitFor(t, "PeerJoin vs2 on vs1", 5*time.Second, kindIs(PeerJoin, "vs2"))
	b.events.waitFor(t, "PeerJoin vs1 on vs2", 5*time.Second, kindIs(PeerJoin, "vs1"))

	health := map[string]bool{"www/10.0.0.3:80": true, "www/10.0.0.4:80": false}
	b.SetLocal(State{ConfigDigest: "d1", Health: health,
		Instances: map[string]InstanceState{"www": {State: "backup", Priority: 100}}})
	waitUntil(t, "vs2's state on vs1", 10*time.Second, func() bool {
		p, ok := peerView(a, "vs2")
		return ok && p.State.ConfigDigest == "d1" && len(p.State.Health) == 2
	})
	p, _ := peerView(a, "vs2")
	if p.State.Name != "vs2" || p.Addr != b.LocalAddr() || !p.Alive || p.State.Health["www/10.0.0.4:80"] || !p.State.Health["www/10.0.0.3:80"] ||
		p.State.Instances["www"].Priority != 100 || p.LastSeen.IsZero() {
		t.Fatalf("vs1's view of vs2 = %+v", p)
	}
	// The caller's map is not shared with the channel.
	health["www/10.0.0.4:80"] = true
	if b.Local().Health["www/10.0.0.4:80"] {
		t.Fatal("SetLocal kept a reference to the caller's map")
	}

	start := time.Now()
	if err := b.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	a.events.waitFor(t, "graceful PeerLeave vs2 on vs1", 10*time.Second, func(e Event) bool { return kindIs(PeerLeave, "vs2")(e) && e.Graceful })
	t.Logf("graceful leave seen after %v", time.Since(start).Round(time.Millisecond))
	if p, _ := peerView(a, "vs2"); p.Alive || p.State.ConfigDigest != "d1" {
		t.Fatalf("after leave, view of vs2 = %+v (want not alive, last state kept)", p)
	}
}

func TestCrashDetected(t *testing.T) {
	a, b := pair(t)
	start := time.Now()
	b.Close() // no Leave: like a crash
	a.events.waitFor(t, "vs1 to detect the crash of vs2 (not a graceful leave)", 15*time.Second, func(e Event) bool { return kindIs(PeerLeave, "vs2")(e) && !e.Graceful })
	t.Logf("crash detected after %v", time.Since(start).Round(time.Millisecond))
}

func TestPartitionHealRejoin(t *testing.T) {
	a, b := pair(t)
	var mu sync.Mutex
	var got [][]byte
	b.Handle("t", func(from Peer, p []byte) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	})
	received := func(want string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range got {
			if string(g) == want {
				return true
			}
		}
		return false
	}

	a.tr.cut.Store(true)
	b.tr.cut.Store(true)
	a.events.waitFor(t, "vs1 to see vs2 gone", 15*time.Second, kindIs(PeerLeave, "vs2"))
	b.events.waitFor(t, "vs2 to see vs1 gone", 15*time.Second, kindIs(PeerLeave, "vs1"))
	if err := a.Broadcast("t", []byte("during")); err != nil {
		t.Fatal(err)
	}

	// Heal: the pair finds itself again (memberlist's gossip to the
	// recently dead, or our re-join), and messages flow.
	a.tr.cut.Store(false)
	b.tr.cut.Store(false)
	a.events.waitFor(t, "vs1 to see vs2 again", 20*time.Second, func(e Event) bool {
		return e.Kind == PeerJoin && e.Peer.Name == "vs2" && a.events.count(kindIs(PeerJoin, "vs2")) >= 2
	})
	b.events.waitFor(t, "vs2 to see vs1 again", 20*time.Second, func(e Event) bool {
		return e.Kind == PeerJoin && e.Peer.Name == "vs1" && b.events.count(kindIs(PeerJoin, "vs1")) >= 2
	})
	waitUntil(t, "a message after the heal", 10*time.Second, func() bool {
		a.Broadcast("t", []byte("after"))
		return received("after")
	})
	if received("during") {
		t.Fatal("a message crossed the partition")
	}
}

func TestWrongKeyNeverJoins(t *testing.T) {
	ns := startCluster(t,
		spec{name: "vs1", site: "www", key: testKey},
		spec{name: "vs2", site: "www", key: "another passphrase, not the site's key"},
		spec{name: "vs3", site: "www"}) // insecure: no key at all
	waitUntil(t, "authentication failures counted on vs1", 20*time.Second, func() bool {
		return ns[0].Stats().AuthFailures >= 2
	})
	// Give them time to (wrongly) merge, then check they did not.
	time.Sleep(3 * time.Second)
	for _, n := range ns {
		if p := n.Peers(); len(p) != 0 {
			t.Errorf("%s sees peers %+v", n.self.Name, p)
		}
		if c := n.events.count(kindIs(PeerJoin, "")); c != 0 {
			t.Errorf("%s got %d PeerJoin events", n.self.Name, c)
		}
		if got := n.ml.NumMembers(); got != 1 {
			t.Errorf("%s has %d members", n.self.Name, got)
		}
	}
	if s := ns[1].Stats(); s.AuthFailures == 0 {
		t.Errorf("vs2 (wrong key) counted no authentication failure: %+v", s)
	}
	if log := ns[0].logs.String(); !strings.Contains(log, "failed authentication") {
		t.Errorf("vs1 did not log the rejected peer:\n%s", log)
	}
	if log := ns[2].logs.String(); !strings.Contains(log, "UNENCRYPTED") {
		t.Error("insecure vs3 did not warn at start")
	}
}

func TestOtherSiteNeverMerges(t *testing.T) {
	ns := startCluster(t,
		spec{name: "vs1", site: "www", key: testKey},
		spec{name: "vs2", site: "mail", key: testKey})
	waitUntil(t, "label mismatches counted", 20*time.Second, func() bool {
		return ns[0].Stats().LabelMismatches > 0 && ns[1].Stats().LabelMismatches > 0
	})
	time.Sleep(2 * time.Second)
	for _, n := range ns {
		if p := n.Peers(); len(p) != 0 {
			t.Errorf("%s sees peers %+v", n.self.Name, p)
		}
	}
	// Messages sent to the other site's address are dropped too.
	delivered := make(chan struct{}, 1)
	ns[1].Handle("t", func(Peer, []byte) { delivered <- struct{}{} })
	before := ns[1].Stats().LabelMismatches
	if err := ns[0].Broadcast("t", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the message to be refused", 10*time.Second, func() bool { return ns[1].Stats().LabelMismatches > before })
	select {
	case <-delivered:
		t.Fatal("a message crossed sites")
	case <-time.After(200 * time.Millisecond):
	}
}

func TestMessaging(t *testing.T) {
	a, b := pair(t)
	type msg struct {
		from    netip.Addr
		payload []byte
	}
	got := make(chan msg, 16)
	b.Messenger("vrrp/www").SetHandler(func(from netip.Addr, p []byte) { got <- msg{from, p} })
	payload := []byte{0x31, 0x33, 0x00, 0x96}
	if err := a.Messenger("vrrp/www").Broadcast(payload); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.from != a.Self().Addr || !bytes.Equal(m.payload, payload) {
			t.Fatalf("got %v %x, want %v %x", m.from, m.payload, a.Self().Addr, payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message not delivered")
	}

	// Unknown topic: counted, not delivered.
	a.Broadcast("nobody", []byte("x"))
	waitUntil(t, "unknown topic counted", 10*time.Second, func() bool { return b.Stats().UnknownTopic > 0 })

	// A malformed frame is counted and dropped; a panicking handler is
	// contained; the topic keeps working afterwards.
	for _, n := range a.ml.Members() {
		if n.Name == "vs2" {
			a.ml.SendBestEffort(n, []byte("garbage"))
		}
	}
	waitUntil(t, "malformed frame counted", 10*time.Second, func() bool { return b.Stats().MalformedFrames > 0 })
	b.Handle("boom", func(Peer, []byte) { panic("handler bug") })
	a.Broadcast("boom", nil)
	waitUntil(t, "handler panic counted", 10*time.Second, func() bool { return b.Stats().HandlerPanics > 0 })
	a.Broadcast("vrrp/www", []byte("again"))
	select {
	case m := <-got:
		if string(m.payload) != "again" {
			t.Fatalf("got %q", m.payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("topic dead after a handler panic")
	}

	if err := a.Broadcast("t", make([]byte, MaxPayload+1)); err == nil {
		t.Fatal("oversized payload accepted")
	}
	if s := a.Stats(); s.MessagesSent < 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDriftBothSides(t *testing.T) {
	a, b := pair(t)
	a.SetLocal(State{ConfigDigest: "d1"})
	b.SetLocal(State{ConfigDigest: "d1"})
	waitUntil(t, "digests exchanged", 10*time.Second, func() bool {
		pa, _ := peerView(a, "vs2")
		pb, _ := peerView(b, "vs1")
		return pa.State.ConfigDigest == "d1" && pb.State.ConfigDigest == "d1"
	})
	if n := a.events.count(kindIs(Drift, "")) + b.events.count(kindIs(Drift, "")); n != 0 {
		t.Fatalf("drift raised with equal digests (%d events)", n)
	}

	b.UpdateLocal(func(s *State) { s.ConfigDigest = "d2" })
	ea := a.events.waitFor(t, "drift on vs1", 10*time.Second, kindIs(Drift, "vs2"))
	eb := b.events.waitFor(t, "drift on vs2", 10*time.Second, kindIs(Drift, "vs1"))
	if ea.LocalDigest != "d1" || ea.PeerDigest != "d2" || eb.LocalDigest != "d2" || eb.PeerDigest != "d1" {
		t.Fatalf("drift events %+v / %+v", ea, eb)
	}
	if d := a.Drift(); len(d) != 1 || d[0].Peer.Name != "vs2" || d[0].PeerDigest != "d2" {
		t.Fatalf("vs1 Drift() = %+v", d)
	}
	if !strings.Contains(a.logs.String(), "config drift") {
		t.Fatal("drift not logged")
	}
	// Publishing again without a digest change does not repeat the warning.
	b.UpdateLocal(func(s *State) { s.Health = map[string]bool{"x": true} })
	waitUntil(t, "health update on vs1", 10*time.Second, func() bool {
		p, _ := peerView(a, "vs2")
		return p.State.Health["x"]
	})
	if n := a.events.count(kindIs(Drift, "vs2")); n != 1 {
		t.Fatalf("vs1 raised drift %d times for one change", n)
	}

	b.UpdateLocal(func(s *State) { s.ConfigDigest = "d1" })
	a.events.waitFor(t, "drift cleared on vs1", 10*time.Second, kindIs(DriftCleared, "vs2"))
	b.events.waitFor(t, "drift cleared on vs2", 10*time.Second, kindIs(DriftCleared, "vs1"))
	if d := a.Drift(); len(d) != 0 {
		t.Fatalf("vs1 Drift() after clear = %+v", d)
	}
}

func TestDualMaster(t *testing.T) {
	a, b := pair(t)
	const interval = 1500 * time.Millisecond
	master := func(m bool) func(*State) {
		return func(s *State) {
			st := "backup"
			if m {
				st = "master"
			}
			s.Instances = map[string]InstanceState{"www": {State: st, Master: m, Priority: 100, AdvertInterval: interval}}
		}
	}
	a.UpdateLocal(master(true))
	b.UpdateLocal(master(false))
	waitUntil(t, "vs2 to know vs1 is master", 10*time.Second, func() bool {
		p, _ := peerView(b, "vs1")
		return p.State.Instances["www"].Master
	})

	// A brief overlap, shorter than the interval, is a normal handover.
	b.UpdateLocal(master(true))
	time.Sleep(interval / 5)
	b.UpdateLocal(master(false))
	time.Sleep(2 * interval)
	if n := a.events.count(kindIs(DualMaster, "")) + b.events.count(kindIs(DualMaster, "")); n != 0 {
		t.Fatalf("dual master raised for an overlap shorter than the interval")
	}

	start := time.Now()
	b.UpdateLocal(master(true))
	for _, n := range []*node{a, b} {
		e := n.events.waitFor(t, "dual master on "+n.self.Name, 15*time.Second, kindIs(DualMaster, ""))
		if e.Instance != "www" || strings.Join(e.Masters, ",") != "vs1,vs2" {
			t.Fatalf("%s: event %+v", n.self.Name, e)
		}
		if d := e.Time.Sub(start); d <= interval {
			t.Fatalf("%s raised dual master after %v, before one interval (%v)", n.self.Name, d, interval)
		}
		if r := n.DualMasters(); len(r) != 1 || r[0].Instance != "www" {
			t.Fatalf("%s DualMasters() = %+v", n.self.Name, r)
		}
	}
	b.UpdateLocal(master(false))
	a.events.waitFor(t, "dual master cleared on vs1", 10*time.Second, kindIs(DualMasterCleared, ""))
	b.events.waitFor(t, "dual master cleared on vs2", 10*time.Second, kindIs(DualMasterCleared, ""))
}

// TestRejoinLatePeer: vs2 knows nobody and vs1 cannot reach it at first;
// only vs1's periodic re-join brings them together once the link is up.
func TestRejoinLatePeer(t *testing.T) {
	ta, tb := newCutTransport(t), newCutTransport(t)
	ta.cut.Store(true)
	tb.cut.Store(true)
	lo := netip.MustParseAddr("127.0.0.1")
	mk := func(name string, tr *cutTransport, peers []netip.AddrPort) *node {
		n := &node{tr: tr, events: &eventLog{}, logs: &logBuffer{}}
		ch, err := New(Config{Site: "www", NodeName: name, BindAddr: lo, Port: tr.GetAutoBindPort(),
			Peers: peers, KeyFile: writeKey(t, testKey), Timings: testTimings(),
			OnEvent: n.events.add, Logger: slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ch.Close() })
		n.Channel = ch
		return n
	}
	a := mk("vs1", ta, []netip.AddrPort{netip.AddrPortFrom(lo, uint16(tb.GetAutoBindPort()))})
	b := mk("vs2", tb, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.Start(ctx)
	b.Start(ctx)
	waitUntil(t, "failed join attempts", 10*time.Second, func() bool { return strings.Count(a.logs.String(), "join cluster peer failed") >= 2 })
	if m := a.Missing(); len(m) != 1 || m[0].Port() != uint16(tb.GetAutoBindPort()) {
		t.Fatalf("Missing() = %v", m)
	}
	ta.cut.Store(false)
	tb.cut.Store(false)
	b.events.waitFor(t, "vs2 to see vs1 join", 15*time.Second, kindIs(PeerJoin, "vs1"))
	a.events.waitFor(t, "vs1 to see vs2", 15*time.Second, kindIs(PeerJoin, "vs2"))
	if m := a.Missing(); len(m) != 0 {
		t.Fatalf("Missing() after join = %v", m)
	}
	if err := a.Start(ctx); err == nil {
		t.Fatal("second Start accepted")
	}
}

// TestReplayDropped replays the encrypted packets of a topic message, as
// an attacker on the path could: memberlist accepts them (it has no replay
// protection), the channel drops them by sequence number.
func TestReplayDropped(t *testing.T) {
	a, b := pair(t)
	var got atomic.Int64
	b.Handle("vrrp", func(Peer, []byte) { got.Add(1) })
	a.tr.record(true)
	if err := a.Broadcast("vrrp", []byte("advert")); err != nil {
		t.Fatal(err)
	}
	pkts := a.tr.record(false)
	waitUntil(t, "the original message", 10*time.Second, func() bool { return got.Load() == 1 })
	if len(pkts) == 0 {
		t.Fatal("nothing recorded")
	}
	for range 3 {
		for _, p := range pkts {
			a.tr.NetTransport.WriteToAddress(p.b, p.to)
		}
	}
	waitUntil(t, "replays counted", 10*time.Second, func() bool { return b.Stats().Replayed >= 3 })
	time.Sleep(100 * time.Millisecond)
	if n := got.Load(); n != 1 {
		t.Fatalf("handler called %d times, want 1", n)
	}
	// Fresh messages still pass.
	a.Broadcast("vrrp", []byte("next"))
	waitUntil(t, "a fresh message", 10*time.Second, func() bool { return got.Load() == 2 })
}

// TestDriftClearedByRestartedPeer: the director in drift crashes, is given
// the right site file and comes back; the survivor clears the drift.
func TestDriftClearedByRestartedPeer(t *testing.T) {
	a, b := pair(t)
	a.SetLocal(State{ConfigDigest: "d1"})
	b.SetLocal(State{ConfigDigest: "d2"})
	a.events.waitFor(t, "drift on vs1", 10*time.Second, kindIs(Drift, "vs2"))
	port := b.tr.GetAutoBindPort()
	b.Close()
	a.events.waitFor(t, "vs1 to see vs2 gone", 15*time.Second, kindIs(PeerLeave, "vs2"))
	if d := a.Drift(); len(d) != 1 {
		t.Fatalf("drift report of the dead peer dropped: %+v", d)
	}

	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"}, BindPort: port, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatalf("rebind port %d: %v", port, err)
	}
	b2 := newNode(t, spec{name: "vs2", site: "www", key: testKey, timings: testTimings()},
		&cutTransport{NetTransport: nt}, []netip.AddrPort{a.LocalAddr()})
	b2.SetLocal(State{ConfigDigest: "d1"})
	if err := b2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.events.waitFor(t, "drift cleared on vs1", 15*time.Second, kindIs(DriftCleared, "vs2"))
	if n := b2.events.count(kindIs(Drift, "")); n != 0 {
		t.Fatalf("restarted vs2 raised drift %d times", n)
	}
}

func TestIPv6(t *testing.T) {
	lo := netip.MustParseAddr("::1")
	if l, err := net.ListenUDP("udp6", &net.UDPAddr{IP: lo.AsSlice()}); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		l.Close()
	}
	key := writeKey(t, testKey)
	var chans []*Channel
	mk := func(name string, peers []netip.AddrPort) *Channel {
		ch, err := New(Config{Site: "www", NodeName: name, BindAddr: lo, Peers: peers, KeyFile: key,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ch.Close() })
		chans = append(chans, ch)
		return ch
	}
	a := mk("vs1", nil)
	b := mk("vs2", []netip.AddrPort{a.LocalAddr()})
	got := make(chan netip.Addr, 1)
	a.Messenger("vrrp").SetHandler(func(from netip.Addr, _ []byte) { got <- from })
	for _, c := range chans {
		c.Start(t.Context())
	}
	waitUntil(t, "IPv6 pair joined", 15*time.Second, func() bool {
		p := a.Peers()
		return len(p) == 1 && p[0].Alive && p[0].Addr == b.LocalAddr()
	})
	b.Messenger("vrrp").Broadcast([]byte("x"))
	select {
	case from := <-got:
		if from != lo {
			t.Fatalf("from %v", from)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message over IPv6")
	}
}

// TestPushPullRelaysState checks the anti-entropy path on its own: a
// push/pull carries every record a node knows, a record about the
// receiver itself is ignored, and an older record never replaces a newer.
func TestPushPullRelaysState(t *testing.T) {
	a, b := pair(t)
	// vs2 learned of a third director, vs3, whom vs1 cannot reach.
	vs3 := stateRecord{Node: "vs3", Epoch: 1, Version: 5, State: State{Name: "vs3", ConfigDigest: "d3"}}
	fake := stateRecord{Node: "vs1", Epoch: 1 << 62, Version: 1, State: State{Name: "vs1", ConfigDigest: "forged"}}
	body, _ := encodeStateFrame(Peer{Name: "vs3"}, []stateRecord{vs3, fake})
	(*mlDelegate)(b.Channel).MergeRemoteState(body, false)
	(*mlDelegate)(a.Channel).MergeRemoteState((*mlDelegate)(b.Channel).LocalState(false), false)
	p, ok := peerView(a, "vs3")
	if !ok || p.State.ConfigDigest != "d3" || p.Alive {
		t.Fatalf("vs1's view of vs3 = %+v, %v", p, ok)
	}
	if a.Local().ConfigDigest == "forged" || b.Local().ConfigDigest == "forged" {
		t.Fatal("a record about a node replaced its own state")
	}
	old := vs3
	old.Version, old.State.ConfigDigest = 4, "older"
	body, _ = encodeStateFrame(Peer{Name: "vs3"}, []stateRecord{old})
	(*mlDelegate)(a.Channel).MergeRemoteState(body, false)
	if p, _ := peerView(a, "vs3"); p.State.ConfigDigest != "d3" {
		t.Fatalf("older record won: %+v", p)
	}
	before := a.Stats().MalformedFrames
	(*mlDelegate)(a.Channel).MergeRemoteState([]byte("junk"), false)
	if a.Stats().MalformedFrames != before+1 {
		t.Fatal("malformed push/pull state not counted")
	}
}

// TestKeyRotation: a director that sends with the new key and still
// accepts the old one talks with one that does the reverse, so a key is
// rotated one director at a time without a split.
func TestKeyRotation(t *testing.T) {
	const oldKey, newKey = testKey, "the new passphrase of the www site"
	ns := startCluster(t,
		spec{name: "vs1", site: "www", key: oldKey, extraKeys: []string{newKey}, timings: testTimings()},
		spec{name: "vs2", site: "www", key: newKey, extraKeys: []string{oldKey}, timings: testTimings()})
	waitJoined(t, ns...)
	got := make(chan struct{}, 2)
	ns[0].Handle("t", func(Peer, []byte) { got <- struct{}{} })
	ns[1].Handle("t", func(Peer, []byte) { got <- struct{}{} })
	ns[0].Broadcast("t", nil)
	ns[1].Broadcast("t", nil)
	for range 2 {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("message lost between rotating directors")
		}
	}
	if s := ns[0].Stats(); s.AuthFailures != 0 {
		t.Fatalf("authentication failures during rotation: %+v", s)
	}
}
