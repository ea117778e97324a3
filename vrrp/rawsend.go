package vrrp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// rawSender sends adverts with one sendmsg(2) each, made with RawSyscall on
// the transport's socket, from packets marshalled once per advert content.
//
// Why: a master sends 10 to 100 adverts a second for as long as it runs.
// Through the net package each one allocates its control message and
// address, and each syscall.Syscall wakes the runtime's sysmon thread
// from its deep sleep (entersyscall), which then polls for a while; that
// doubled what an idle master cost. sendmsg on this non-blocking raw
// socket never sleeps, so the raw form is safe.
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
}

func newRawSender(c net.PacketConn, v6 bool, ifindex int, src netip.Addr) (*rawSender, error) {
	sc, ok := c.(*net.IPConn)
	if !ok {
		return nil, fmt.Errorf("vrrp transport: unexpected socket type %T", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("vrrp transport: socket descriptor: %w", err)
	}
	s := &rawSender{fd: -1, v6: v6, ifi: ifindex, src: src}
	if err := raw.Control(func(fd uintptr) { s.fd = int(fd) }); err != nil {
		return nil, fmt.Errorf("vrrp transport: socket descriptor: %w", err)
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
		s.msg = unix.Msghdr{Iov: &s.iov, Iovlen: 1, Control: &s.cmsg[0]}
		s.msg.SetControllen(len(s.cmsg))
		if s.v6 {
			s.msg.Name, s.msg.Namelen = (*byte)(unsafe.Pointer(&s.names[i])), unix.SizeofSockaddrInet6
		} else {
			s.msg.Name, s.msg.Namelen = (*byte)(unsafe.Pointer(&s.names4[i])), unix.SizeofSockaddrInet4
		}
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

// close forgets the descriptor; the caller closes the socket after it.
func (s *rawSender) close() {
	s.mu.Lock()
	s.fd = -1
	s.mu.Unlock()
}
