package cluster

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// cutTransport is memberlist's NetTransport with a switch that drops
// every outgoing packet and fails every dial. Cutting both ends of a pair
// partitions it in both directions (cutting one is not enough: the other
// side's TCP fallback ping is answered over the accepted stream).
type cutTransport struct {
	*memberlist.NetTransport
	cut atomic.Bool

	mu        sync.Mutex
	recording bool
	recorded  []recordedPacket // packets written while recording
}

type recordedPacket struct {
	b  []byte
	to memberlist.Address
}

// record starts or stops keeping a copy of every packet sent.
func (t *cutTransport) record(on bool) []recordedPacket {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recording = on
	out := t.recorded
	if on {
		t.recorded = nil
	}
	return out
}

var errCut = errors.New("test partition: link cut")

func (t *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.cut.Load() {
		return time.Now(), nil
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.cut.Load() {
		return time.Now(), nil
	}
	t.mu.Lock()
	if t.recording {
		t.recorded = append(t.recorded, recordedPacket{append([]byte(nil), b...), a})
	}
	t.mu.Unlock()
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.cut.Load() {
		return nil, errCut
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

func (t *cutTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.cut.Load() {
		return nil, errCut
	}
	return t.NetTransport.DialAddressTimeout(a, timeout)
}

func newCutTransport(t testing.TB) *cutTransport {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		BindPort:  0,
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatalf("net transport: %v", err)
	}
	return &cutTransport{NetTransport: nt}
}

// writeKey writes a key file with mode 0600 and returns its path.
func writeKey(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const testKey = "0123456789abcdef0123456789abcdef" // 32 raw bytes

// eventLog collects a channel's events for assertions.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.evs...)
}

func (l *eventLog) count(pred func(Event) bool) int {
	n := 0
	for _, e := range l.all() {
		if pred(e) {
			n++
		}
	}
	return n
}

// waitFor waits until an event matching pred has been seen and returns
// the first one.
func (l *eventLog) waitFor(t testing.TB, what string, timeout time.Duration, pred func(Event) bool) Event {
	t.Helper()
	var got Event
	waitUntil(t, what, timeout, func() bool {
		for _, e := range l.all() {
			if pred(e) {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

func waitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func kindIs(k EventKind, peer string) func(Event) bool {
	return func(e Event) bool { return e.Kind == k && (peer == "" || e.Peer.Name == peer) }
}

// node is one channel in a test cluster.
type node struct {
	*Channel
	tr     *cutTransport
	events *eventLog
	logs   *logBuffer
}

// logBuffer keeps log output for assertions and shows it on failure.
type logBuffer = testenv.Buffer

// spec describes one node of a test cluster.
type spec struct {
	name, site, key string   // key: file content; "" = insecure
	extraKeys       []string // contents of ExtraKeyFiles
	timings         Timings
}

// startCluster creates the nodes, each configured with all others as
// peers, and starts them. Everything is closed by t.Cleanup.
func startCluster(t testing.TB, specs ...spec) []*node {
	t.Helper()
	trs := make([]*cutTransport, len(specs))
	addrs := make([]netip.AddrPort, len(specs))
	for i := range specs {
		trs[i] = newCutTransport(t)
		addrs[i] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(trs[i].GetAutoBindPort()))
	}
	nodes := make([]*node, len(specs))
	for i, s := range specs {
		nodes[i] = newNode(t, s, trs[i], addrs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, n := range nodes {
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// newNode creates (but does not start) one node on tr.
func newNode(t testing.TB, s spec, tr *cutTransport, peers []netip.AddrPort) *node {
	t.Helper()
	n := &node{tr: tr, events: &eventLog{}, logs: &logBuffer{}}
	cfg := Config{
		Site:      s.site,
		NodeName:  s.name,
		BindAddr:  netip.MustParseAddr("127.0.0.1"),
		Port:      tr.GetAutoBindPort(),
		Peers:     peers, // may include our own: must be ignored
		Timings:   s.timings,
		OnEvent:   n.events.add,
		Logger:    slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Transport: tr,
	}
	if s.key == "" {
		cfg.Insecure = true
	} else {
		cfg.KeyFile = writeKey(t, s.key)
	}
	for _, k := range s.extraKeys {
		cfg.ExtraKeyFiles = append(cfg.ExtraKeyFiles, writeKey(t, k))
	}
	ch, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", s.name, err)
	}
	n.Channel = ch
	t.Cleanup(func() {
		ch.Close()
		if t.Failed() {
			t.Logf("--- log of %s ---\n%s", s.name, n.logs.String())
		}
	})
	return n
}

// testTimings are the defaults with a quicker re-join so heal tests stay
// short.
func testTimings() Timings {
	t := DefaultTimings()
	t.RejoinInterval = time.Second
	return t
}

func pair(t testing.TB) (a, b *node) {
	t.Helper()
	ns := startCluster(t,
		spec{name: "vs1", site: "www", key: testKey, timings: testTimings()},
		spec{name: "vs2", site: "www", key: testKey, timings: testTimings()})
	waitJoined(t, ns...)
	return ns[0], ns[1]
}

// waitJoined waits until every node sees every other alive with a state.
func waitJoined(t testing.TB, ns ...*node) {
	t.Helper()
	waitUntil(t, "all nodes to see each other", 20*time.Second, func() bool {
		for _, n := range ns {
			alive := 0
			for _, p := range n.Peers() {
				if p.Alive && p.StateKnown {
					alive++
				}
			}
			if alive != len(ns)-1 {
				return false
			}
		}
		return true
	})
}

func peerView(n *node, name string) (PeerView, bool) {
	for _, p := range n.Peers() {
		if p.Name == name {
			return p, true
		}
	}
	return PeerView{}, false
}
