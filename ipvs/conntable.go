package ipvs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// The kernel's connection table as text. Generic netlink has no command
// that lists connections; /proc/net/ip_vs_conn (what ipvsadm -Lnc reads)
// and /proc/net/ip_vs_conn_sync are the only views. Both show protocol,
// client, virtual and destination address and port, the state by name and
// the seconds until expiry; ip_vs_conn adds persistence engine data,
// ip_vs_conn_sync the origin (LOCAL or SYNC). Neither shows the flags (so
// not the forwarding method, nor whether an entry is a persistence
// template) nor a connection's firewall mark: see Conn.Template and
// Resync for how those are recovered.

// DefaultConnPath is the connection table of the calling thread's network
// namespace. /proc/net follows the process's first thread instead, which
// is wrong for a goroutine locked into another namespace.
const DefaultConnPath = "/proc/thread-self/net/ip_vs_conn"

// DefaultMaxConns bounds ReadConns and Resync: a table larger than this is
// refused rather than read into memory without limit.
const DefaultMaxConns = 2_000_000

// maxConnLine bounds one line: the longest the kernel prints (three IPv6
// addresses and 255 bytes of persistence engine data) is under 600 bytes.
const maxConnLine = 1024

// ErrTooManyConns is returned when a table holds more entries than allowed.
var ErrTooManyConns = errors.New("connection table larger than the limit")

// Conn is one entry of the kernel's connection table.
type Conn struct {
	// Protocol is TCP, UDP, SCTP, or 0 ("IP") for the persistence template
	// of a firewall-mark service.
	Protocol Protocol
	Client   netip.AddrPort
	Virtual  netip.AddrPort // for a firewall-mark template, the mark as an address (see FWMark)
	Dest     netip.AddrPort
	// StateName is the state as printed; State its number for the sync
	// protocol, valid when StateKnown.
	StateName  string
	State      uint16
	StateKnown bool
	// Template: the entry is a persistence template (see isTemplate).
	Template bool
	// Expires is how long until the entry expires, in whole seconds.
	Expires time.Duration
	// Origin is LOCAL or SYNC (ip_vs_conn_sync only, else empty).
	Origin string
	// PEName and PEData are the persistence engine's (ip_vs_conn only; the
	// sip engine), else empty.
	PEName string
	PEData string
}

// FWMark is the firewall mark of a firewall-mark service's template: the
// kernel stores it, big-endian, in the virtual address. 0 for other entries.
func (c Conn) FWMark() uint32 {
	if c.Protocol != 0 {
		return 0
	}
	a := c.Virtual.Addr()
	if a.Is4() {
		v := a.As4()
		return binary.BigEndian.Uint32(v[:])
	}
	v := a.As16()
	return binary.BigEndian.Uint32(v[:4])
}

// ReadConns reads the connection table at path (DefaultConnPath when "")
// and fails with ErrTooManyConns beyond max entries (DefaultMaxConns when
// max <= 0).
func ReadConns(path string, max int) ([]Conn, error) {
	var out []Conn
	err := ScanConnFile(path, max, func(c Conn) error {
		out = append(out, c)
		return nil
	})
	return out, err
}

// ScanConnFile calls fn for each entry of the table at path (see
// ReadConns), stopping at fn's first error.
func ScanConnFile(path string, max int, fn func(Conn) error) error {
	if path == "" {
		path = DefaultConnPath
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read IPVS connection table: %w", err)
	}
	defer f.Close()
	if err := ScanConns(f, max, fn); err != nil {
		return fmt.Errorf("read IPVS connection table %s: %w", path, err)
	}
	return nil
}

// ScanConns parses a connection table in either /proc format (told apart by
// the header line) and calls fn for each entry.
func ScanConns(r io.Reader, max int, fn func(Conn) error) error {
	if max <= 0 {
		max = DefaultMaxConns
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), maxConnLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return err
		}
		return errors.New("empty: no header line")
	}
	header := strings.Fields(sc.Text())
	if len(header) < 8 || header[0] != "Pro" || header[7] != "State" {
		return fmt.Errorf("unknown header %q", sc.Text())
	}
	withOrigin := len(header) > 8 && header[8] == "Origin"
	n := 0
	for line := 2; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		if n == max {
			return fmt.Errorf("%w (%d entries)", ErrTooManyConns, max)
		}
		c, err := parseConnLine(sc.Text(), withOrigin)
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		n++
		if err := fn(c); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("a line longer than %d bytes: %w", maxConnLine, err)
		}
		return err
	}
	return nil
}

// parseConnLine parses one entry (ip_vs_conn_seq_show and
// ip_vs_conn_sync_seq_show in ip_vs_conn.c):
//
//	TCP 0A630002 C2A8 0A630065 0017 0A630003 0017 ESTABLISHED    899
//	TCP fd99:0000:...:0002 C2A8 fd99:...:0101 0017 fd99:...:0003 0017 ESTABLISHED    899
//
// IPv4 addresses are 8 hex digits (host order of the big-endian address),
// IPv6 ones %pI6 (eight groups, uncompressed), ports 4 hex digits. The
// destination may be of the other family than the client and virtual
// address (a mixed-family tunnel pool).
func parseConnLine(s string, withOrigin bool) (Conn, error) {
	var c Conn
	f := strings.Fields(s)
	want := 9
	if withOrigin {
		want = 10
	}
	if len(f) < want {
		return c, fmt.Errorf("%d fields, want %d: %q", len(f), want, s)
	}
	p, err := parseProtoName(f[0])
	if err != nil {
		return c, err
	}
	c.Protocol = p
	addrs := [3]*netip.AddrPort{&c.Client, &c.Virtual, &c.Dest}
	for i, dst := range addrs {
		a, err := parseConnAddr(f[1+2*i])
		if err != nil {
			return c, err
		}
		port, err := strconv.ParseUint(f[2+2*i], 16, 16)
		if err != nil {
			return c, fmt.Errorf("port %q: %w", f[2+2*i], err)
		}
		*dst = netip.AddrPortFrom(a, uint16(port))
	}
	if c.Client.Addr().Is4() != c.Virtual.Addr().Is4() {
		return c, fmt.Errorf("client %s and virtual %s of different families", c.Client, c.Virtual)
	}
	c.StateName = f[7]
	rest := f[8:]
	if withOrigin {
		c.Origin, rest = rest[0], rest[1:]
	}
	exp, err := strconv.ParseUint(rest[0], 10, 64)
	if err != nil {
		return c, fmt.Errorf("expires %q: %w", rest[0], err)
	}
	// The kernel prints (expires - jiffies) / HZ unsigned: a timer that is
	// just due shows as a huge number. Anything beyond a year is that.
	if exp > 365*24*3600 {
		exp = 0
	}
	c.Expires = time.Duration(exp) * time.Second
	if !withOrigin && len(rest) > 1 {
		c.PEName = rest[1]
		if len(rest) > 2 {
			c.PEData = strings.Join(rest[2:], " ")
		}
	}
	c.Template = isTemplate(c.Protocol, c.Client, c.StateName)
	c.State, c.StateKnown = stateNumber(c.Protocol, c.Template, c.StateName)
	return c, nil
}

// isTemplate tells a persistence template from a connection by what the
// table shows, since it does not show the flags: protocol "IP" is only used
// by firewall-mark templates; "ASSURED" is only a template state; and a
// template has client port 0 and state NONE, which a TCP or SCTP
// connection has only for the instant before its first packet is counted
// (and UDP connections are always in state "UDP").
func isTemplate(p Protocol, client netip.AddrPort, state string) bool {
	switch {
	case p == 0:
		return true
	case state == "ASSURED":
		return true
	case state == "NONE" && (client.Port() == 0 || p == UDP):
		return true
	}
	return false
}

// State names as the kernel prints them, by number (tcp_state_name_table,
// sctp_state_name_table, udp_state_name_table and
// ip_vs_ctpl_state_name_table).
var (
	tcpStateNames = []string{"NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT",
		"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK"}
	sctpStateNames = []string{"NONE", "INIT1", "INIT", "C-SENT", "C-REPLIED", "C-WAIT",
		"COOKIE", "C-ECHOED", "ESTABLISHED", "S-SENT", "S-RECEIVED", "S-ACK-SENT",
		"REJECTED", "CLOSED"}
	udpStateNames      = []string{"UDP"}
	templateStateNames = []string{"NONE", "ASSURED"}
)

// Established states: a connection in another state is inactive.
const (
	TCPStateEstablished  = 1
	SCTPStateEstablished = 8
)

func stateNumber(p Protocol, template bool, name string) (uint16, bool) {
	var names []string
	switch {
	case template:
		names = templateStateNames
	case p == TCP:
		names = tcpStateNames
	case p == SCTP:
		names = sctpStateNames
	case p == UDP:
		names = udpStateNames
	}
	for i, n := range names {
		if n == name {
			return uint16(i), true
		}
	}
	return 0, false
}

// parseProtoName reverses ip_vs_proto_name: IP, TCP, UDP, SCTP, ICMP,
// ICMPv6 or IP_<number>.
func parseProtoName(s string) (Protocol, error) {
	switch s {
	case "IP":
		return 0, nil
	case "TCP":
		return TCP, nil
	case "UDP":
		return UDP, nil
	case "SCTP":
		return SCTP, nil
	case "ICMP":
		return 1, nil
	case "ICMPv6":
		return 58, nil
	}
	if n, ok := strings.CutPrefix(s, "IP_"); ok {
		if v, err := strconv.ParseUint(n, 10, 8); err == nil {
			return Protocol(v), nil
		}
	}
	return 0, fmt.Errorf("unknown protocol %q", s)
}

// parseConnAddr reads an IPv4 address as 8 hex digits or an IPv6 one.
func parseConnAddr(s string) (netip.Addr, error) {
	if len(s) == 8 && !strings.Contains(s, ":") {
		v, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("address %q: %w", s, err)
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(v))
		return netip.AddrFrom4(b), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q: not 8 hex digits nor an IPv6 address", s)
	}
	return a, nil
}
