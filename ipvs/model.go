package ipvs

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Family is an address family: unix.AF_INET or unix.AF_INET6.
type Family uint16

const (
	IPv4 Family = unix.AF_INET
	IPv6 Family = unix.AF_INET6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "inet"
	case IPv6:
		return "inet6"
	}
	return fmt.Sprintf("family(%d)", uint16(f))
}

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Protocol is an IP protocol number of a virtual service.
type Protocol uint16

const (
	TCP  Protocol = unix.IPPROTO_TCP
	UDP  Protocol = unix.IPPROTO_UDP
	SCTP Protocol = unix.IPPROTO_SCTP
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto(%d)", uint16(p))
}

// ParseProtocol accepts tcp, udp and sctp.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	case "sctp":
		return SCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want tcp, udp or sctp)", s)
}

// Forwarding is how IPVS sends packets to a destination; the values are the
// kernel's IP_VS_CONN_F_* forwarding methods.
type Forwarding uint32

const (
	NAT    Forwarding = 0 // IP_VS_CONN_F_MASQ
	Local  Forwarding = 1 // IP_VS_CONN_F_LOCALNODE
	Tunnel Forwarding = 2 // IP_VS_CONN_F_TUNNEL (IPIP)
	DR     Forwarding = 3 // IP_VS_CONN_F_DROUTE (direct routing, "gate")
)

func (f Forwarding) String() string {
	switch f {
	case NAT:
		return "nat"
	case Local:
		return "local"
	case Tunnel:
		return "tunnel"
	case DR:
		return "dr"
	}
	return fmt.Sprintf("forwarding(%d)", uint32(f))
}

// ParseForwarding accepts dr (gate, route), nat (masq) and tunnel (tun, ipip).
func ParseForwarding(s string) (Forwarding, error) {
	switch strings.ToLower(s) {
	case "dr", "gate", "route", "droute":
		return DR, nil
	case "nat", "masq", "masquerade":
		return NAT, nil
	case "tunnel", "tun", "ipip":
		return Tunnel, nil
	}
	return 0, fmt.Errorf("unknown forwarding %q (want dr, nat or tunnel)", s)
}

// Service flags (linux/ip_vs.h IP_VS_SVC_F_*); moby/ipvs does not export them.
const (
	FlagPersistent = 0x1
	FlagHashed     = 0x2 // set by the kernel on every listed service; never compared
	FlagOnePacket  = 0x4
	FlagSched1     = 0x8  // sh-fallback, mh-fallback
	FlagSched2     = 0x10 // sh-port, mh-port
	FlagSched3     = 0x20
)

// ParseSchedFlag maps a scheduler flag name (ipvsadm -b) to its bit.
func ParseSchedFlag(s string) (uint32, error) {
	switch strings.ToLower(s) {
	case "sh-fallback", "mh-fallback", "flag-1":
		return FlagSched1, nil
	case "sh-port", "mh-port", "flag-2":
		return FlagSched2, nil
	case "flag-3":
		return FlagSched3, nil
	}
	return 0, fmt.Errorf("unknown scheduler flag %q (want sh-fallback, sh-port, mh-fallback, mh-port)", s)
}

// ServiceKey identifies a virtual service: protocol, address and port, or a
// firewall mark (then only Family and FWMark are set).
type ServiceKey struct {
	Family   Family
	Protocol Protocol
	Addr     netip.Addr
	Port     uint16
	FWMark   uint32
}

// AddrKey is the key of a service on address:port.
func AddrKey(p Protocol, ap netip.AddrPort) ServiceKey {
	a := ap.Addr().Unmap()
	return ServiceKey{Family: familyOf(a), Protocol: p, Addr: a, Port: ap.Port()}
}

// MarkKey is the key of a firewall-mark service.
func MarkKey(f Family, mark uint32) ServiceKey { return ServiceKey{Family: f, FWMark: mark} }

func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		return fmt.Sprintf("fwmark %d (%s)", k.FWMark, k.Family)
	}
	return fmt.Sprintf("%s %s", k.Protocol, netip.AddrPortFrom(k.Addr, k.Port))
}

func (k ServiceKey) validate() error {
	if k.Family != IPv4 && k.Family != IPv6 {
		return fmt.Errorf("%s: unknown address family %d", k, k.Family)
	}
	if k.FWMark != 0 {
		if k.Addr.IsValid() || k.Port != 0 || k.Protocol != 0 {
			return fmt.Errorf("%s: a fwmark service has no address, port or protocol", k)
		}
		return nil
	}
	if !k.Addr.IsValid() {
		return fmt.Errorf("%s: no address", k)
	}
	if familyOf(k.Addr) != k.Family || k.Addr.Is4In6() {
		return fmt.Errorf("%s: address does not match family %s", k, k.Family)
	}
	switch k.Protocol {
	case TCP, UDP, SCTP:
	default:
		return fmt.Errorf("%s: unknown protocol", k)
	}
	return nil
}

func compareKeys(a, b ServiceKey) int {
	return cmp.Or(
		cmp.Compare(a.FWMark, b.FWMark),
		cmp.Compare(a.Family, b.Family),
		cmp.Compare(a.Protocol, b.Protocol),
		a.Addr.Compare(b.Addr),
		cmp.Compare(a.Port, b.Port),
	)
}

// Service is one virtual service and, in a desired table, its destinations.
type Service struct {
	Key       ServiceKey
	Scheduler string // rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf, twos ...
	// Flags holds FlagOnePacket and the scheduler flags. FlagPersistent is
	// derived from Timeout and FlagHashed is ignored.
	Flags uint32
	// Timeout is the persistence timeout in seconds; 0 = not persistent.
	Timeout uint32
	// Netmask is the persistence granularity as a prefix length; 0 means a
	// single address (/32 or /128).
	Netmask      int
	Destinations []Destination

	// Read-only, filled by backends when listing; ignored when diffing.
	Stats Stats
}

// Destination is one real server of a service.
type Destination struct {
	Addr       netip.Addr
	Port       uint16
	Weight     int
	Forwarding Forwarding
	// Connection thresholds; 0 = no limit.
	UpperThreshold uint32
	LowerThreshold uint32

	// Read-only, filled by backends when listing; ignored when diffing.
	ActiveConns   int
	InactiveConns int
	Stats         Stats
}

// DestKey identifies a destination within its service.
type DestKey struct {
	Addr netip.Addr
	Port uint16
}

func (d Destination) Key() DestKey { return DestKey{d.Addr, d.Port} }

func (k DestKey) String() string { return netip.AddrPortFrom(k.Addr, k.Port).String() }

// Stats are the kernel's counters (32-bit in the generic netlink API
// moby/ipvs reads; they wrap).
type Stats struct {
	Connections uint32
	PacketsIn   uint32
	PacketsOut  uint32
	BytesIn     uint64
	BytesOut    uint64
	CPS         uint32
	PPSIn       uint32
	PPSOut      uint32
	BPSIn       uint32
	BPSOut      uint32
}

// normFlags is what the kernel reports for the service's flags.
func (s *Service) normFlags() uint32 {
	f := s.Flags &^ (FlagHashed | FlagPersistent)
	if s.Timeout > 0 {
		f |= FlagPersistent
	}
	return f
}

// netmaskPrefix returns the effective persistence prefix length.
func (s *Service) netmaskPrefix() int {
	bits := 32
	if s.Key.Family == IPv6 {
		bits = 128
	}
	if s.Netmask <= 0 || s.Netmask > bits {
		return bits
	}
	return s.Netmask
}

// kernelNetmask encodes the persistence netmask the way IPVS wants it: a
// big-endian mask read as a native u32 for IPv4, a prefix length (1..128,
// 0 is EINVAL) for IPv6.
func (s *Service) kernelNetmask() uint32 {
	n := s.netmaskPrefix()
	if s.Key.Family == IPv6 {
		return uint32(n)
	}
	return binary.NativeEndian.Uint32(net.CIDRMask(n, 32))
}

// prefixFromKernelNetmask is the inverse of kernelNetmask.
func prefixFromKernelNetmask(f Family, v uint32) int {
	if f == IPv6 {
		return int(v)
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	ones, bits := net.IPMask(b[:]).Size()
	if bits == 0 { // not a contiguous mask: report as host mask mismatch
		return -1
	}
	return ones
}

// sameSettings reports whether two services agree on everything an update
// can change (not destinations, not stats).
func sameSettings(a, b *Service) bool {
	return a.Scheduler == b.Scheduler && a.normFlags() == b.normFlags() &&
		a.Timeout == b.Timeout && a.netmaskPrefix() == b.netmaskPrefix()
}

// sameDest reports whether two destinations (same key) agree on everything
// an update can change.
func sameDest(a, b *Destination) bool {
	return a.Weight == b.Weight && a.Forwarding == b.Forwarding &&
		a.UpperThreshold == b.UpperThreshold && a.LowerThreshold == b.LowerThreshold
}

// Table is a set of services, sorted by key.
type Table struct {
	Services []Service
}

// Lookup returns the service with key k.
func (t *Table) Lookup(k ServiceKey) (*Service, bool) {
	for i := range t.Services {
		if t.Services[i].Key == k {
			return &t.Services[i], true
		}
	}
	return nil, false
}

// Sort orders services by key and destinations by address and port.
func (t *Table) Sort() {
	slices.SortFunc(t.Services, func(a, b Service) int { return compareKeys(a.Key, b.Key) })
	for i := range t.Services {
		sortDests(t.Services[i].Destinations)
	}
}

func sortDests(d []Destination) {
	slices.SortFunc(d, func(a, b Destination) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
	})
}

// Validate checks a desired table: keys, no duplicate services or
// destinations, destination families matching the service (moby/ipvs cannot
// send mixed-family destinations), weights in range, a scheduler named.
func (t *Table) Validate() error {
	seen := map[ServiceKey]bool{}
	for i := range t.Services {
		s := &t.Services[i]
		if err := s.Key.validate(); err != nil {
			return err
		}
		if seen[s.Key] {
			return fmt.Errorf("%s: declared twice", s.Key)
		}
		seen[s.Key] = true
		if s.Scheduler == "" {
			return fmt.Errorf("%s: no scheduler", s.Key)
		}
		if len(s.Scheduler) >= 16 {
			return fmt.Errorf("%s: scheduler name %q too long", s.Key, s.Scheduler)
		}
		bits := 32
		if s.Key.Family == IPv6 {
			bits = 128
		}
		if s.Netmask < 0 || s.Netmask > bits {
			return fmt.Errorf("%s: persistence netmask /%d out of range", s.Key, s.Netmask)
		}
		dseen := map[DestKey]bool{}
		for j := range s.Destinations {
			d := &s.Destinations[j]
			if !d.Addr.IsValid() || d.Addr.Is4In6() {
				return fmt.Errorf("%s: destination without a valid address", s.Key)
			}
			if familyOf(d.Addr) != s.Key.Family {
				return fmt.Errorf("%s: destination %s is not %s", s.Key, d.Key(), s.Key.Family)
			}
			if dseen[d.Key()] {
				return fmt.Errorf("%s: destination %s declared twice", s.Key, d.Key())
			}
			dseen[d.Key()] = true
			if d.Weight < 0 || d.Weight > 65535 {
				return fmt.Errorf("%s: destination %s weight %d out of range 0..65535", s.Key, d.Key(), d.Weight)
			}
			switch d.Forwarding {
			case NAT, DR, Tunnel, Local:
			default:
				return fmt.Errorf("%s: destination %s: unknown forwarding %d", s.Key, d.Key(), d.Forwarding)
			}
			if d.LowerThreshold > d.UpperThreshold && d.UpperThreshold != 0 {
				return fmt.Errorf("%s: destination %s: lower threshold %d above upper %d", s.Key, d.Key(), d.LowerThreshold, d.UpperThreshold)
			}
		}
	}
	return nil
}
