package vrrp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

var (
	src4 = netip.MustParseAddr("10.99.0.1")
	src6 = netip.MustParseAddr("fe80::1")
	vip4 = netip.MustParseAddr("10.99.0.100")
	vip6 = netip.MustParseAddr("fd99::100")
)

func TestAdvertRoundTrip(t *testing.T) {
	pw := &Advert{Version: 2, VRID: 7, Priority: 100, Interval: 3 * time.Second, Addrs: []netip.Addr{vip4}}
	pw.SetPassword("secret")
	tests := []struct {
		name     string
		a        *Advert
		src, dst netip.Addr
		size     int
	}{
		{"v3 ipv4 multicast", &Advert{Version: 3, VRID: 51, Priority: 150, Interval: time.Second, Addrs: []netip.Addr{vip4, netip.MustParseAddr("10.99.0.101")}}, src4, Group4, 16},
		{"v3 ipv4 unicast 20ms", &Advert{Version: 3, VRID: 1, Priority: 255, Interval: 20 * time.Millisecond, Addrs: []netip.Addr{vip4}}, src4, netip.MustParseAddr("10.99.0.2"), 12},
		{"v3 ipv4 max interval", &Advert{Version: 3, VRID: 255, Priority: 1, Interval: 40950 * time.Millisecond, Addrs: []netip.Addr{vip4}}, src4, Group4, 12},
		{"v3 ipv6", &Advert{Version: 3, VRID: 9, Priority: 0, Interval: 100 * time.Millisecond, Addrs: []netip.Addr{vip6}}, src6, Group6, 24},
		{"v3 no addresses", &Advert{Version: 3, VRID: 9, Priority: 10, Interval: time.Second}, src4, Group4, 8},
		{"v2 no auth", &Advert{Version: 2, VRID: 51, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip4}}, src4, Group4, 20},
		{"v2 password", pw, src4, Group4, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.a.Marshal(tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != tt.size {
				t.Fatalf("len %d, want %d", len(b), tt.size)
			}
			got, err := Unmarshal(b, tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			want := *tt.a
			want.Checksum = binary.BigEndian.Uint16(b[6:8])
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
			// The one's-complement sum of a valid message (with its
			// pseudo-header) is all ones.
			var sum uint32
			if tt.a.Version == 3 {
				sum = pseudoSum(tt.src, tt.dst, len(b))
			}
			if f := fold(sumWords(sum, b)); f != 0 {
				t.Fatalf("checksum does not verify: %#x", f)
			}
		})
	}
}

// TestAdvertGolden pins the bytes: a VRRPv2 advert as keepalived sends it
// (vrid 51, prio 100, 1 VIP, auth PASS "1111", advert_int 1) and a VRRPv3
// one whose checksum was computed by hand from RFC 5798 section 5.2.8.
func TestAdvertGolden(t *testing.T) {
	a := &Advert{Version: 2, VRID: 51, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{netip.MustParseAddr("192.168.200.16")}}
	a.SetPassword("1111")
	b, err := a.Marshal(src4, Group4)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x21, 51, 100, 1, 1, 1, 0, 0, 192, 168, 200, 16, '1', '1', '1', '1', 0, 0, 0, 0}
	// v2 checksum: sum of 16-bit words of the message with csum 0.
	words := []uint32{0x2133, 0x6401, 0x0101, 0xc0a8, 0xc810, 0x3131, 0x3131}
	var s uint32
	for _, w := range words {
		s += w
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	binary.BigEndian.PutUint16(want[6:], ^uint16(s))
	if !bytes.Equal(b, want) {
		t.Fatalf("v2:\n got % x\nwant % x", b, want)
	}

	a3 := &Advert{Version: 3, VRID: 1, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	b, err = a3.Marshal(netip.MustParseAddr("10.0.0.2"), Group4)
	if err != nil {
		t.Fatal(err)
	}
	// pseudo: 0a00 0002 e000 0012 0070 000c; message: 3101 6401 0064 csum 0a00 0001
	s = 0x0a00 + 0x0002 + 0xe000 + 0x0012 + 0x0070 + 0x000c + 0x3101 + 0x6401 + 0x0064 + 0x0a00 + 0x0001
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	want = []byte{0x31, 1, 100, 1, 0x00, 0x64, 0, 0, 10, 0, 0, 1}
	binary.BigEndian.PutUint16(want[6:], ^uint16(s))
	if !bytes.Equal(b, want) {
		t.Fatalf("v3:\n got % x\nwant % x", b, want)
	}
}

func TestUnmarshalDrops(t *testing.T) {
	good := func(v uint8) []byte {
		a := &Advert{Version: v, VRID: 5, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip4}}
		b, err := a.Marshal(src4, Group4)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// fix recomputes the checksum after a mutation so the intended check fires.
	fix := func(b []byte) []byte {
		binary.BigEndian.PutUint16(b[6:8], checksum(b, b[0]>>4, src4, Group4))
		return b
	}
	tests := []struct {
		name string
		b    []byte
		src  netip.Addr
		want DropReason
	}{
		{"empty", nil, src4, DropLength},
		{"short header", good(3)[:7], src4, DropLength},
		{"truncated address", good(3)[:10], src4, DropLength},
		{"trailing byte", append(good(3), 0), src4, DropLength},
		{"count too high", fix(func() []byte { b := good(3); b[3] = 2; return b }()), src4, DropLength},
		{"v2 missing auth data", good(2)[:12], src4, DropLength},
		{"version 1", fix(func() []byte { b := good(3); b[0] = 0x11; return b }()), src4, DropVersion},
		{"version 4", fix(func() []byte { b := good(3); b[0] = 0x41; return b }()), src4, DropVersion},
		{"type 2", fix(func() []byte { b := good(3); b[0] = 0x32; return b }()), src4, DropType},
		{"bad checksum v3", func() []byte { b := good(3); b[7]++; return b }(), src4, DropChecksum},
		{"bad checksum v2", func() []byte { b := good(2); b[7]++; return b }(), src4, DropChecksum},
		{"v3 checksum for another source", good(3), netip.MustParseAddr("10.99.0.9"), DropChecksum},
		{"interval 0", fix(func() []byte { b := good(3); b[4], b[5] = 0, 0; return b }()), src4, DropInterval},
		{"v2 interval 0", fix(func() []byte { b := good(2); b[5] = 0; return b }()), src4, DropInterval},
		{"v2 AH", fix(func() []byte { b := good(2); b[4] = AuthAH; return b }()), src4, DropAuth},
		{"v2 over ipv6", good(2), src6, DropFamily},
		{"no source", good(3), netip.Addr{}, DropFamily},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := Group4
			if tt.src.Is6() {
				dst = Group6
			}
			_, err := Unmarshal(tt.b, tt.src, dst)
			if got := ReasonOf(err); got != tt.want {
				t.Fatalf("reason %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func TestMarshalRejects(t *testing.T) {
	tests := []struct {
		name string
		a    Advert
		src  netip.Addr
	}{
		{"version 4", Advert{Version: 4, Interval: time.Second}, src4},
		{"v3 interval too small", Advert{Version: 3, Interval: 5 * time.Millisecond}, src4},
		{"v3 interval too large", Advert{Version: 3, Interval: 41 * time.Second}, src4},
		{"v2 sub-second", Advert{Version: 2, Interval: 500 * time.Millisecond}, src4},
		{"v2 ipv6", Advert{Version: 2, Interval: time.Second}, src6},
		{"mixed family", Advert{Version: 3, Interval: time.Second, Addrs: []netip.Addr{vip6}}, src4},
		{"too many addresses", Advert{Version: 3, Interval: time.Second, Addrs: make([]netip.Addr, 256)}, src4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := Group4
			if tt.src.Is6() {
				dst = Group6
			}
			if b, err := tt.a.Marshal(tt.src, dst); err == nil {
				t.Fatalf("accepted: % x", b)
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, v := range []uint8{2, 3} {
		a := &Advert{Version: v, VRID: 5, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip4}}
		b, _ := a.Marshal(src4, Group4)
		f.Add(b, false)
	}
	a6 := &Advert{Version: 3, VRID: 5, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip6}}
	b6, _ := a6.Marshal(src6, Group6)
	f.Add(b6, true)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		src, dst := src4, Group4
		if v6 {
			src, dst = src6, Group6
		}
		a, err := Unmarshal(b, src, dst)
		if err != nil {
			if ReasonOf(err) == DropNone {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		// A packet we accept re-encodes to the same bytes, except the
		// reserved bits of a v3 interval field, which we send as zero.
		out, err := a.Marshal(src, dst)
		if err != nil {
			t.Fatalf("accepted %x but cannot re-encode %+v: %v", b, a, err)
		}
		if a.Version == 3 {
			b = bytes.Clone(b)
			b[4] &= 0x0f
			binary.BigEndian.PutUint16(b[6:8], checksum(b, 3, src, dst))
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded\n% x\nfrom\n% x", out, b)
		}
	})
}
