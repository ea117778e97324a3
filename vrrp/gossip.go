package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Messenger is a cluster channel that reaches every other director (the
// daemon adapts its memberlist channel to it). Broadcast must not block for
// long; the handler is called for every payload another node broadcast.
type Messenger interface {
	Broadcast(payload []byte) error
	SetHandler(func(from netip.Addr, payload []byte))
}

// gossipTag starts every advert carried over a Messenger.
const gossipTag = 'V'

// GossipDemux carries the adverts of many instances over one Messenger,
// for networks where IP protocol 112 or multicast is blocked. Each payload
// is tagged with the VRID and the sender's primary address:
//
//	'V' | VRID | address length (4 or 16) | address | VRRP message
//
// The VRRP message is the same as on the wire, its v3 checksum computed
// for the multicast group of the family.
type GossipDemux struct {
	m  Messenger
	mu sync.Mutex
	by map[gossipKey]*GossipTransport
	// Ignored counts payloads that were not adverts of a known instance.
	Ignored atomic.Uint64
}

type gossipKey struct {
	vrid uint8
	v6   bool
}

// NewGossipDemux takes over m's handler.
func NewGossipDemux(m Messenger) *GossipDemux {
	d := &GossipDemux{m: m, by: map[gossipKey]*GossipTransport{}}
	m.SetHandler(d.receive)
	return d
}

// Transport returns the transport of the instance with this VRID whose
// primary address is local. One per VRID and family.
func (d *GossipDemux) Transport(vrid uint8, local netip.Addr) (*GossipTransport, error) {
	local = local.Unmap()
	if !local.IsValid() {
		return nil, errors.New("vrrp gossip: local address required")
	}
	k := gossipKey{vrid, local.Is6()}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.by[k]; dup {
		return nil, fmt.Errorf("vrrp gossip: VRID %d already has a transport", vrid)
	}
	t := &GossipTransport{d: d, key: k, local: local}
	d.by[k] = t
	return t, nil
}

func (d *GossipDemux) receive(_ netip.Addr, p []byte) {
	if len(p) < 3 || p[0] != gossipTag || (p[2] != 4 && p[2] != 16) || len(p) < 3+int(p[2]) {
		d.Ignored.Add(1)
		return
	}
	n := int(p[2])
	src, _ := netip.AddrFromSlice(p[3 : 3+n])
	d.mu.Lock()
	t := d.by[gossipKey{p[1], n == 16}]
	d.mu.Unlock()
	if t == nil || src == t.local {
		d.Ignored.Add(1)
		return
	}
	if h := t.handler.Load(); h != nil {
		(*h)(Packet{Payload: append([]byte(nil), p[3+n:]...), Src: src, Dst: groupOf(src), TTL: -1})
	}
}

func groupOf(a netip.Addr) netip.Addr {
	if a.Is6() {
		return Group6
	}
	return Group4
}

// GossipTransport is one instance's view of a GossipDemux.
type GossipTransport struct {
	d       *GossipDemux
	key     gossipKey
	local   netip.Addr
	handler atomic.Pointer[func(Packet)]
}

func (t *GossipTransport) LocalAddr() netip.Addr     { return t.local }
func (t *GossipTransport) SetHandler(h func(Packet)) { t.handler.Store(&h) }

// Send broadcasts a to every other director.
func (t *GossipTransport) Send(a Advert) error {
	b, err := a.Marshal(t.local, groupOf(t.local))
	if err != nil {
		return err
	}
	s := t.local.AsSlice()
	p := make([]byte, 0, 3+len(s)+len(b))
	p = append(p, gossipTag, t.key.vrid, byte(len(s)))
	p = append(p, s...)
	p = append(p, b...)
	if err := t.d.m.Broadcast(p); err != nil {
		return fmt.Errorf("vrrp gossip broadcast: %w", err)
	}
	return nil
}

// Close detaches the transport from the demux.
func (t *GossipTransport) Close() error {
	t.d.mu.Lock()
	defer t.d.mu.Unlock()
	if t.d.by[t.key] == t {
		delete(t.d.by, t.key)
	}
	return nil
}
