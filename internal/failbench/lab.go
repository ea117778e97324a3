package failbench

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// scope stands in for a *testing.T so that a command can use netlab: it
// collects cleanups and turns Fatalf into a panic that guard recovers.
// Only the methods netlab calls are implemented; the embedded nil TB makes
// any other call panic loudly instead of doing something silently wrong.
type scope struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	log      *slog.Logger
}

type scopeFatal struct{ err error }

func newScope(log *slog.Logger) *scope { return &scope{log: log} }

func (s *scope) Helper()      {}
func (s *scope) Name() string { return "failbench" }
func (s *scope) Cleanup(f func()) {
	s.mu.Lock()
	s.cleanups = append(s.cleanups, f)
	s.mu.Unlock()
}
func (s *scope) Fatalf(format string, args ...any) {
	panic(scopeFatal{fmt.Errorf(format, args...)})
}
func (s *scope) Fatal(args ...any)                 { panic(scopeFatal{errors.New(fmt.Sprint(args...))}) }
func (s *scope) Errorf(format string, args ...any) { s.log.Error(fmt.Sprintf(format, args...)) }
func (s *scope) Logf(format string, args ...any)   { s.log.Debug(fmt.Sprintf(format, args...)) }
func (s *scope) Log(args ...any)                   { s.log.Debug(fmt.Sprint(args...)) }
func (s *scope) Skipf(format string, args ...any)  { s.Fatalf(format, args...) }

// close runs the cleanups, last registered first.
func (s *scope) close() {
	s.mu.Lock()
	cs := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("cleanup failed", "panic", r)
				}
			}()
			cs[i]()
		}()
	}
}

// guard runs f and returns a netlab Fatalf as an error.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if sf, ok := r.(scopeFatal); ok {
				err = sf.err
				return
			}
			panic(r)
		}
	}()
	return f()
}

// port is a director's bridge port, taken down and up through a netlink
// handle opened in advance, so a cut takes microseconds rather than the
// milliseconds of an `ip` process: the cut and the kill land together.
type port struct {
	handle *netlink.Handle
	link   netlink.Link
}

// bridgePort finds h's veth peer in the lab's bridge namespace. netlab
// names that namespace Prefix()+"-br"; the peer is eth0's IFLA_LINK.
func bridgePort(lab *netlab.Lab, h *netlab.Host) (*port, error) {
	hh := h.Handle()
	defer hh.Close()
	eth, err := hh.LinkByName(h.Link)
	if err != nil {
		return nil, fmt.Errorf("find %s in %s: %w", h.Link, h.Netns, err)
	}
	peer := eth.Attrs().ParentIndex
	ns, err := netns.GetFromName(lab.Prefix() + "-br")
	if err != nil {
		return nil, fmt.Errorf("open bridge namespace of lab %s: %w", lab.Prefix(), err)
	}
	defer ns.Close()
	bh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in bridge namespace: %w", err)
	}
	l, err := bh.LinkByIndex(peer)
	if err != nil {
		bh.Close()
		return nil, fmt.Errorf("bridge port of %s (ifindex %d): %w", h.Name, peer, err)
	}
	if l.Attrs().MasterIndex == 0 {
		bh.Close()
		return nil, fmt.Errorf("link %s (peer of %s) is not on a bridge", l.Attrs().Name, h.Name)
	}
	return &port{handle: bh, link: l}, nil
}

func (p *port) cut() error  { return p.handle.LinkSetDown(p.link) }
func (p *port) heal() error { return p.handle.LinkSetUp(p.link) }
func (p *port) close()      { p.handle.Close() }
