package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/vigil-lb/vigil/internal/clock"
)

// A full resync: the kernel's master sync daemon sends a connection only
// when it carries packets, so a backup that starts (or returns) never
// learns the connections that stay idle, and they are reset once it takes
// the VIP. Resync reads the whole connection table once and sends it to
// the backups' sync daemons in the kernel's own message format; each
// backup kernel inserts the connections as it does for its master's
// messages (the backup must run its sync daemon with the same sync id, or
// 0, on the same group and port).
//
// What the backup does with each connection (ip_vs_proc_conn): it keeps
// the flags in ConnFlagsBackupMask, looks up the virtual service (by
// firewall mark first, then protocol, address and port) and the real
// server, and binds the connection to it; a bound connection takes its
// forwarding method from the backup's own real server. An unbound one
// (service or server missing there) is inserted all the same and keeps
// the method in the message, which is why Services must give the right
// one. A second message for the same client, virtual address and port
// refreshes the entry, never duplicates it: a resync can be repeated.

// Resync defaults.
const (
	// DefaultResyncRate is connections per second (1,250 full datagrams,
	// 15 Mbit/s; 100,000 connections take 2 s). TestGuestResyncRate
	// measures the backup's kernel in the QEMU guest (emulated CPU shared
	// by sender and backup, host loaded): of 10,000 connections, 10-62%
	// were lost sent unpaced and up to 12% at 200,000/s; none at 100,000/s,
	// 50,000/s or 20,000/s with the bucket capped at the burst.
	DefaultResyncRate = 50_000
	// DefaultResyncBurst is how many connections go out back to back
	// before pacing applies: about 25 datagrams, a tenth of what a
	// default receive buffer (rmem_default, 208 KiB) holds.
	DefaultResyncBurst = 1_000
	// DefaultResyncMinExpires: entries that expire sooner are not sent.
	DefaultResyncMinExpires = 2 * time.Second
)

// ResyncOptions say what Resync sends and where. Interface, SyncID, Group,
// Port, TTL and MaxLen have SyncDaemon's meanings and must match the
// backups' sync daemons; zero values take the kernel's defaults.
type ResyncOptions struct {
	Interface string // multicast interface (the sync interface)
	SyncID    uint8
	Group     netip.Addr // default 224.0.0.81
	Port      uint16     // default 8848
	TTL       uint8      // default 1
	// MaxLen bounds each datagram (UDP payload). Default: what the
	// kernel's master sends, 1500 minus the IP and UDP headers; never more
	// than the backup daemon's own maxlen (at least 1024).
	MaxLen uint16

	// Services are the virtual services whose connections are sent (others
	// are skipped) and, in their destinations, the forwarding method the
	// message carries: the table shows neither. For a firewall-mark
	// service, whose connections the table shows by address, a
	// connection is matched by its real server (address, and port or 0).
	Services Table

	// MinExpires skips entries that expire sooner (default 2 s; negative:
	// none skipped).
	MinExpires time.Duration
	// Rate caps connections per second (0: DefaultResyncRate; negative:
	// unpaced); Burst is how many may go out at once (0:
	// DefaultResyncBurst).
	Rate  int
	Burst int
	// ConnPath is the table to read (DefaultConnPath when ""); MaxConns
	// bounds it (DefaultMaxConns when 0).
	ConnPath string
	MaxConns int
	// Clock paces the sending (clock.System() when nil).
	Clock clock.Clock
}

func (o *ResyncOptions) withDefaults() (ResyncOptions, error) {
	r := *o
	if r.Interface == "" || len(r.Interface) > 15 {
		return r, fmt.Errorf("resync: interface %q must be 1..15 bytes", r.Interface)
	}
	if !r.Group.IsValid() {
		r.Group = DefaultSyncGroup
	}
	r.Group = r.Group.Unmap()
	if !r.Group.IsMulticast() {
		return r, fmt.Errorf("resync: group %s is not a multicast address", r.Group)
	}
	if r.Port == 0 {
		r.Port = DefaultSyncPort
	}
	if r.TTL == 0 {
		r.TTL = 1
	}
	if r.MaxLen == 0 {
		r.MaxLen = 1500 - 28 // 20 bytes of IPv4 header, 8 of UDP
		if r.Group.Is6() {
			r.MaxLen = 1500 - 48
		}
	}
	if r.MinExpires == 0 {
		r.MinExpires = DefaultResyncMinExpires
	}
	if r.Rate == 0 {
		r.Rate = DefaultResyncRate
	}
	if r.Burst <= 0 {
		r.Burst = DefaultResyncBurst
	}
	if r.Clock == nil {
		r.Clock = clock.System()
	}
	return r, nil
}

// ResyncResult counts what Resync did.
type ResyncResult struct {
	Entries  int // entries in the connection table
	Sent     int // connections and templates sent
	Messages int // datagrams sent
	// Skipped, by reason.
	Expiring    int // expire within MinExpires
	Unmatched   int // of no service in Services (or one without destinations)
	Unsupported int // state unknown, persistence engine data, or mixed address families
	Took        time.Duration
}

// Resync reads the connection table of the calling thread's network
// namespace and sends every connection and persistence template of
// o.Services to the backups' sync daemons, paced. It returns what it did,
// also on error (Sent counts what left before it). With nothing to send
// it opens no socket.
func Resync(ctx context.Context, o ResyncOptions) (res ResyncResult, err error) {
	o, err = o.withDefaults()
	if err != nil {
		return res, err
	}
	start := o.Clock.Now()
	defer func() { res.Took = o.Clock.Now().Sub(start) }()
	w, err := newSyncWriter(o.SyncID, int(o.MaxLen))
	if err != nil {
		return res, fmt.Errorf("resync: %w", err)
	}
	m := newConnMapper(&o.Services, o.MinExpires)
	err = ScanConnFile(o.ConnPath, o.MaxConns, func(c Conn) error {
		res.Entries++
		sc, skip := m.syncConn(c)
		switch skip {
		case skipNone:
			return w.add(&sc)
		case skipExpiring:
			res.Expiring++
		case skipUnmatched:
			res.Unmatched++
		default:
			res.Unsupported++
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("resync: %w", err)
	}
	msgs := w.finish()
	if len(msgs) == 0 {
		return res, nil
	}
	s, err := NewSyncSender(o)
	if err != nil {
		return res, err
	}
	defer s.Close()
	res.Messages, res.Sent, err = s.Send(ctx, msgs)
	return res, err
}

type skipReason int

const (
	skipNone skipReason = iota
	skipExpiring
	skipUnmatched
	skipUnsupported
)

// connMapper turns table entries into sync connections, taking what the
// table does not show (forwarding method, a connection's firewall mark)
// from the declared services.
type connMapper struct {
	byKey      map[ServiceKey]*Service
	marks      []*Service // firewall-mark services, in table order
	minExpires time.Duration
}

func newConnMapper(t *Table, minExpires time.Duration) *connMapper {
	m := &connMapper{byKey: make(map[ServiceKey]*Service, len(t.Services)), minExpires: minExpires}
	for i := range t.Services {
		s := &t.Services[i]
		m.byKey[s.Key] = s
		if s.Key.FWMark != 0 {
			m.marks = append(m.marks, s)
		}
	}
	return m
}

func (m *connMapper) syncConn(c Conn) (SyncConn, skipReason) {
	if c.Expires < m.minExpires {
		return SyncConn{}, skipExpiring
	}
	// Persistence engine data (sip) is part of a template's identity on
	// the backup; it is not sent, so such entries would not match there.
	if !c.StateKnown || c.PEName != "" || c.Dest.Addr().Is4() != c.Client.Addr().Is4() {
		return SyncConn{}, skipUnsupported
	}
	fam := familyOf(c.Client.Addr())
	var svc *Service
	var mark uint32
	switch {
	case c.Template && c.Protocol == 0:
		mark = c.FWMark()
		svc = m.byKey[MarkKey(fam, mark)]
	default:
		svc = m.byKey[AddrKey(c.Protocol, c.Virtual)]
		if svc == nil && c.Virtual.Port() != 0 {
			// A persistent service on port 0 takes every port.
			svc = m.byKey[AddrKey(c.Protocol, netip.AddrPortFrom(c.Virtual.Addr(), 0))]
		}
		if svc == nil && !c.Template {
			svc = m.markServiceOf(fam, c.Dest)
			if svc != nil {
				mark = svc.Key.FWMark
			}
		}
	}
	if svc == nil || len(svc.Destinations) == 0 {
		return SyncConn{}, skipUnmatched
	}
	fwd := forwardingTo(svc, c.Dest)
	flags := uint32(fwd)
	// The kernel's real servers give every connection NOOUTPUT unless
	// they masquerade (the backup then tracks TCP state from the client's
	// packets alone) and INACTIVE until it is established.
	if fwd != NAT {
		flags |= ConnFlagNoOutput
	}
	if c.Template {
		flags |= ConnFlagTemplate | ConnFlagInactive
	} else if !established(c.Protocol, c.State) {
		flags |= ConnFlagInactive
	}
	sc := SyncConn{
		Protocol: c.Protocol, Flags: flags, State: c.State,
		Client: c.Client, Virtual: c.Virtual, Dest: c.Dest, FWMark: mark,
	}
	// A connection gets the backup's timeout for its state, as the
	// kernel's master sends it (cp->timeout); a template keeps what is
	// left of its persistence.
	if c.Template {
		sc.Timeout = uint32(max(1, (c.Expires+time.Second-1)/time.Second))
	}
	return sc, skipNone
}

// markServiceOf finds the firewall-mark service that has a real server at
// d (same address; same port or port 0).
func (m *connMapper) markServiceOf(fam Family, d netip.AddrPort) *Service {
	for _, s := range m.marks {
		if s.Key.Family != fam {
			continue
		}
		for _, rs := range s.Destinations {
			if rs.Addr == d.Addr() && (rs.Port == d.Port() || rs.Port == 0) {
				return s
			}
		}
	}
	return nil
}

// forwardingTo is the forwarding method of the service's real server at d,
// or of its first one when d is no longer declared (the kernel keeps
// forwarding a removed server's connections).
func forwardingTo(s *Service, d netip.AddrPort) Forwarding {
	for _, rs := range s.Destinations {
		if rs.Addr == d.Addr() && (rs.Port == d.Port() || rs.Port == 0) {
			return rs.Forwarding
		}
	}
	return s.Destinations[0].Forwarding
}

func established(p Protocol, state uint16) bool {
	switch p {
	case TCP:
		return state == TCPStateEstablished
	case SCTP:
		return state == SCTPStateEstablished
	}
	return false // UDP connections are always counted inactive
}

// SyncSender sends sync messages to the backups' group out of one
// interface, as the kernel's master does: multicast TTL as given, no
// loopback (a backup daemon on this host must not take its own master's
// connections back), paced.
type SyncSender struct {
	pc    net.PacketConn
	dst   net.Addr
	clk   clock.Clock
	rate  int
	burst int
}

// NewSyncSender opens the socket, in the calling thread's network
// namespace. It uses o's Interface, Group, Port, TTL, Rate, Burst and
// Clock.
func NewSyncSender(o ResyncOptions) (*SyncSender, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(o.Interface)
	if err != nil {
		return nil, fmt.Errorf("resync: sync interface %s: %w", o.Interface, err)
	}
	s := &SyncSender{clk: o.Clock, rate: o.Rate, burst: o.Burst}
	g := o.Group
	if g.Is4() {
		s.pc, err = net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			return nil, fmt.Errorf("resync: open UDP socket: %w", err)
		}
		p := ipv4.NewPacketConn(s.pc)
		err = errors.Join(p.SetMulticastInterface(ifi), p.SetMulticastTTL(int(o.TTL)), p.SetMulticastLoopback(false))
		s.dst = &net.UDPAddr{IP: g.AsSlice(), Port: int(o.Port)}
	} else {
		s.pc, err = net.ListenPacket("udp6", "[::]:0")
		if err != nil {
			return nil, fmt.Errorf("resync: open UDP socket: %w", err)
		}
		p := ipv6.NewPacketConn(s.pc)
		err = errors.Join(p.SetMulticastInterface(ifi), p.SetMulticastHopLimit(int(o.TTL)), p.SetMulticastLoopback(false))
		// The zone by index: Go maps a zone name through a process-wide
		// cache that may hold another namespace's interfaces.
		s.dst = &net.UDPAddr{IP: g.AsSlice(), Port: int(o.Port), Zone: strconv.Itoa(ifi.Index)}
	}
	if err != nil {
		s.pc.Close()
		return nil, fmt.Errorf("resync: multicast options on %s: %w", o.Interface, err)
	}
	return s, nil
}

// Close closes the socket.
func (s *SyncSender) Close() error { return s.pc.Close() }

// Send sends the messages in order, pacing by the connections each holds
// (its nr_conns byte), and returns how many messages and connections left.
func (s *SyncSender) Send(ctx context.Context, msgs [][]byte) (sentMsgs, sentConns int, err error) {
	p := pacer{clk: s.clk, rate: s.rate, burst: s.burst}
	for _, b := range msgs {
		if len(b) < syncHeaderLen {
			return sentMsgs, sentConns, fmt.Errorf("resync: %d-byte message is no sync message", len(b))
		}
		n := int(b[4])
		if err := p.wait(ctx, n); err != nil {
			return sentMsgs, sentConns, fmt.Errorf("resync: %w", err)
		}
		if err := s.write(ctx, b); err != nil {
			return sentMsgs, sentConns, err
		}
		sentMsgs++
		sentConns += n
	}
	return sentMsgs, sentConns, nil
}

// write sends one datagram, retrying while the interface's queue is full
// (ENOBUFS) for up to a second.
func (s *SyncSender) write(ctx context.Context, b []byte) error {
	for tries := 0; ; tries++ {
		_, err := s.pc.WriteTo(b, s.dst)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ENOBUFS) || tries == 1000 {
			return fmt.Errorf("resync: send to %s: %w", s.dst, err)
		}
		if err := sleep(ctx, s.clk, time.Millisecond); err != nil {
			return fmt.Errorf("resync: %w", err)
		}
	}
}

// pacer is a token bucket over connections: it holds at most burst, and
// refills at rate per second. Capping the bucket matters after a stall (a
// descheduled sender): it then resumes at the rate, not with a catch-up
// burst that would overflow the backup's socket buffer. A negative rate
// does not pace.
type pacer struct {
	clk    clock.Clock
	rate   int
	burst  int
	tokens float64
	last   time.Time // when tokens was last brought up to date
}

// wait returns once n more connections may be sent.
func (p *pacer) wait(ctx context.Context, n int) error {
	if p.rate < 0 {
		return ctx.Err()
	}
	now := p.clk.Now()
	if p.last.IsZero() {
		p.tokens, p.last = float64(p.burst), now
	}
	p.tokens = min(float64(p.burst), p.tokens+now.Sub(p.last).Seconds()*float64(p.rate))
	p.last = now
	p.tokens -= float64(n)
	if p.tokens < 0 {
		// Sleep until the deficit is refilled: the bucket is empty then.
		d := time.Duration(-p.tokens / float64(p.rate) * float64(time.Second))
		p.tokens, p.last = 0, now.Add(d)
		if err := sleep(ctx, p.clk, d); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// sleep waits d on clk, or until ctx is done.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	done := make(chan struct{})
	t := clk.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
