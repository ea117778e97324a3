package ipvs

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// unhex decodes hex with spaces, newlines and | separators (as written in
// the golden messages below).
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.NewReplacer(" ", "", "\n", "", "\t", "", "|", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// Golden messages, checked by hand against struct ip_vs_sync_mesg and
// struct ip_vs_sync_v4 / ip_vs_sync_v6 (net/netfilter/ipvs/ip_vs_sync.c).
var (
	goldenV4Conn = SyncConn{
		Protocol: TCP, Flags: uint32(DR) | ConnFlagNoOutput, State: TCPStateEstablished,
		Client: ap("10.99.0.2:49832"), Virtual: ap("10.99.0.101:23"), Dest: ap("10.99.0.3:23"),
	}
	goldenV4 = `
	00 0e 002c 01 01 0000  | header: reserved 0, syncid 14, size 44, nr_conns 1, version 1, spare 0
	00 06 0024             | +0 type 0 (v4), +1 protocol 6, +2 ver_size: version 0, size 36
	00000083               | +4 flags: DROUTE (3) | NOOUTPUT (0x80)
	0001 c2a8 0017 0017    | +8 state 1 (ESTABLISHED), +10 cport 49832, +12 vport 23, +14 dport 23
	00000000 00000000      | +16 fwmark 0, +20 timeout 0
	0a630002 0a630065 0a630003 | +24 caddr, +28 vaddr, +32 daddr
	`
	goldenV6Conn = SyncConn{
		Protocol: UDP, Flags: uint32(NAT) | ConnFlagInactive, State: 0,
		Client: ap("[fd99::2]:5353"), Virtual: ap("[fd99::101]:53"), Dest: ap("[fd99::3]:53"),
		FWMark: 7, Timeout: 300,
	}
	goldenV6 = `
	00 0e 0050 01 01 0000  | header: syncid 14, size 80, nr_conns 1, version 1
	01 11 0048             | +0 type 1 (STYPE_F_INET6), +1 protocol 17, +2 size 72
	00000100               | +4 flags: MASQ (0) | INACTIVE (0x100)
	0000 14e9 0035 0035    | +8 state 0, +10 cport 5353, +12 vport 53, +14 dport 53
	00000007 0000012c      | +16 fwmark 7, +20 timeout 300
	fd990000000000000000000000000002 | +24 caddr
	fd990000000000000000000000000101 | +40 vaddr
	fd990000000000000000000000000003 | +56 daddr
	`
)

func TestSyncMessageGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		conn SyncConn
		hex  string
	}{
		{"v4", goldenV4Conn, goldenV4},
		{"v6", goldenV6Conn, goldenV6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, stripComments(tc.hex))
			got, err := SyncMessage{SyncID: 14, Conns: []SyncConn{tc.conn}}.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("marshal:\n got %x\nwant %x", got, want)
			}
			m, err := UnmarshalSyncMessage(want)
			if err != nil {
				t.Fatal(err)
			}
			if m.SyncID != 14 || len(m.Conns) != 1 || !reflect.DeepEqual(m.Conns[0], tc.conn) {
				t.Fatalf("unmarshal: %+v, want %+v", m, tc.conn)
			}
		})
	}
}

// stripComments drops everything after | on each line.
func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, "|"); i >= 0 {
			l = l[:i]
		}
		b.WriteString(l)
	}
	return b.String()
}

// A connection with options of odd length is followed by zero padding
// before the next one, never after the last (ip_vs_sync_conn).
func TestSyncMessagePadding(t *testing.T) {
	first := goldenV4Conn
	first.Options = []byte{0x41, 1, 0xaa} // an optional (0x40) parameter of type 1, 1 byte
	m := SyncMessage{SyncID: 3, Conns: []SyncConn{first, goldenV6Conn}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// header 8 + 39 + 1 padding + 72
	if len(b) != 8+39+1+72 || b[8+39] != 0 || b[4] != 2 {
		t.Fatalf("layout: %d bytes, nr_conns %d: %x", len(b), b[4], b)
	}
	if got := int(b[8+2])<<8 | int(b[8+3]); got != 39 {
		t.Fatalf("first connection's size %d, want 39", got)
	}
	back, err := UnmarshalSyncMessage(b)
	if err != nil || !reflect.DeepEqual(back, m) {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	b[8+39] = 1
	if _, err := UnmarshalSyncMessage(b); err == nil {
		t.Fatal("non-zero padding accepted")
	}
}

func TestMarshalSyncMessagesSplits(t *testing.T) {
	conns := func(n int, c SyncConn) []SyncConn {
		out := make([]SyncConn, n)
		for i := range out {
			out[i] = c
			out[i].Client = netip.AddrPortFrom(c.Client.Addr(), uint16(1000+i))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		conns  []SyncConn
		maxLen int
		want   []int // connections per message
	}{
		{"v4 at the kernel master's 1472 bytes", conns(100, goldenV4Conn), 1472, []int{40, 40, 20}},
		{"v6 at 1452 bytes", conns(45, goldenV6Conn), 1452, []int{20, 20, 5}},
		{"255 connections at most", conns(300, goldenV4Conn), 65535, []int{255, 45}},
		{"exactly full", conns(2, goldenV4Conn), 8 + 2*36, []int{2}},
		{"one per message", conns(3, goldenV4Conn), 8 + 2*36 - 1, []int{1, 1, 1}},
		{"none", nil, 1472, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := MarshalSyncMessages(9, tc.conns, tc.maxLen)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			var all []SyncConn
			for _, b := range msgs {
				if len(b) > tc.maxLen {
					t.Fatalf("%d-byte message, limit %d", len(b), tc.maxLen)
				}
				m, err := UnmarshalSyncMessage(b)
				if err != nil {
					t.Fatal(err)
				}
				if m.SyncID != 9 {
					t.Fatalf("sync id %d", m.SyncID)
				}
				got = append(got, len(m.Conns))
				all = append(all, m.Conns...)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("connections per message %v, want %v", got, tc.want)
			}
			if len(tc.conns) > 0 && !reflect.DeepEqual(all, tc.conns) {
				t.Fatal("connections changed or reordered")
			}
		})
	}
}

func TestMarshalSyncMessagesRejects(t *testing.T) {
	mixed := goldenV4Conn
	mixed.Dest = ap("[fd99::3]:23")
	noAddr := goldenV4Conn
	noAddr.Client = netip.AddrPort{}
	zoned := goldenV6Conn
	zoned.Client = netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 1)
	badProto := goldenV4Conn
	badProto.Protocol = 256
	badOpt := goldenV4Conn
	badOpt.Options = []byte{1, 5, 0}
	longOpt := goldenV4Conn
	longOpt.Options = bytes.Repeat([]byte{0x41, 200, 200: 0}, 20)
	for name, c := range map[string]SyncConn{
		"mixed families": mixed, "no client address": noAddr, "zone": zoned,
		"protocol beyond a byte": badProto, "truncated option": badOpt, "options beyond 4095 bytes": longOpt,
	} {
		if _, err := MarshalSyncMessages(1, []SyncConn{c}, 1472); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := (SyncMessage{Conns: []SyncConn{c}}).Marshal(); err == nil {
			t.Errorf("%s: Marshal accepted", name)
		}
	}
	for _, n := range []int{0, 43, 65536} {
		if _, err := MarshalSyncMessages(1, []SyncConn{goldenV4Conn}, n); err == nil {
			t.Errorf("maxLen %d accepted", n)
		}
	}
	if _, err := MarshalSyncMessages(1, []SyncConn{goldenV6Conn}, 79); err == nil {
		t.Error("a v6 connection in a 79-byte message accepted")
	}
	if _, err := (SyncMessage{Conns: make([]SyncConn, 256)}).Marshal(); err == nil {
		t.Error("256 connections in one message accepted")
	}
}

func TestUnmarshalSyncMessageRejects(t *testing.T) {
	good := unhex(t, stripComments(goldenV4))
	mod := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	setSize := func(b []byte) []byte { b[2], b[3] = byte(len(b)>>8), byte(len(b)); return b }
	for name, b := range map[string][]byte{
		"empty":              {},
		"short header":       good[:7],
		"size field":         mod(func(b []byte) []byte { b[3]++; return b }),
		"version 0 message":  mod(func(b []byte) []byte { b[0] = 1; return b }),
		"version 2":          mod(func(b []byte) []byte { b[5] = 2; return b }),
		"spare":              mod(func(b []byte) []byte { b[7] = 1; return b }),
		"truncated conn":     setSize(good[:8+35]),
		"one conn missing":   mod(func(b []byte) []byte { b[4] = 2; return b }),
		"trailing bytes":     mod(func(b []byte) []byte { return setSize(append(b, 0, 0, 0, 0)) }),
		"unknown type":       mod(func(b []byte) []byte { b[8] = 2; return b }),
		"conn version":       mod(func(b []byte) []byte { b[10] |= 0x10; return b }),
		"conn size short":    mod(func(b []byte) []byte { b[11] = 35; return b }),
		"conn size too long": mod(func(b []byte) []byte { b[11] = 37; return b }),
		"v6 type in v4 size": mod(func(b []byte) []byte { b[8] = 1; return b }),
		"option zero length": mod(func(b []byte) []byte { b[11] = 38; return setSize(append(b, 1, 0)) }),
		"option too long":    mod(func(b []byte) []byte { b[11] = 39; return setSize(append(b, 1, 5, 0)) }),
	} {
		if m, err := UnmarshalSyncMessage(b); err == nil {
			t.Errorf("%s: accepted as %+v", name, m)
		}
	}
}

func FuzzSyncMessage(f *testing.F) {
	f.Add(unhex(f, stripComments(goldenV4)))
	f.Add(unhex(f, stripComments(goldenV6)))
	padded, _ := SyncMessage{SyncID: 3, Conns: []SyncConn{
		{Protocol: TCP, Client: ap("10.99.0.2:1"), Virtual: ap("10.99.0.101:23"), Dest: ap("10.99.0.3:23"), Options: []byte{0x41, 1, 0xaa}},
		goldenV6Conn,
	}}.Marshal()
	f.Add(padded)
	f.Add([]byte{0, 1, 0, 8, 0, 1, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := UnmarshalSyncMessage(b)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("accepted message does not marshal: %v\n%x", err, b)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip changed the bytes:\n in %x\nout %x", b, out)
		}
		split, err := MarshalSyncMessages(m.SyncID, m.Conns, syncMaxMsgLen)
		if err != nil {
			t.Fatalf("MarshalSyncMessages: %v", err)
		}
		if len(m.Conns) > 0 && (len(split) != 1 || !bytes.Equal(split[0], b)) {
			t.Fatalf("MarshalSyncMessages gave %d messages, not the input", len(split))
		}
	})
}
