package cluster

import (
	"errors"
	"log"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// netnsTransport is memberlist's NetTransport with its listeners created
// inside a network namespace and every dial made there too (see
// Config.InNamespace). UDP sends use the listener, so they need nothing.
type netnsTransport struct {
	*memberlist.NetTransport
	do func(func() error) error

	// memberlist does not wait for its probe goroutines on Shutdown, so
	// dials are tracked and none runs after Shutdown, when the namespace
	// may be going away.
	mu     sync.Mutex
	closed bool
	dials  sync.WaitGroup
}

var errTransportClosed = errors.New("cluster transport shut down")

func newNetnsTransport(do func(func() error) error, bind netip.Addr, port int, logger *log.Logger) (*netnsTransport, error) {
	var nt *memberlist.NetTransport
	err := do(func() (err error) {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{bind.String()}, BindPort: port, Logger: logger})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &netnsTransport{NetTransport: nt, do: do}, nil
}

func (t *netnsTransport) dial(dial func() (net.Conn, error)) (net.Conn, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, errTransportClosed
	}
	t.dials.Add(1)
	t.mu.Unlock()
	defer t.dials.Done()
	var c net.Conn
	err := t.do(func() (err error) { c, err = dial(); return })
	return c, err
}

func (t *netnsTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.dial(func() (net.Conn, error) { return t.NetTransport.DialTimeout(addr, timeout) })
}

func (t *netnsTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.dial(func() (net.Conn, error) { return t.NetTransport.DialAddressTimeout(a, timeout) })
}

func (t *netnsTransport) Shutdown() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.dials.Wait()
	return t.NetTransport.Shutdown()
}
