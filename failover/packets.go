package failover

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// packetSender sends gratuitous ARP and unsolicited NA on real sockets,
// one of each kind per interface, opened on first use in ns. It is used
// with the Announcer's lock held, so it needs none of its own.
type packetSender struct {
	ns  *netns.NsHandle
	arp map[string]*arp.Client
	ndp map[string]*ndpConn
}

type ndpConn struct {
	c  *ndp.Conn
	hw net.HardwareAddr
}

func newPacketSender(ns *netns.NsHandle) *packetSender {
	return &packetSender{ns: ns, arp: map[string]*arp.Client{}, ndp: map[string]*ndpConn{}}
}

func (s *packetSender) announce(ifname string, addr netip.Addr, router bool) (int, error) {
	if addr.Is4() {
		return s.garp(ifname, addr)
	}
	return s.unsolicitedNA(ifname, addr, router)
}

// garp sends an ARP request and an ARP reply, both with sender and
// target address the VIP and target hardware address broadcast: some
// hosts and switches only learn from one of the two (MetalLB, kube-vip).
func (s *packetSender) garp(ifname string, vip netip.Addr) (int, error) {
	c, err := s.arpClient(ifname)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		p, err := arp.NewPacket(op, c.HardwareAddr(), vip, ethernet.Broadcast, vip)
		if err == nil {
			err = c.WriteTo(p, ethernet.Broadcast)
		}
		if err != nil {
			s.closeARP(ifname) // reopen next round: the interface may be new
			return sent, fmt.Errorf("gratuitous ARP %s for %s on %s: %w", op, vip, ifname, err)
		}
		sent++
	}
	return sent, nil
}

func (s *packetSender) arpClient(ifname string) (*arp.Client, error) {
	if c := s.arp[ifname]; c != nil {
		return c, nil
	}
	var c *arp.Client
	err := inNetns(s.ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		if len(ifi.HardwareAddr) != 6 {
			return fmt.Errorf("interface %s has no Ethernet address", ifname)
		}
		// Bound to ETH_P_RARP like keepalived: a send-only socket that
		// never queues the ARP traffic of the segment.
		pc, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_RARP, nil)
		if err != nil {
			return err
		}
		c, err = arp.New(ifi, pc)
		if err != nil {
			pc.Close()
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open ARP socket on %s: %w", ifname, err)
	}
	s.arp[ifname] = c
	return c, nil
}

func (s *packetSender) closeARP(ifname string) {
	if c := s.arp[ifname]; c != nil {
		c.Close()
		delete(s.arp, ifname)
	}
}

// unsolicitedNA sends a neighbour advertisement for the VIP to all nodes
// with Override set and Solicited clear (RFC 4861 7.2.6).
func (s *packetSender) unsolicitedNA(ifname string, vip netip.Addr, router bool) (int, error) {
	c, err := s.ndpConn(ifname, vip)
	if err != nil {
		return 0, err
	}
	m := &ndp.NeighborAdvertisement{
		Router:        router,
		Override:      true,
		TargetAddress: vip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: c.hw}},
	}
	if err := c.c.WriteTo(m, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		s.closeNDP(ifname)
		return 0, fmt.Errorf("unsolicited NA for %s on %s: %w", vip, ifname, err)
	}
	return 1, nil
}

func (s *packetSender) ndpConn(ifname string, vip netip.Addr) (*ndpConn, error) {
	if c := s.ndp[ifname]; c != nil {
		return c, nil
	}
	var nc *ndpConn
	err := inNetns(s.ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		if len(ifi.HardwareAddr) != 6 {
			return fmt.Errorf("interface %s has no Ethernet address", ifname)
		}
		// From the link-local address, as routers and MetalLB do. Right
		// after link-up it is still tentative and cannot be bound; the
		// VIP itself (added without DAD) is then a valid source too.
		c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err != nil {
			var err2 error
			c, _, err2 = ndp.Listen(ifi, ndp.Addr(vip.String()))
			if err2 != nil {
				return errors.Join(err, err2)
			}
		}
		// Send-only: filter out every ICMPv6 type so nothing queues.
		var f ipv6.ICMPFilter
		f.SetAll(true)
		if err := c.SetICMPFilter(&f); err != nil {
			c.Close()
			return err
		}
		nc = &ndpConn{c: c, hw: ifi.HardwareAddr}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open NDP socket on %s: %w", ifname, err)
	}
	s.ndp[ifname] = nc
	return nc, nil
}

func (s *packetSender) closeNDP(ifname string) {
	if c := s.ndp[ifname]; c != nil {
		c.c.Close()
		delete(s.ndp, ifname)
	}
}

func (s *packetSender) close() {
	for name := range s.arp {
		s.closeARP(name)
	}
	for name := range s.ndp {
		s.closeNDP(name)
	}
}
