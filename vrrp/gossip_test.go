package vrrp

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// hub is an in-memory cluster channel.
type hub struct {
	mu    sync.Mutex
	nodes []*hubNode
}

type hubNode struct {
	h    *hub
	addr netip.Addr
	mu   sync.Mutex
	f    func(netip.Addr, []byte)
	down bool
}

func (h *hub) node(addr string) *hubNode {
	n := &hubNode{h: h, addr: netip.MustParseAddr(addr)}
	h.mu.Lock()
	h.nodes = append(h.nodes, n)
	h.mu.Unlock()
	return n
}

func (n *hubNode) SetHandler(f func(netip.Addr, []byte)) { n.mu.Lock(); n.f = f; n.mu.Unlock() }
func (n *hubNode) Broadcast(p []byte) error {
	n.h.mu.Lock()
	nodes := append([]*hubNode(nil), n.h.nodes...)
	n.h.mu.Unlock()
	for _, o := range nodes {
		o.mu.Lock()
		f, down := o.f, o.down || n.down
		o.mu.Unlock()
		if o != n && f != nil && !down {
			f(n.addr, append([]byte(nil), p...))
		}
	}
	return nil
}

func TestGossipElection(t *testing.T) {
	clk := newFakeClock()
	h := &hub{}
	n1, n2 := h.node("10.99.0.1"), h.node("10.99.0.2")
	d1, d2 := NewGossipDemux(n1), NewGossipDemux(n2)
	mk := func(d *GossipDemux, addr string, vrid, prio uint8) *rig {
		tr, err := d.Transport(vrid, netip.MustParseAddr(addr))
		if err != nil {
			t.Fatal(err)
		}
		return startRig(t, Config{VRID: vrid, Priority: prio, Interval: 100 * time.Millisecond}, clk, nil, tr)
	}
	// Two instances per node, opposite winners: the VRID tag keeps them apart.
	a51, a52 := mk(d1, "10.99.0.1", 51, 200), mk(d1, "10.99.0.1", 52, 100)
	b51, b52 := mk(d2, "10.99.0.2", 51, 100), mk(d2, "10.99.0.2", 52, 200)
	if _, err := d1.Transport(51, netip.MustParseAddr("10.99.0.1")); err == nil {
		t.Fatal("second transport for one VRID")
	}
	clk.Advance(time.Second)
	a51.want(Master)
	b51.want(Backup)
	a52.want(Backup)
	b52.want(Master)
	if a51.in.Status().Counters.AdvertsReceived != 0 || b51.in.Status().Counters.AdvertsReceived == 0 {
		t.Fatal("adverts went to the wrong instance")
	}
	if a51.in.Status().Counters.Dropped[DropVRID] != 0 {
		t.Fatal("demux delivered another VRID")
	}
	a51.in.Stop(context.Background())
	clk.Advance(100 * time.Millisecond)
	b51.want(Master)

	// Junk on the channel is ignored and counted.
	n1.Broadcast([]byte("hello"))
	n1.Broadcast([]byte{gossipTag, 51, 4, 10, 99})
	if d2.Ignored.Load() != 2 {
		t.Fatalf("ignored %d", d2.Ignored.Load())
	}
}
