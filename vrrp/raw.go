package vrrp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vigil-lb/vigil/internal/nsrun"
	"github.com/vigil-lb/vigil/internal/pacer"
	"github.com/vishvananda/netns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// RawConfig says where a RawTransport sends and listens.
type RawConfig struct {
	// Interface carries the adverts (and should carry the VIPs).
	Interface string
	// Source is the primary address adverts are sent from. IPv4: an address
	// of Interface. IPv6: leave it unset (set IPv6) to use the interface's
	// link-local address, as RFC 5798 requires.
	Source netip.Addr
	IPv6   bool
	// Peers switches to unicast: one copy of each advert to every peer
	// (our own address, if listed, is skipped), and only packets from a
	// peer are accepted; their TTL is not checked, as peers may be routed.
	// Empty means multicast to 224.0.0.18 / ff02::12.
	Peers []netip.Addr
	// Netns, when open, is the network namespace to create the socket in
	// (it stays there); by default the calling thread's.
	Netns netns.NsHandle
	// PacerRTPriority, 1..99, runs the advert pacer's thread at that
	// SCHED_RR priority, as keepalived's vrrp_rt_priority does its VRRP
	// process: a busy machine then delays a paced advert by little (see
	// docs/pacer.md). 0 leaves it in the normal class. NewRawTransport
	// fails when the priority cannot be had (no CAP_SYS_NICE) or there is
	// no pacer (a build without cgo).
	PacerRTPriority int
	Logger          *slog.Logger
}

// RawTransport sends and receives adverts on a raw IP protocol 112 socket.
// Create it inside the network namespace it must live in (the socket stays
// there); it needs CAP_NET_RAW.
type RawTransport struct {
	cfg     RawConfig
	ifi     *net.Interface
	src     netip.Addr
	log     *slog.Logger
	p4      *ipv4.PacketConn
	p6      *ipv6.PacketConn
	sender  *rawSender
	sendTo  []netip.Addr // destinations of our adverts, never our own address
	handler atomic.Pointer[func(Packet)]
	closed  atomic.Bool
	wg      sync.WaitGroup
	// Ignored counts received packets the transport filtered (other
	// interface, not a peer, our own).
	Ignored atomic.Uint64
}

// NewRawTransport opens the socket, joins the group (multicast) and starts
// reading.
func NewRawTransport(cfg RawConfig) (*RawTransport, error) {
	if !cfg.Netns.IsOpen() {
		return newRawTransport(cfg)
	}
	var (
		t   *RawTransport
		err error
	)
	nerr := nsrun.Do(cfg.Netns, func() error { t, err = newRawTransport(cfg); return err })
	switch {
	case err != nil:
		return nil, err
	case t == nil:
		return nil, fmt.Errorf("vrrp transport: %w", nerr) // could not enter the namespace
	}
	// A failure to switch the thread back after the socket was made does
	// not affect the transport (that thread is discarded).
	return t, nil
}

func newRawTransport(cfg RawConfig) (*RawTransport, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("vrrp transport: interface %q: %w", cfg.Interface, err)
	}
	t := &RawTransport{cfg: cfg, ifi: ifi, log: cfg.Logger.With("interface", cfg.Interface)}
	v6 := cfg.IPv6 || (cfg.Source.IsValid() && cfg.Source.Is6() && !cfg.Source.Is4In6())
	t.src = cfg.Source.Unmap()
	if v6 && !t.src.IsValid() {
		if t.src, err = linkLocal(ifi); err != nil {
			return nil, err
		}
	}
	if !t.src.IsValid() {
		return nil, errors.New("vrrp transport: an IPv4 source address is required")
	}
	for _, p := range cfg.Peers {
		if p.Unmap().Is4() == v6 {
			return nil, fmt.Errorf("vrrp transport: peer %s is not of the family of %s", p, t.src)
		}
	}
	if v6 {
		err = t.open6()
	} else {
		err = t.open4()
	}
	if err != nil {
		return nil, fmt.Errorf("vrrp transport on %s: %w", cfg.Interface, err)
	}
	if t.sender, err = newRawSender(v6, ifi.Index, t.src); err != nil {
		t.closeReader()
		return nil, err
	}
	if err := t.pacerRealtime(cfg.PacerRTPriority); err != nil {
		t.sender.close()
		t.closeReader()
		return nil, err
	}
	for _, d := range t.dests() {
		if d = d.Unmap(); d != t.src {
			t.sendTo = append(t.sendTo, d)
		}
	}
	t.wg.Add(1)
	go t.readLoop()
	return t, nil
}

func linkLocal(ifi *net.Interface) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vrrp transport: addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Is6() && ip.IsLinkLocalUnicast() {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("vrrp transport: %s has no IPv6 link-local address", ifi.Name)
}

func (t *RawTransport) multicast() bool { return len(t.cfg.Peers) == 0 }

func (t *RawTransport) open4() error {
	c, err := net.ListenPacket("ip4:112", "0.0.0.0")
	if err != nil {
		return err
	}
	// This socket only reads: the TTL, multicast interface and loopback
	// settings are the send socket's (openSendSocket).
	p := ipv4.NewPacketConn(c)
	steps := []error{p.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true)}
	if t.multicast() {
		steps = append(steps, p.JoinGroup(t.ifi, &net.IPAddr{IP: Group4.AsSlice()}))
	}
	if err := errors.Join(steps...); err != nil {
		c.Close()
		return err
	}
	t.p4 = p
	return nil
}

func (t *RawTransport) open6() error {
	c, err := net.ListenPacket("ip6:112", "::")
	if err != nil {
		return err
	}
	// This socket only reads (see open4).
	p := ipv6.NewPacketConn(c)
	steps := []error{
		// The kernel verifies the checksum on receive.
		p.SetChecksum(true, 6),
		p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true),
	}
	if t.multicast() {
		steps = append(steps, p.JoinGroup(t.ifi, &net.IPAddr{IP: Group6.AsSlice()}))
	}
	if err := errors.Join(steps...); err != nil {
		c.Close()
		return err
	}
	t.p6 = p
	return nil
}

// LocalAddr is the source of our adverts.
func (t *RawTransport) LocalAddr() netip.Addr { return t.src }

// SetHandler sets the receiver of packets.
func (t *RawTransport) SetHandler(h func(Packet)) { t.handler.Store(&h) }

func (t *RawTransport) dests() []netip.Addr {
	if t.multicast() {
		if t.p6 != nil {
			return []netip.Addr{Group6}
		}
		return []netip.Addr{Group4}
	}
	return t.cfg.Peers
}

// Send sends a to each destination from the primary address (see
// rawSender for how).
func (t *RawTransport) Send(a Advert) error { return t.sender.send(a, t.sendTo) }

// pacerRealtime sets the pacer thread's SCHED_RR priority (0: off).
func (t *RawTransport) pacerRealtime(prio int) error {
	switch {
	case prio == 0:
		return nil
	case t.sender.pacer == nil:
		return fmt.Errorf("vrrp transport: pacer real-time priority %d: %w", prio, pacer.ErrUnavailable)
	}
	if err := t.sender.pacer.SetRealtime(pacer.RR, prio); err != nil {
		return fmt.Errorf("vrrp transport: %w", err)
	}
	return nil
}

// Pace hands a master's periodic adverts to a thread outside the Go
// runtime (internal/pacer): a is sent every interval, the first an
// interval from now, until Unpace, a new Pace, or lease without Renew. It
// returns pacer.ErrUnavailable in a build without cgo.
func (t *RawTransport) Pace(a Advert, interval, lease time.Duration) error {
	return t.sender.pace(a, t.sendTo, interval, lease)
}

// Renew extends the pacing lease; false means the pacer is not sending.
func (t *RawTransport) Renew(lease time.Duration) bool {
	return t.sender.pacer != nil && t.sender.pacer.Renew(lease)
}

// Unpace stops the paced adverts; when it returns none will leave.
func (t *RawTransport) Unpace() {
	if t.sender.pacer != nil {
		t.sender.pacer.Stop()
	}
}

// PacedStats counts the adverts the pacer sent and failed to send.
func (t *RawTransport) PacedStats() pacer.Stats {
	if t.sender.pacer == nil {
		return pacer.Stats{}
	}
	return t.sender.pacer.Stats()
}

func (t *RawTransport) readLoop() {
	defer t.wg.Done()
	buf := make([]byte, 2048)
	for {
		var (
			n       int
			src     net.Addr
			err     error
			ifindex int
			ttl     = -1
			dst     netip.Addr
		)
		if t.p6 != nil {
			var cm *ipv6.ControlMessage
			n, cm, src, err = t.p6.ReadFrom(buf)
			if cm != nil {
				ifindex, ttl = cm.IfIndex, cm.HopLimit
				dst, _ = netip.AddrFromSlice(cm.Dst)
			}
		} else {
			var cm *ipv4.ControlMessage
			n, cm, src, err = t.p4.ReadFrom(buf)
			if cm != nil {
				ifindex, ttl = cm.IfIndex, cm.TTL
				dst, _ = netip.AddrFromSlice(cm.Dst)
			}
		}
		if err != nil {
			if t.closed.Load() {
				return
			}
			// ICMP protocol-unreachable from a peer whose daemon is down.
			if errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EPROTO) || errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			t.log.Warn("vrrp read", "error", err)
			continue
		}
		ia, ok := src.(*net.IPAddr)
		if !ok {
			continue
		}
		from, _ := netip.AddrFromSlice(ia.IP)
		from = from.Unmap()
		if ifindex != t.ifi.Index || from == t.src || !dst.IsValid() ||
			(!t.multicast() && !slices.ContainsFunc(t.cfg.Peers, func(p netip.Addr) bool { return p.Unmap() == from })) {
			t.Ignored.Add(1)
			continue
		}
		h := t.handler.Load()
		if h == nil {
			continue
		}
		if !t.multicast() {
			// Unicast peers may sit behind a router: like keepalived, do
			// not insist on TTL 255 (we still send with 255).
			ttl = -1
		}
		(*h)(Packet{Payload: append([]byte(nil), buf[:n]...), Src: from, Dst: dst.Unmap(), TTL: ttl})
	}
}

// Close closes the socket and waits for the reader to finish.
func (t *RawTransport) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	t.sender.close()
	err := t.closeReader()
	t.wg.Wait()
	return err
}

func (t *RawTransport) closeReader() error {
	if t.p6 != nil {
		return t.p6.Close()
	}
	return t.p4.Close()
}
