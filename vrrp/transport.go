package vrrp

import "net/netip"

// Packet is one received VRRP message (without IP header) with what the
// transport learnt about it.
type Packet struct {
	Payload []byte
	Src     netip.Addr // sender's address (its primary address)
	Dst     netip.Addr // group or our unicast address: feeds the v3 checksum
	TTL     int        // IPv4 TTL or IPv6 hop limit; -1 when the transport has none
}

// Transport carries the adverts of one instance.
//
// Send must not block for long (it is called from the election's timers).
// The handler set by SetHandler is called from the transport's own
// goroutine, one packet at a time; a transport drops packets from other
// interfaces and its own looped-back packets before calling it.
type Transport interface {
	Send(a Advert) error
	SetHandler(h func(Packet))
	// LocalAddr is the primary address adverts are sent from (IPv6: the
	// interface's link-local address). It breaks priority ties.
	LocalAddr() netip.Addr
	Close() error
}
