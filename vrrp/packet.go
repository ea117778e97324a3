package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Protocol constants (RFC 5798 section 5, RFC 3768 section 5).
const (
	IPProto       = 112 // IP protocol number of VRRP
	TTL           = 255 // TTL / hop limit every advert must carry
	TypeAdvert    = 1
	headerLen     = 8
	v2AuthLen     = 8
	maxV3Interval = 4095 * 10 * time.Millisecond // 12-bit centiseconds
	maxV2Interval = 255 * time.Second
)

// Well-known multicast groups for adverts.
var (
	Group4 = netip.MustParseAddr("224.0.0.18")
	Group6 = netip.MustParseAddr("ff02::12")
)

// VRRPv2 authentication types (RFC 2338; removed by RFC 3768 but still used
// by keepalived's auth_type PASS).
const (
	AuthNone       = 0
	AuthSimpleText = 1
	AuthAH         = 2 // not supported: dropped as DropAuth
)

// Advert is one VRRP advertisement as plain data.
//
// Interval is sent in centiseconds for version 3 (10ms..40.95s) and in whole
// seconds for version 2 (1s..255s). Addrs are the virtual addresses, all of
// the family of the packet. AuthType/AuthData exist on the wire only for
// version 2.
type Advert struct {
	Version  uint8
	VRID     uint8
	Priority uint8
	Interval time.Duration
	Addrs    []netip.Addr
	AuthType uint8
	AuthData [8]byte
	// Checksum is the value found on the wire by Unmarshal; Marshal ignores it.
	Checksum uint16
}

// DropReason says why a received packet was not used. Every drop is counted
// under its reason (see Counters).
type DropReason int

// Drop reasons. DropNone is never returned for an error.
const (
	DropNone     DropReason = iota
	DropLength              // shorter than a header, or length disagrees with the address count
	DropVersion             // not 2 or 3, or not the instance's version
	DropType                // not an ADVERTISEMENT
	DropVRID                // another virtual router (normal when several share a link)
	DropTTL                 // TTL / hop limit not 255
	DropChecksum            // bad checksum
	DropFamily              // v2 over IPv6, or addresses of the wrong family
	DropInterval            // interval 0, or (v2) different from ours
	DropAuth                // v2 authentication type or password mismatch
	DropSelf                // our own advert looped back
	numDropReasons
)

var dropNames = [...]string{"none", "length", "version", "type", "vrid", "ttl", "checksum", "family", "interval", "auth", "self"}

func (r DropReason) String() string {
	if r >= 0 && int(r) < len(dropNames) {
		return dropNames[r]
	}
	return fmt.Sprintf("drop(%d)", int(r))
}

// DropError is the error returned for a packet that must be dropped.
type DropError struct {
	Reason DropReason
	Detail string
}

func (e *DropError) Error() string { return "vrrp: drop (" + e.Reason.String() + "): " + e.Detail }

func drop(r DropReason, format string, args ...any) error {
	return &DropError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the drop reason of err, or DropNone.
func ReasonOf(err error) DropReason {
	var de *DropError
	if errors.As(err, &de) {
		return de.Reason
	}
	return DropNone
}

// SetPassword stores a v2 simple-text password (at most 8 bytes, zero padded
// like keepalived's auth_pass) and sets AuthType.
func (a *Advert) SetPassword(pass string) {
	a.AuthData = passwordData(pass)
	a.AuthType = AuthSimpleText
	if pass == "" {
		a.AuthType = AuthNone
	}
}

func passwordData(pass string) (d [8]byte) {
	copy(d[:], pass)
	return d
}

// Marshal encodes a for sending from src to dst; src and dst feed the
// version 3 pseudo-header checksum (dst is the group or the unicast peer).
func (a *Advert) Marshal(src, dst netip.Addr) ([]byte, error) {
	if err := checkEndpoints(src, dst); err != nil {
		return nil, err
	}
	v6 := src.Is6() && !src.Is4In6()
	alen := 4
	if v6 {
		alen = 16
	}
	if len(a.Addrs) > 255 {
		return nil, fmt.Errorf("vrrp: %d addresses, at most 255", len(a.Addrs))
	}
	for _, ad := range a.Addrs {
		if (ad.Is6() && !ad.Is4In6()) != v6 {
			return nil, fmt.Errorf("vrrp: address %s is not of the family of source %s", ad, src)
		}
	}
	n := headerLen + alen*len(a.Addrs)
	var b []byte
	switch a.Version {
	case 3:
		cs := a.Interval / (10 * time.Millisecond)
		if a.Interval < 10*time.Millisecond || a.Interval > maxV3Interval {
			return nil, fmt.Errorf("vrrp: v3 interval %v out of range 10ms..40.95s", a.Interval)
		}
		b = make([]byte, n)
		binary.BigEndian.PutUint16(b[4:6], uint16(cs)&0x0fff)
	case 2:
		if v6 {
			return nil, errors.New("vrrp: version 2 is IPv4 only")
		}
		if a.Interval < time.Second || a.Interval > maxV2Interval {
			return nil, fmt.Errorf("vrrp: v2 interval %v out of range 1s..255s", a.Interval)
		}
		b = make([]byte, n+v2AuthLen)
		b[4] = a.AuthType
		b[5] = uint8(a.Interval / time.Second)
		copy(b[n:], a.AuthData[:])
	default:
		return nil, fmt.Errorf("vrrp: version %d, want 2 or 3", a.Version)
	}
	b[0] = a.Version<<4 | TypeAdvert
	b[1] = a.VRID
	b[2] = a.Priority
	b[3] = uint8(len(a.Addrs))
	off := headerLen
	for _, ad := range a.Addrs {
		if v6 {
			s := ad.As16()
			copy(b[off:], s[:])
		} else {
			s := ad.Unmap().As4()
			copy(b[off:], s[:])
		}
		off += alen
	}
	binary.BigEndian.PutUint16(b[6:8], checksum(b, a.Version, src, dst))
	return b, nil
}

func checkEndpoints(src, dst netip.Addr) error {
	if !src.IsValid() || !dst.IsValid() {
		return fmt.Errorf("vrrp: source %v and destination %v must both be set", src, dst)
	}
	if src.Unmap().Is4() != dst.Unmap().Is4() {
		return fmt.Errorf("vrrp: source %s and destination %s of different families", src, dst)
	}
	return nil
}

// checksum computes the VRRP checksum of b (whose checksum field may hold
// anything: it is treated as zero).
func checksum(b []byte, version uint8, src, dst netip.Addr) uint16 {
	var sum uint32
	if version == 3 {
		sum = pseudoSum(src, dst, len(b))
	}
	sum = sumWords(sum, b[:6])
	sum = sumWords(sum, b[8:])
	return fold(sum)
}

// pseudoSum is the one's-complement sum of the IPv4 (12-byte) or IPv6
// (40-byte) pseudo-header of RFC 5798 section 5.2.8.
func pseudoSum(src, dst netip.Addr, length int) uint32 {
	var sum uint32
	if src.Is4() || src.Is4In6() {
		s, d := src.Unmap().As4(), dst.Unmap().As4()
		sum = sumWords(sum, s[:])
		sum = sumWords(sum, d[:])
		sum += IPProto + uint32(length)
		return sum
	}
	s, d := src.As16(), dst.As16()
	sum = sumWords(sum, s[:])
	sum = sumWords(sum, d[:])
	sum += uint32(length>>16) + uint32(length&0xffff) + IPProto
	return sum
}

func sumWords(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// Unmarshal decodes and validates one VRRP message (without IP header)
// received from src for dst. It checks what the packet alone can tell:
// length, version, type, address count, family, checksum, interval and the
// v2 auth type. The receiver checks TTL, VRID, our version and password.
// Every error is a *DropError.
func Unmarshal(b []byte, src, dst netip.Addr) (Advert, error) {
	var a Advert
	if len(b) < headerLen {
		return a, drop(DropLength, "%d bytes, header is %d", len(b), headerLen)
	}
	a.Version = b[0] >> 4
	if t := b[0] & 0x0f; a.Version != 2 && a.Version != 3 {
		return a, drop(DropVersion, "version %d", a.Version)
	} else if t != TypeAdvert {
		return a, drop(DropType, "type %d", t)
	}
	if err := checkEndpoints(src, dst); err != nil {
		return a, drop(DropFamily, "%v", err)
	}
	v6 := src.Is6() && !src.Is4In6()
	if v6 && a.Version == 2 {
		return a, drop(DropFamily, "version 2 over IPv6")
	}
	alen := 4
	if v6 {
		alen = 16
	}
	a.VRID, a.Priority = b[1], b[2]
	count := int(b[3])
	want := headerLen + count*alen
	if a.Version == 2 {
		want += v2AuthLen
	}
	if len(b) != want {
		return a, drop(DropLength, "%d bytes for %d addresses, want %d", len(b), count, want)
	}
	a.Checksum = binary.BigEndian.Uint16(b[6:8])
	if c := checksum(b, a.Version, src, dst); c != a.Checksum {
		return a, drop(DropChecksum, "checksum %#04x, computed %#04x", a.Checksum, c)
	}
	if a.Version == 3 {
		a.Interval = time.Duration(binary.BigEndian.Uint16(b[4:6])&0x0fff) * 10 * time.Millisecond
	} else {
		a.AuthType = b[4]
		a.Interval = time.Duration(b[5]) * time.Second
		copy(a.AuthData[:], b[want-v2AuthLen:])
		if a.AuthType != AuthNone && a.AuthType != AuthSimpleText {
			return a, drop(DropAuth, "auth type %d not supported", a.AuthType)
		}
	}
	if a.Interval == 0 {
		return a, drop(DropInterval, "interval 0")
	}
	if count > 0 {
		a.Addrs = make([]netip.Addr, count)
	}
	for i := range count {
		o := headerLen + i*alen
		if v6 {
			a.Addrs[i] = netip.AddrFrom16([16]byte(b[o : o+16]))
		} else {
			a.Addrs[i] = netip.AddrFrom4([4]byte(b[o : o+4]))
		}
	}
	return a, nil
}
