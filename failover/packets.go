package failover

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// packetSender sends gratuitous ARP and unsolicited NA on real sockets,
// one of each kind per interface, opened in ns by prepare when the
// Announcer is made (or, failing that, on first use) and kept until close:
// a takeover must not need a new file descriptor, which a process short
// of them would not get, and closing a packet socket waits for an RCU
// grace period (~10 ms that would delay every transition to backup). They
// receive nothing. It is used with the Announcer's lock held, so it needs
// no lock of its own.
type packetSender struct {
	ns  *netns.NsHandle
	arp map[string]*arp.Client
	ndp map[string]*ndpConn
}

type ndpConn struct {
	fd    int // raw ICMPv6 socket in the namespace
	index int // interface index in that namespace
	hw    net.HardwareAddr
}

// writeTimeout bounds one ARP write.
const writeTimeout = 100 * time.Millisecond

// dropAll is a socket filter that accepts no packet.
var dropAll = func() []bpf.RawInstruction {
	raw, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		panic(err) // a constant program
	}
	return raw
}()

func newPacketSender(ns *netns.NsHandle) *packetSender {
	return &packetSender{ns: ns, arp: map[string]*arp.Client{}, ndp: map[string]*ndpConn{}}
}

// prepare opens the socket that announcing addr on ifname needs, unless
// it is open already.
func (s *packetSender) prepare(ifname string, addr netip.Addr) error {
	var err error
	if addr.Is4() {
		_, err = s.arpClient(ifname)
	} else {
		_, err = s.ndpConn(ifname)
	}
	return err
}

func (s *packetSender) announce(ifname string, addr netip.Addr, router bool) (int, error) {
	send := func() (int, error) {
		if addr.Is4() {
			return s.garp(ifname, addr)
		}
		return s.unsolicitedNA(ifname, addr, router)
	}
	_, hadARP := s.arp[ifname]
	_, hadNDP := s.ndp[ifname]
	n, err := send()
	if err != nil && (addr.Is4() && hadARP || addr.Is6() && hadNDP) {
		// The socket was opened earlier and failed (closed now): the
		// interface may have been re-created. Once more on a fresh one.
		m, err2 := send()
		return n + m, err2
	}
	return n, err
}

// garp sends an ARP request and an ARP reply, both with sender and
// target address the VIP and target hardware address broadcast: some
// hosts and switches only learn from one of the two (MetalLB, kube-vip).
func (s *packetSender) garp(ifname string, vip netip.Addr) (int, error) {
	c, err := s.arpClient(ifname)
	if err != nil {
		return 0, err
	}
	// Never wait long for a full send buffer: the Announcer's lock is
	// held, and Stop (the move to backup) waits for it.
	if err := c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return 0, fmt.Errorf("gratuitous ARP for %s on %s: %w", vip, ifname, err)
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
		// And a filter that accepts nothing, so not even a stray RARP
		// frame sits in its receive queue.
		if err := pc.SetBPF(dropAll); err != nil {
			pc.Close()
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
	c, err := s.ndpConn(ifname)
	if err != nil {
		return 0, err
	}
	b, err := ndp.MarshalMessage(&ndp.NeighborAdvertisement{
		Router:        router,
		Override:      true,
		TargetAddress: vip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: c.hw}},
	})
	if err == nil {
		// The scope is the interface index, not its name: Go resolves
		// zone names in the namespace of whichever thread writes.
		dst := &unix.SockaddrInet6{Addr: netip.IPv6LinkLocalAllNodes().As16(), ZoneId: uint32(c.index)}
		err = unix.Sendto(c.fd, b, unix.MSG_DONTWAIT, dst)
	}
	if err != nil {
		s.closeNDP(ifname)
		return 0, fmt.Errorf("unsolicited NA for %s on %s: %w", vip, ifname, err)
	}
	return 1, nil
}

// ndpConn opens a raw ICMPv6 socket for ifname in the namespace. It is
// not bound: the kernel picks the link-local source, or, while that is
// still tentative after link-up, another usable address such as the VIP
// (added without DAD). ndp.Listen binds to the link-local address and
// would fail in that window.
func (s *packetSender) ndpConn(ifname string) (*ndpConn, error) {
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
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		// Send-only: block every ICMPv6 type so nothing ever queues.
		var blockAll unix.ICMPv6Filter
		for i := range blockAll.Data {
			blockAll.Data[i] = 0xffffffff
		}
		for _, o := range []struct {
			level, name, value int
		}{
			{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, ndp.HopLimit}, // RFC 4861: 255 or dropped
			{unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ndp.HopLimit},
			{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index},
			{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0},
		} {
			if err == nil {
				err = unix.SetsockoptInt(fd, o.level, o.name, o.value)
			}
		}
		if err == nil {
			err = unix.SetsockoptICMPv6Filter(fd, unix.IPPROTO_ICMPV6, unix.ICMPV6_FILTER, &blockAll)
		}
		if err != nil {
			unix.Close(fd)
			return err
		}
		nc = &ndpConn{fd: fd, index: ifi.Index, hw: ifi.HardwareAddr}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open ICMPv6 socket on %s: %w", ifname, err)
	}
	s.ndp[ifname] = nc
	return nc, nil
}

func (s *packetSender) closeNDP(ifname string) {
	if c := s.ndp[ifname]; c != nil {
		unix.Close(c.fd)
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
