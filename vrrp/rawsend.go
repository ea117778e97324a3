package vrrp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/vigil-lb/vigil/internal/pacer"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// rawSender sends adverts with one sendmsg(2) each, made with RawSyscall on
// a send-only socket of its own, from packets marshalled once per advert
// content.
//
// Why: a master sends 10 to 100 adverts a second for as long as it runs.
// Through the net package each one allocates its control message and
// address, and each syscall.Syscall wakes the runtime's sysmon thread
// from its deep sleep (entersyscall), which then polls for a while; that
// doubled what an idle master cost. sendmsg on a non-blocking raw socket
// never sleeps, so the raw form is safe. The socket is not the reader's:
// the runtime's netpoller watches that one edge-triggered for writing as
// well, and every send made it writable again, so each advert woke the
// netpoller a second time for nothing. This one is never in the netpoller,
// and a filter drops everything it would receive.
type rawSender struct {
	mu     sync.Mutex // held by a send and by close: no send on a closed fd
	fd     int        // -1 once closed
	v6     bool
	ifi    int
	src    netip.Addr
	cmsg   []byte // IP_PKTINFO / IPV6_PKTINFO: source address and interface
	last   Advert // content of pkts
	dsts   []netip.Addr
	pkts   [][]byte
	names  []unix.RawSockaddrInet6 // v6 destinations
	names4 []unix.RawSockaddrInet4 // v4 destinations
	// The syscall's arguments live here, on the heap, which does not
	// move: a uintptr to a stack value could go stale if the stack grew.
	msg unix.Msghdr
	iov unix.Iovec
	// pacer sends a master's periodic adverts from a thread of its own
	// (nil without cgo); it uses fd, so it is closed first.
	pacer *pacer.Pacer
}

func newRawSender(v6 bool, ifindex int, src netip.Addr) (*rawSender, error) {
	fd, err := openSendSocket(v6, ifindex)
	if err != nil {
		return nil, fmt.Errorf("vrrp transport: send socket: %w", err)
	}
	s := &rawSender{fd: fd, v6: v6, ifi: ifindex, src: src}
	if pacer.Available() {
		if s.pacer, err = pacer.New(fd); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("vrrp transport: %w", err)
		}
	}
	if v6 {
		s.cmsg = (&ipv6.ControlMessage{Src: src.AsSlice(), IfIndex: ifindex}).Marshal()
	} else {
		s.cmsg = (&ipv4.ControlMessage{Src: src.AsSlice(), IfIndex: ifindex}).Marshal()
	}
	return s, nil
}

// sameAdvert says whether a and b marshal to the same bytes.
func sameAdvert(a, b Advert) bool {
	return a.Version == b.Version && a.VRID == b.VRID && a.Priority == b.Priority &&
		a.Interval == b.Interval && a.AuthType == b.AuthType && a.AuthData == b.AuthData &&
		slices.Equal(a.Addrs, b.Addrs)
}

// prepare marshals a for every destination unless the cached packets
// already carry it.
func (s *rawSender) prepare(a Advert, dsts []netip.Addr) error {
	if s.pkts != nil && sameAdvert(a, s.last) && slices.Equal(dsts, s.dsts) {
		return nil
	}
	s.pkts, s.names, s.names4 = nil, nil, nil
	for _, d := range dsts {
		b, err := a.Marshal(s.src, d)
		if err != nil {
			return err
		}
		s.pkts = append(s.pkts, b)
		if s.v6 {
			n := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: d.As16()}
			if d.IsLinkLocalUnicast() || d.IsLinkLocalMulticast() {
				n.Scope_id = uint32(s.ifi)
			}
			s.names = append(s.names, n)
		} else {
			s.names4 = append(s.names4, unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: d.As4()})
		}
	}
	s.last = a
	s.last.Addrs = slices.Clone(a.Addrs)
	s.dsts = slices.Clone(dsts)
	return nil
}

// name is the raw socket address of destination i, in the heap memory of
// the cached names (it stays put for the syscall).
func (s *rawSender) name(i int) []byte {
	if s.v6 {
		return unsafe.Slice((*byte)(unsafe.Pointer(&s.names[i])), unix.SizeofSockaddrInet6)
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s.names4[i])), unix.SizeofSockaddrInet4)
}

// send sends a to every destination (already without our own address).
func (s *rawSender) send(a Advert, dsts []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return net.ErrClosed
	}
	if err := s.prepare(a, dsts); err != nil {
		return err
	}
	var errs []error
	for i, d := range s.dsts {
		s.iov = unix.Iovec{Base: &s.pkts[i][0]}
		s.iov.SetLen(len(s.pkts[i]))
		name := s.name(i)
		s.msg = unix.Msghdr{Iov: &s.iov, Iovlen: 1, Control: &s.cmsg[0], Name: &name[0], Namelen: uint32(len(name))}
		s.msg.SetControllen(len(s.cmsg))
		var errno unix.Errno
		for {
			_, _, errno = unix.RawSyscall(unix.SYS_SENDMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msg)), 0)
			if errno != unix.EINTR {
				break
			}
		}
		runtime.KeepAlive(s)
		if errno != 0 {
			errs = append(errs, fmt.Errorf("to %s: sendmsg: %w", d, errno))
		}
	}
	return errors.Join(errs...)
}

// pace hands a to the pacer: sent to every destination each interval,
// the first one an interval from now, until unpace or until lease
// passes without a renewal.
func (s *rawSender) pace(a Advert, dsts []netip.Addr, interval, lease time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.fd < 0:
		return net.ErrClosed
	case s.pacer == nil:
		return pacer.ErrUnavailable
	}
	if err := s.prepare(a, dsts); err != nil {
		return err
	}
	sch := pacer.Schedule{Control: s.cmsg, Interval: interval, First: interval, Lease: lease}
	for i := range s.pkts {
		sch.Datagrams = append(sch.Datagrams, pacer.Datagram{Name: s.name(i), Payload: s.pkts[i]})
	}
	return s.pacer.Start(sch)
}

// close stops the pacer and closes the socket; a send after it returns
// net.ErrClosed.
func (s *rawSender) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pacer != nil {
		s.pacer.Close()
	}
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

// openSendSocket opens a non-blocking raw VRRP socket for sending only:
// TTL / hop limit 255 (RFC 9568 5.1.1.3), no multicast loopback, the
// interface for multicast, the kernel computing the IPv6 checksum, and a
// filter that drops every packet the kernel would queue to it.
func openSendSocket(v6 bool, ifindex int) (fd int, err error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err = unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, IPProto)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	set := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	var steps []error
	if v6 {
		steps = append(steps,
			set("IPV6_CHECKSUM", unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, 6)),
			set("IPV6_UNICAST_HOPS", unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, TTL)),
			set("IPV6_MULTICAST_HOPS", unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, TTL)),
			set("IPV6_MULTICAST_IF", unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex)),
			set("IPV6_MULTICAST_LOOP", unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0)))
	} else {
		steps = append(steps,
			set("IP_TTL", unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, TTL)),
			set("IP_MULTICAST_TTL", unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, TTL)),
			set("IP_MULTICAST_IF", unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifindex)})),
			set("IP_MULTICAST_LOOP", unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0)))
	}
	dropAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	steps = append(steps, set("SO_ATTACH_FILTER", unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]})))
	if err := errors.Join(steps...); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
