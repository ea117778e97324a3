package ipvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"sync"
	"syscall"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// KernelOptions configure NewKernel.
type KernelOptions struct {
	// Netns is the path of the network namespace whose IPVS table to use
	// (e.g. /var/run/netns/x or /proc/<pid>/ns/net); "" = the current one.
	Netns string
	// CallTimeout bounds every netlink call (default 5 s). moby/ipvs loops
	// forever on a lost reply; on expiry the handle is closed and a new
	// one is made for the next call.
	CallTimeout time.Duration
	// Log receives handle recreations; nil discards.
	Log *slog.Logger
}

// Kernel is the Backend over the kernel's IPVS (github.com/moby/ipvs). One
// handle serves every call, one call at a time: a moby handle is not safe
// for concurrent use (replies of one call can be taken by another).
type Kernel struct {
	opts     KernelOptions
	log      *slog.Logger
	familyID uint16 // generic netlink id of "IPVS"

	mu    sync.Mutex
	h     *mobyipvs.Handle
	w     *worker           // runs the calls on h
	gsock *nl.NetlinkSocket // for the sync daemon (moby has no such calls)
	bsock *batchSock        // for batched writes (see batch.go)
}

// worker runs handle calls on one long-lived goroutine: a fresh goroutine
// per call would grow its stack for moby's 64 KiB receive buffer on every
// call (measured: a tenth of the CPU time of a large pass).
type worker struct {
	calls chan func() error
	done  chan error
}

func newWorker() *worker {
	w := &worker{calls: make(chan func() error), done: make(chan error, 1)}
	go func() {
		for f := range w.calls {
			w.done <- f()
		}
	}()
	return w
}

// NewKernel probes IPVS (the "IPVS" generic netlink family, in the
// namespace given) and opens a handle. Without IPVS it returns an error
// wrapping ErrNotAvailable: moby/ipvs would otherwise "succeed" silently,
// sending messages of type 0 that the kernel acknowledges.
func NewKernel(o KernelOptions) (*Kernel, error) {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 5 * time.Second
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id, err := probeIPVS(o.Netns)
	if err != nil {
		return nil, err
	}
	k := &Kernel{opts: o, log: log, familyID: id}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.open(); err != nil {
		return nil, err
	}
	return k, nil
}

// probeIPVS resolves the IPVS generic netlink family, loading ip_vs with
// modprobe once if it is missing.
func probeIPVS(path string) (uint16, error) {
	ns := netns.None()
	if path != "" {
		var err error
		if ns, err = netns.GetFromPath(path); err != nil {
			return 0, fmt.Errorf("open network namespace %s: %w", path, err)
		}
		defer ns.Close()
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_GENERIC)
	if err != nil {
		return 0, fmt.Errorf("open generic netlink socket: %w", err)
	}
	defer h.Close()
	fam, err := h.GenlFamilyGet("IPVS")
	if err != nil && errors.Is(err, syscall.ENOENT) {
		if mp, lerr := exec.LookPath("modprobe"); lerr == nil {
			_ = exec.Command(mp, "-q", "ip_vs").Run()
			fam, err = h.GenlFamilyGet("IPVS")
		}
	}
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return 0, fmt.Errorf("%w (generic netlink family IPVS: %v)", ErrNotAvailable, err)
		}
		return 0, fmt.Errorf("probe IPVS generic netlink family: %w", err)
	}
	return fam.ID, nil
}

// open (re)creates the moby handle; k.mu is held.
func (k *Kernel) open() error {
	h, err := mobyipvs.New(k.opts.Netns)
	if err != nil {
		return fmt.Errorf("open IPVS netlink handle (netns %q): %w", k.opts.Netns, err)
	}
	k.h = h
	k.w = newWorker()
	return nil
}

// Close releases the netlink sockets.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dropHandle()
	if k.bsock != nil {
		k.bsock.close()
		k.bsock = nil
	}
	if k.gsock != nil {
		k.gsock.Close()
		k.gsock = nil
	}
	return nil
}

// dropHandle closes the handle and retires its worker; k.mu is held.
func (k *Kernel) dropHandle() {
	if k.h != nil {
		k.h.Close()
		close(k.w.calls) // the worker exits once its current call returns
		k.h, k.w = nil, nil
	}
}

// do runs f on the handle under the mutex with the call timeout. On expiry
// the handle is closed (which ends the blocked read) and the next call
// opens a new one.
func (k *Kernel) do(ctx context.Context, what string, f func(h *mobyipvs.Handle) error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.h == nil {
		if err := k.open(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	h, w := k.h, k.w
	timer := time.NewTimer(k.opts.CallTimeout)
	defer timer.Stop()
	w.calls <- func() error { return f(h) }
	select {
	case err := <-w.done:
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		k.dropHandle()
		return fmt.Errorf("%s: %w", what, ctx.Err())
	case <-timer.C:
		k.dropHandle()
		k.log.Warn("ipvs netlink call timed out; handle recreated", "call", what, "timeout", k.opts.CallTimeout)
		return fmt.Errorf("%s: no reply from the kernel within %v (netlink handle recreated): %w", what, k.opts.CallTimeout, context.DeadlineExceeded)
	}
}

func ipOf(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// mobyKey is the moby service for key-only calls (lookups by key).
func mobyKey(k ServiceKey) *mobyipvs.Service {
	s := &mobyipvs.Service{AddressFamily: uint16(k.Family), FWMark: k.FWMark}
	if k.FWMark == 0 {
		s.Protocol = uint16(k.Protocol)
		s.Address = ipOf(k.Addr)
		s.Port = k.Port
	}
	// IPv6 services need a netmask in 1..128 even where the kernel ignores it.
	if k.Family == IPv6 {
		s.Netmask = 128
	} else {
		s.Netmask = 0xffffffff
	}
	return s
}

func toMoby(s *Service) *mobyipvs.Service {
	m := mobyKey(s.Key)
	m.SchedName = s.Scheduler
	m.Flags = s.normFlags()
	m.Timeout = s.Timeout
	m.Netmask = s.kernelNetmask()
	return m
}

func fromMoby(m *mobyipvs.Service) Service {
	s := Service{
		Key:       ServiceKey{Family: Family(m.AddressFamily), FWMark: m.FWMark},
		Scheduler: m.SchedName,
		Flags:     m.Flags,
		Timeout:   m.Timeout,
		Netmask:   prefixFromKernelNetmask(Family(m.AddressFamily), m.Netmask),
		Stats: Stats{Connections: m.Stats.Connections, PacketsIn: m.Stats.PacketsIn, PacketsOut: m.Stats.PacketsOut,
			BytesIn: m.Stats.BytesIn, BytesOut: m.Stats.BytesOut, CPS: m.Stats.CPS, PPSIn: m.Stats.PPSIn,
			PPSOut: m.Stats.PPSOut, BPSIn: m.Stats.BPSIn, BPSOut: m.Stats.BPSOut},
	}
	if m.FWMark == 0 {
		s.Key.Protocol = Protocol(m.Protocol)
		s.Key.Addr = addrOf(m.Address)
		s.Key.Port = m.Port
	}
	return s
}

func toMobyDest(k ServiceKey, d *Destination) *mobyipvs.Destination {
	return &mobyipvs.Destination{Address: ipOf(d.Addr), Port: d.Port, Weight: d.Weight,
		ConnectionFlags: uint32(d.Forwarding), AddressFamily: uint16(familyOf(d.Addr)),
		UpperThreshold: d.UpperThreshold, LowerThreshold: d.LowerThreshold}
}

func fromMobyDest(m *mobyipvs.Destination) Destination {
	return Destination{Addr: addrOf(m.Address), Port: m.Port, Weight: m.Weight,
		Forwarding:     Forwarding(m.ConnectionFlags & mobyipvs.ConnectionFlagFwdMask),
		UpperThreshold: m.UpperThreshold, LowerThreshold: m.LowerThreshold,
		ActiveConns: m.ActiveConnections, InactiveConns: m.InactiveConnections,
		Stats: Stats{Connections: m.Stats.Connections, PacketsIn: m.Stats.PacketsIn, PacketsOut: m.Stats.PacketsOut,
			BytesIn: m.Stats.BytesIn, BytesOut: m.Stats.BytesOut, CPS: m.Stats.CPS, PPSIn: m.Stats.PPSIn,
			PPSOut: m.Stats.PPSOut, BPSIn: m.Stats.BPSIn, BPSOut: m.Stats.BPSOut}}
}

func (k *Kernel) Services(ctx context.Context) ([]Service, error) {
	var out []Service
	err := k.do(ctx, "list IPVS services", func(h *mobyipvs.Handle) error {
		svcs, err := h.GetServices()
		if err != nil {
			return err
		}
		out = make([]Service, 0, len(svcs))
		for _, m := range svcs {
			out = append(out, fromMoby(m))
		}
		return nil
	})
	return out, err
}

func (k *Kernel) Destinations(ctx context.Context, key ServiceKey) ([]Destination, error) {
	var out []Destination
	err := k.do(ctx, "list destinations of "+key.String(), func(h *mobyipvs.Handle) error {
		ds, err := h.GetDestinations(mobyKey(key))
		if err != nil {
			return err
		}
		out = make([]Destination, 0, len(ds))
		for _, m := range ds {
			out = append(out, fromMobyDest(m))
		}
		return nil
	})
	return out, err
}

func (k *Kernel) CreateService(ctx context.Context, s *Service) error {
	return k.do(ctx, "create service "+s.Key.String(), func(h *mobyipvs.Handle) error { return h.NewService(toMoby(s)) })
}

func (k *Kernel) UpdateService(ctx context.Context, s *Service) error {
	return k.do(ctx, "update service "+s.Key.String(), func(h *mobyipvs.Handle) error { return h.UpdateService(toMoby(s)) })
}

func (k *Kernel) DeleteService(ctx context.Context, key ServiceKey) error {
	return k.do(ctx, "delete service "+key.String(), func(h *mobyipvs.Handle) error { return h.DelService(mobyKey(key)) })
}

func (k *Kernel) CreateDestination(ctx context.Context, key ServiceKey, d *Destination) error {
	return k.do(ctx, "create destination "+d.Key().String()+" of "+key.String(), func(h *mobyipvs.Handle) error {
		return h.NewDestination(mobyKey(key), toMobyDest(key, d))
	})
}

func (k *Kernel) UpdateDestination(ctx context.Context, key ServiceKey, d *Destination) error {
	return k.do(ctx, "update destination "+d.Key().String()+" of "+key.String(), func(h *mobyipvs.Handle) error {
		return h.UpdateDestination(mobyKey(key), toMobyDest(key, d))
	})
}

func (k *Kernel) DeleteDestination(ctx context.Context, key ServiceKey, d DestKey) error {
	return k.do(ctx, "delete destination "+d.String()+" of "+key.String(), func(h *mobyipvs.Handle) error {
		return h.DelDestination(mobyKey(key), &mobyipvs.Destination{Address: ipOf(d.Addr), Port: d.Port, AddressFamily: uint16(familyOf(d.Addr))})
	})
}

// Flush deletes every service in the namespace, ours or not. Tests and
// benchmarks only: the reconciler never flushes.
func (k *Kernel) Flush(ctx context.Context) error {
	return k.do(ctx, "flush IPVS", func(h *mobyipvs.Handle) error { return h.Flush() })
}

// Timeouts are the IPVS connection timeouts (ipvsadm --set).
type Timeouts struct {
	TCP, TCPFin, UDP time.Duration
}

// Timeouts reads the IPVS timeouts.
func (k *Kernel) Timeouts(ctx context.Context) (Timeouts, error) {
	var t Timeouts
	err := k.do(ctx, "read IPVS timeouts", func(h *mobyipvs.Handle) error {
		c, err := h.GetConfig()
		if err != nil {
			return err
		}
		t = Timeouts{TCP: c.TimeoutTCP, TCPFin: c.TimeoutTCPFin, UDP: c.TimeoutUDP}
		return nil
	})
	return t, err
}

// SetTimeouts sets the IPVS timeouts (whole seconds); a zero field is left
// unchanged.
func (k *Kernel) SetTimeouts(ctx context.Context, t Timeouts) error {
	for _, d := range []time.Duration{t.TCP, t.TCPFin, t.UDP} {
		if d < 0 || (d > 0 && d < time.Second) || d > (1<<31-1)*time.Second {
			return fmt.Errorf("set IPVS timeouts: %v is out of range (whole seconds, at least 1s)", d)
		}
	}
	return k.do(ctx, "set IPVS timeouts", func(h *mobyipvs.Handle) error {
		return h.SetConfig(&mobyipvs.Config{TimeoutTCP: t.TCP, TimeoutTCPFin: t.TCPFin, TimeoutUDP: t.UDP})
	})
}

var _ Backend = (*Kernel)(nil)
var _ Backend = (*Memory)(nil)
