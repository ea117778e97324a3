package cluster

import (
	"errors"
	"fmt"
	"net/netip"
)

// MaxPayload is the largest topic payload Broadcast sends: what fits in
// memberlist's 1400-byte UDP buffer with its framing, the label, the
// encryption overhead and our header, with some margin.
const MaxPayload = 1024

// Broadcast sends payload on topic to every other director, best effort
// over UDP (memberlist's SendBestEffort): to every member that is alive or
// suspect, and also to every configured peer that is not a member right
// now, so that an advert crosses a healed partition before membership
// has recovered (the message is authenticated like any other). A peer that
// cannot be reached is not retried; errors from individual sends are
// joined and returned, the others are still sent.
func (c *Channel) Broadcast(topic string, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("cluster broadcast on %q: payload of %d bytes exceeds %d", topic, len(payload), MaxPayload)
	}
	b, err := frame{Kind: kindTopic, From: c.self, Topic: topic, Epoch: uint64(c.epoch), Seq: c.seq.Add(1), Payload: payload}.MarshalBinary()
	if err != nil {
		return fmt.Errorf("cluster broadcast: %w", err)
	}
	var errs []error
	reached := map[netip.AddrPort]bool{c.selfAP: true}
	for _, n := range c.ml.Members() {
		if n.Name == c.cfg.NodeName {
			continue
		}
		if ap, ok := nodeAddrPort(n); ok {
			reached[ap] = true
		}
		if err := c.ml.SendBestEffort(n, b); err != nil {
			c.sendErrors.Add(1)
			errs = append(errs, fmt.Errorf("send %q to %s: %w", topic, n.Name, err))
			continue
		}
		c.sent.Add(1)
	}
	for _, p := range c.cfg.Peers {
		if reached[p] {
			continue
		}
		reached[p] = true
		if err := c.ml.SendToAddress(memberlistAddress(p), b); err != nil {
			c.sendErrors.Add(1)
			errs = append(errs, fmt.Errorf("send %q to %s: %w", topic, p, err))
			continue
		}
		c.sent.Add(1)
	}
	return errors.Join(errs...)
}

// Handle sets the function that receives messages on topic (nil removes
// it). Handlers run one at a time on one goroutine owned by the channel,
// in arrival order; payload is the handler's own copy. A panicking handler
// is logged and counted.
func (c *Channel) Handle(topic string, fn func(from Peer, payload []byte)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fn == nil {
		delete(c.handlers, topic)
		return
	}
	c.handlers[topic] = fn
}

// Messenger carries one topic with the method set the election's gossip
// transport expects (vrrp.Messenger):
//
//	Broadcast(payload []byte) error
//	SetHandler(func(from netip.Addr, payload []byte))
type Messenger struct {
	c     *Channel
	topic string
}

// Messenger returns the adapter for topic, for example "vrrp/www".
func (c *Channel) Messenger(topic string) *Messenger { return &Messenger{c: c, topic: topic} }

// Broadcast sends payload to every other director (see Channel.Broadcast).
func (m *Messenger) Broadcast(payload []byte) error { return m.c.Broadcast(m.topic, payload) }

// SetHandler receives the topic's messages with the sender's director
// address; nil stops receiving.
func (m *Messenger) SetHandler(fn func(from netip.Addr, payload []byte)) {
	if fn == nil {
		m.c.Handle(m.topic, nil)
		return
	}
	m.c.Handle(m.topic, func(p Peer, b []byte) { fn(p.Addr, b) })
}
