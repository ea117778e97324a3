package failbench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Event is one line of the client agent's output: a probe through the VIP,
// a VRRP advert or an ARP packet about the VIP seen on the client's wire.
// Times are Unix nanoseconds (the wall clock is the one clock the agent,
// the controller and kernel packet timestamps share).
type Event struct {
	Kind  byte   // 'P' probe, 'A' advert, 'G' ARP about the VIP
	Start int64  // probe: connect started; advert, ARP: kernel receive time
	End   int64  // probe: answer read (or gave up); advert, ARP: = Start
	OK    bool   // probe answered
	From  string // probe: name in the answer, or the error; advert, ARP: sender IP
	VRID  int    // advert
	Prio  int    // advert
	MAC   string // ARP: sender hardware address
	Op    int    // ARP: 1 request, 2 reply
	To    string // ARP: target IP
}

// String is the wire form of e, one line without newline.
func (e Event) String() string {
	switch e.Kind {
	case 'A':
		return fmt.Sprintf("A %d %s %d %d", e.Start, e.From, e.VRID, e.Prio)
	case 'G':
		return fmt.Sprintf("G %d %s %s %d %s", e.Start, e.From, e.MAC, e.Op, e.To)
	default:
		ok := 0
		if e.OK {
			ok = 1
		}
		return fmt.Sprintf("P %d %d %d %s", e.Start, e.End, ok, strings.ReplaceAll(e.From, " ", "_"))
	}
}

// ParseEvent is the inverse of Event.String.
func ParseEvent(line string) (Event, error) {
	f := strings.Fields(line)
	bad := func(err error) (Event, error) { return Event{}, fmt.Errorf("parse agent line %q: %w", line, err) }
	if len(f) < 5 {
		return bad(errors.New("too few fields"))
	}
	var e Event
	var err error
	if e.Start, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return bad(err)
	}
	e.End = e.Start
	switch f[0] {
	case "A":
		if len(f) != 5 {
			return bad(errors.New("advert: want 5 fields"))
		}
		e.Kind, e.From = 'A', f[2]
		if e.VRID, err = strconv.Atoi(f[3]); err != nil {
			return bad(err)
		}
		if e.Prio, err = strconv.Atoi(f[4]); err != nil {
			return bad(err)
		}
	case "G":
		if len(f) != 6 {
			return bad(errors.New("arp: want 6 fields"))
		}
		e.Kind, e.From, e.MAC, e.To = 'G', f[2], f[3], f[5]
		if e.Op, err = strconv.Atoi(f[4]); err != nil {
			return bad(err)
		}
	case "P":
		if len(f) != 5 {
			return bad(errors.New("probe: want 5 fields"))
		}
		e.Kind = 'P'
		if e.End, err = strconv.ParseInt(f[2], 10, 64); err != nil {
			return bad(err)
		}
		e.OK = f[3] == "1"
		e.From = f[4]
	default:
		return bad(errors.New("unknown kind"))
	}
	return e, nil
}

// AgentConfig says what the client agent probes and sniffs.
type AgentConfig struct {
	VIP     string        // address probed, e.g. "10.99.0.100"
	Port    int           // responder port
	Every   time.Duration // probe spacing (5 ms)
	Timeout time.Duration // a probe not answered within this has failed
	Iface   string        // where adverts are sniffed ("eth0")
}

// RunAgent probes and sniffs until ctx ends, writing one Event per line to
// w. It must run inside the client's namespace (as its own process).
func RunAgent(ctx context.Context, cfg AgentConfig, w io.Writer) error {
	out := &lineWriter{w: bufio.NewWriter(w)}
	vip := net.ParseIP(cfg.VIP).To4()
	if vip == nil {
		return fmt.Errorf("agent: VIP %q is not an IPv4 address", cfg.VIP)
	}
	vrrp, err := openSniffer(cfg.Iface, unix.ETH_P_IP, vrrpFilter)
	if err != nil {
		return err
	}
	arp, err := openSniffer(cfg.Iface, unix.ETH_P_ARP, nil)
	if err != nil {
		vrrp.close()
		return err
	}
	go func() { <-ctx.Done(); vrrp.close(); arp.close() }()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		vrrp.run(parseAdvert, func(e Event) { out.write(e) })
	}()
	go func() {
		defer wg.Done()
		arp.run(func(pkt []byte, ts int64) (Event, bool) { return parseARP(pkt, ts, vip) }, func(e Event) { out.write(e) })
	}()

	addr := net.JoinHostPort(cfg.VIP, strconv.Itoa(cfg.Port))
	tick := time.NewTicker(cfg.Every)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			wg.Add(1)
			go func() {
				defer wg.Done()
				out.write(probe(addr, cfg.Timeout))
			}()
		}
	}
	wg.Wait()
	return out.flushErr()
}

// probe connects to addr and reads the responder's name.
func probe(addr string, timeout time.Duration) Event {
	start := time.Now()
	e := Event{Kind: 'P', Start: start.UnixNano()}
	fail := func(err error) Event {
		e.End = time.Now().UnixNano()
		msg := err.Error()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			msg = "timeout"
		case errors.Is(err, unix.ECONNREFUSED):
			msg = "refused"
		case errors.Is(err, unix.EHOSTUNREACH):
			msg = "unreachable"
		case errors.Is(err, unix.ECONNRESET):
			msg = "reset"
		}
		e.From = msg
		return e
	}
	d := net.Dialer{Deadline: start.Add(timeout)}
	c, err := d.Dial("tcp4", addr)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(timeout))
	buf := make([]byte, 64)
	n, err := io.ReadFull(c, buf[:1])
	for err == nil && n < len(buf) && buf[n-1] != '\n' {
		var m int
		m, err = c.Read(buf[n:])
		n += m
	}
	e.End = time.Now().UnixNano()
	if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
		return fail(err)
	}
	name := strings.TrimSpace(string(buf[:n]))
	if name == "" {
		return fail(errors.New("empty answer"))
	}
	e.OK, e.From = true, name
	return e
}

type lineWriter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error
}

func (l *lineWriter) write(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	_, l.err = l.w.WriteString(e.String() + "\n")
	if l.err == nil {
		l.err = l.w.Flush()
	}
}

func (l *lineWriter) flushErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = l.w.Flush()
	}
	return l.err
}

// sniffer reads frames of one ethertype from an AF_PACKET socket (cooked:
// no link header) with kernel receive timestamps.
// sniffer reads one AF_PACKET socket through the runtime's netpoller. A
// blocking recvmsg would hold a P for as long as it waits: two sniffers
// blocked at once left the probing goroutines without a P until sysmon
// took one back, which stalled the agent 5-17 ms right after the new
// master's GARP and first advert (the moment being measured), for every
// implementation alike.
type sniffer struct {
	f    *os.File
	rc   syscall.RawConn
	once sync.Once
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// vrrpFilter passes only IP protocol 112: a classic BPF program on the IP
// header's protocol byte (offset 9 in a cooked frame).
var vrrpFilter = []unix.SockFilter{
	{Code: 0x30, K: 9},                 // ldb [9]
	{Code: 0x15, Jt: 0, Jf: 1, K: 112}, // jeq #112
	{Code: 0x06, K: 0xffff},            // ret #65535
	{Code: 0x06, K: 0},                 // ret #0
}

func openSniffer(iface string, ethertype uint16, filter []unix.SockFilter) (*sniffer, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("sniffer: interface %s: %w", iface, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(htons(ethertype)))
	if err != nil {
		return nil, fmt.Errorf("sniffer: AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethertype), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sniffer: bind to %s: %w", iface, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sniffer: SO_TIMESTAMPNS: %w", err)
	}
	if len(filter) > 0 {
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("sniffer: attach filter: %w", err)
		}
	}
	f := os.NewFile(uintptr(fd), "sniffer-"+iface) // non-blocking: the poller takes it
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sniffer: %w", err)
	}
	return &sniffer{f: f, rc: rc}, nil
}

func (s *sniffer) close() {
	s.once.Do(func() { s.f.Close() })
}

func (s *sniffer) run(parse func([]byte, int64) (Event, bool), emit func(Event)) {
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	for {
		var (
			n, oobn int
			err     error
		)
		rerr := s.rc.Read(func(fd uintptr) bool {
			n, oobn, _, _, err = unix.Recvmsg(int(fd), buf, oob, 0)
			return err != unix.EAGAIN
		})
		if rerr != nil {
			return // closed
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if n == 0 {
			return
		}
		ts := time.Now().UnixNano()
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if cm.Header.Level == unix.SOL_SOCKET && cm.Header.Type == unix.SO_TIMESTAMPNS && len(cm.Data) >= 16 {
					sec := int64(binary.NativeEndian.Uint64(cm.Data[0:8]))
					nsec := int64(binary.NativeEndian.Uint64(cm.Data[8:16]))
					ts = sec*1e9 + nsec
				}
			}
		}
		if e, ok := parse(buf[:n], ts); ok {
			emit(e)
		}
	}
}

// parseAdvert reads the source, VRID and priority of a VRRP packet (v2 or
// v3: both keep VRID and priority in bytes 1 and 2).
func parseAdvert(pkt []byte, ts int64) (Event, bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != 112 {
		return Event{}, false
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < 20 || len(pkt) < ihl+8 {
		return Event{}, false
	}
	v := pkt[ihl:]
	if v[0]&0x0f != 1 { // type 1: advertisement
		return Event{}, false
	}
	return Event{Kind: 'A', Start: ts, End: ts, From: net.IP(pkt[12:16]).String(), VRID: int(v[1]), Prio: int(v[2])}, true
}

// parseARP reports IPv4-over-Ethernet ARP packets whose sender or target
// is the VIP: the new master's announcements and the client's own queries.
func parseARP(pkt []byte, ts int64, vip net.IP) (Event, bool) {
	if len(pkt) < 28 || binary.BigEndian.Uint16(pkt[0:2]) != 1 || binary.BigEndian.Uint16(pkt[2:4]) != 0x0800 || pkt[4] != 6 || pkt[5] != 4 {
		return Event{}, false
	}
	spa, tpa := net.IP(pkt[14:18]), net.IP(pkt[24:28])
	if !spa.Equal(vip) && !tpa.Equal(vip) {
		return Event{}, false
	}
	return Event{Kind: 'G', Start: ts, End: ts, From: spa.String(), MAC: net.HardwareAddr(pkt[8:14]).String(),
		Op: int(binary.BigEndian.Uint16(pkt[6:8])), To: tpa.String()}, true
}

// Serve runs the responder: every connection to 0.0.0.0:port gets name
// and a newline, then is closed. It runs until ctx ends.
func Serve(ctx context.Context, name string, port int) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("responder %s: listen on port %d: %w", name, port, err)
	}
	go func() { <-ctx.Done(); ln.Close() }()
	msg := []byte(name + "\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("responder %s: accept: %w", name, err)
		}
		go func() {
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write(msg)
			c.Close()
		}()
	}
}
