package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// conn is a TCP connection on a raw non-blocking socket, driven by Go's
// network poller through os.File. Compared with net.Dial it skips the
// keep-alive, no-delay and address look-up system calls, and it can do
// what HAProxy's checks do: delayed ACK so the handshake's last ACK rides
// on the request (or never leaves, for a half-open TCP check), and close
// with SO_LINGER 0, which sends RST and leaves no TIME_WAIT behind.
type conn struct {
	f    *os.File
	rc   syscall.RawConn
	addr netip.AddrPort
	ctx  context.Context
	stop func() bool // undoes the context.AfterFunc, if any
}

// dial connects to addr before deadline (or until ctx ends).
func dial(ctx context.Context, addr netip.AddrPort, deadline time.Time) (*conn, error) {
	sa, family, err := sockaddr(addr)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	// Delayed ACK (pingpong mode) before connect: the kernel then holds the
	// handshake's final ACK, so it rides on the request, or is replaced by
	// our RST when a TCP check closes at once (half-open, like HAProxy).
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setsockopt TCP_QUICKACK: %w", err)
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setsockopt SO_LINGER: %w", err)
	}
	// Registered with the poller before connect, so no readiness is lost.
	f := os.NewFile(uintptr(fd), "tcp")
	c := &conn{f: f, addr: addr, ctx: ctx}
	if c.rc, err = f.SyscallConn(); err != nil {
		f.Close()
		return nil, fmt.Errorf("raw conn: %w", err)
	}
	if err := f.SetDeadline(deadline); err != nil {
		f.Close()
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	if ctx.Done() != nil {
		c.stop = context.AfterFunc(ctx, func() { f.SetDeadline(time.Unix(1, 0)) })
	}
	var cerr error
	started := false
	werr := c.rc.Write(func(fd uintptr) bool {
		if !started {
			started = true
			switch err := unix.Connect(int(fd), sa); err {
			case nil:
				return true
			case unix.EINPROGRESS:
				return false
			default:
				cerr = err
				return true
			}
		}
		// The poller may wake us spuriously: ask the kernel for the state.
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			cerr = err
			return true
		}
		switch info.State {
		case tcpSynSent:
			return false
		case tcpClose:
			n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case err != nil:
				cerr = err
			case n != 0:
				cerr = syscall.Errno(n)
			default:
				cerr = errors.New("connection closed")
			}
		}
		return true
	})
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		c.Close()
		return nil, c.explain(ctx, werr)
	}
	return c, nil
}

// Linux TCP states (include/net/tcp_states.h).
const (
	tcpSynSent = 2
	tcpClose   = 7
)

func sockaddr(ap netip.AddrPort) (unix.Sockaddr, int, error) {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, unix.AF_INET, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			return nil, 0, fmt.Errorf("zone of %s: %w", a, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa, unix.AF_INET6, nil
}

// explain turns a socket error into a short reason without Go's wrapping.
func (c *conn) explain(ctx context.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if ctx.Err() != nil {
			return errCancelled
		}
		return errTimeout
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if err.Error() == "not pollable" { // the poller saw EPOLLERR: ask why
		if n, gerr := unix.GetsockoptInt(int(c.f.Fd()), unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && n != 0 {
			return syscall.Errno(n)
		}
		return syscall.ECONNRESET
	}
	return err
}

var (
	errTimeout   = errors.New("timeout")
	errCancelled = errors.New("cancelled")
)

// Read and Write make conn an io.ReadWriter with clean errors.
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	if err != nil && n == 0 && !errors.Is(err, io.EOF) {
		return 0, c.explain(c.ctx, err)
	}
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.f.Write(b)
	if err != nil {
		return n, c.explain(c.ctx, err)
	}
	return n, nil
}

// Close resets the connection (SO_LINGER 0).
func (c *conn) Close() error {
	if c.stop != nil {
		c.stop()
	}
	return c.f.Close()
}

// netConn adapts conn to net.Conn for crypto/tls.
type netConn struct{ *conn }

func (c netConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c netConn) RemoteAddr() net.Addr               { return net.TCPAddrFromAddrPort(c.addr) }
func (c netConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c netConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c netConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }
