package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The testdata/conns files were captured in the vm-tier guest by
// TestGuestResync (Debian 6.1 kernel): 24 + 4 + 4 idle TCP connections
// through DR services (one persistent, one IPv6), one UDP entry and one
// persistence template, on the master (both formats) and, after the
// resync, on the backup.
func TestReadConnsCaptured(t *testing.T) {
	for _, tc := range []struct {
		file   string
		origin string
	}{
		{"master_ip_vs_conn.txt", ""},
		{"master_ip_vs_conn_sync.txt", "LOCAL"},
		{"backup_ip_vs_conn_sync.txt", "SYNC"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			conns, err := ReadConns("testdata/conns/"+tc.file, 0)
			if err != nil {
				t.Fatal(err)
			}
			count := map[string]int{}
			for _, c := range conns {
				if c.Origin != tc.origin || !c.StateKnown || c.Expires < 290*time.Second {
					t.Errorf("entry %+v", c)
				}
				switch {
				case c.Template:
					count["template"]++
				case c.Protocol == UDP:
					count["udp"]++
				case c.Protocol == TCP && c.Client.Addr().Is6():
					count["tcp6"]++
				case c.Protocol == TCP && c.Virtual == ap("10.99.8.102:23"):
					count["persistent"]++
				case c.Protocol == TCP:
					count["tcp4"]++
				}
			}
			want := map[string]int{"tcp4": 24, "persistent": 4, "tcp6": 4, "udp": 1, "template": 1}
			if !reflect.DeepEqual(count, want) {
				t.Fatalf("entries by kind %v, want %v", count, want)
			}
		})
	}
}

// Each kind of line, from the captures and (where the guest has no way to
// make one: firewall-mark templates, SCTP, sip, a due timer) written after
// ip_vs_conn_seq_show's format.
func TestParseConnLine(t *testing.T) {
	v6 := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	for _, tc := range []struct {
		name   string
		line   string
		origin bool
		want   Conn
	}{
		{"tcp v4 (captured)", "TCP 0A630802 B812 0A630865 0017 0A630803 0017 ESTABLISHED     898", false,
			Conn{Protocol: TCP, Client: ap("10.99.8.2:47122"), Virtual: ap("10.99.8.101:23"), Dest: ap("10.99.8.3:23"),
				StateName: "ESTABLISHED", State: 1, StateKnown: true, Expires: 898 * time.Second}},
		{"tcp v6 (captured)", "TCP fd99:0008:0000:0000:0000:0000:0000:0002 A8BC fd99:0008:0000:0000:0000:0000:0000:0101 0017 fd99:0008:0000:0000:0000:0000:0000:0003 0017 ESTABLISHED     899", false,
			Conn{Protocol: TCP, Client: v6("[fd99:8::2]:43196"), Virtual: v6("[fd99:8::101]:23"), Dest: v6("[fd99:8::3]:23"),
				StateName: "ESTABLISHED", State: 1, StateKnown: true, Expires: 899 * time.Second}},
		{"udp (captured)", "UDP 0A630802 C7F9 0A630865 0035 0A630803 0035 UDP             299", false,
			Conn{Protocol: UDP, Client: ap("10.99.8.2:51193"), Virtual: ap("10.99.8.101:53"), Dest: ap("10.99.8.3:53"),
				StateName: "UDP", State: 0, StateKnown: true, Expires: 299 * time.Second}},
		{"template (captured)", "TCP 0A630802 0000 0A630866 0017 0A630803 0017 ASSURED     SYNC       594", true,
			Conn{Protocol: TCP, Client: ap("10.99.8.2:0"), Virtual: ap("10.99.8.102:23"), Dest: ap("10.99.8.3:23"),
				StateName: "ASSURED", State: 1, StateKnown: true, Template: true, Expires: 594 * time.Second, Origin: "SYNC"}},
		{"template in state NONE", "TCP 0A630802 0000 0A630866 0000 0A630803 0017 NONE            300", false,
			Conn{Protocol: TCP, Client: ap("10.99.8.2:0"), Virtual: ap("10.99.8.102:0"), Dest: ap("10.99.8.3:23"),
				StateName: "NONE", State: 0, StateKnown: true, Template: true, Expires: 300 * time.Second}},
		{"fwmark template v4", "IP  0A630800 0000 00000005 0000 0A630803 0000 NONE            120", false,
			Conn{Protocol: 0, Client: ap("10.99.8.0:0"), Virtual: ap("0.0.0.5:0"), Dest: ap("10.99.8.3:0"),
				StateName: "NONE", State: 0, StateKnown: true, Template: true, Expires: 120 * time.Second}},
		{"fwmark template v6", "IP  fd99:0008:0000:0000:0000:0000:0000:0000 0000 0000:0006:0000:0000:0000:0000:0000:0000 0000 fd99:0008:0000:0000:0000:0000:0000:0003 0000 ASSURED          60", false,
			Conn{Protocol: 0, Client: v6("[fd99:8::]:0"), Virtual: v6("[0:6::]:0"), Dest: v6("[fd99:8::3]:0"),
				StateName: "ASSURED", State: 1, StateKnown: true, Template: true, Expires: 60 * time.Second}},
		{"sctp established", "SCTP 0A630802 1F90 0A630865 0B59 0A630803 0B59 ESTABLISHED     900", false,
			Conn{Protocol: SCTP, Client: ap("10.99.8.2:8080"), Virtual: ap("10.99.8.101:2905"), Dest: ap("10.99.8.3:2905"),
				StateName: "ESTABLISHED", State: 8, StateKnown: true, Expires: 900 * time.Second}},
		{"tcp syn_recv", "TCP 0A630802 B812 0A630865 0017 0A630803 0017 SYN_RECV         59", false,
			Conn{Protocol: TCP, Client: ap("10.99.8.2:47122"), Virtual: ap("10.99.8.101:23"), Dest: ap("10.99.8.3:23"),
				StateName: "SYN_RECV", State: 3, StateKnown: true, Expires: 59 * time.Second}},
		{"timer due: the kernel prints a negative difference unsigned", "TCP 0A630802 B812 0A630865 0017 0A630803 0017 TIME_WAIT   73786976294838206", false,
			Conn{Protocol: TCP, Client: ap("10.99.8.2:47122"), Virtual: ap("10.99.8.101:23"), Dest: ap("10.99.8.3:23"),
				StateName: "TIME_WAIT", State: 5, StateKnown: true}},
		{"sip persistence engine", "UDP 0A630802 0000 0A630865 13C4 0A630803 13C4 NONE            179 sip a84b4c76e66710@pc33.example", false,
			Conn{Protocol: UDP, Client: ap("10.99.8.2:0"), Virtual: ap("10.99.8.101:5060"), Dest: ap("10.99.8.3:5060"),
				StateName: "NONE", StateKnown: true, Template: true, Expires: 179 * time.Second, PEName: "sip", PEData: "a84b4c76e66710@pc33.example"}},
		{"unknown state kept, not known", "TCP 0A630802 B812 0A630865 0017 0A630803 0017 ERR!            10", false,
			Conn{Protocol: TCP, Client: ap("10.99.8.2:47122"), Virtual: ap("10.99.8.101:23"), Dest: ap("10.99.8.3:23"),
				StateName: "ERR!", Expires: 10 * time.Second}},
		{"mixed-family destination", "TCP fd99:0008:0000:0000:0000:0000:0000:0002 A8BC fd99:0008:0000:0000:0000:0000:0000:0101 0017 0A630803 0017 ESTABLISHED     899", false,
			Conn{Protocol: TCP, Client: v6("[fd99:8::2]:43196"), Virtual: v6("[fd99:8::101]:23"), Dest: ap("10.99.8.3:23"),
				StateName: "ESTABLISHED", State: 1, StateKnown: true, Expires: 899 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConnLine(tc.line, tc.origin)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestConnFWMark(t *testing.T) {
	for _, tc := range []struct {
		c    Conn
		want uint32
	}{
		{Conn{Protocol: 0, Virtual: ap("0.0.0.5:0")}, 5},
		{Conn{Protocol: 0, Virtual: ap("1.2.3.4:0")}, 0x01020304},
		{Conn{Protocol: 0, Virtual: netip.MustParseAddrPort("[0:6::]:0")}, 6},
		{Conn{Protocol: TCP, Virtual: ap("0.0.0.5:0")}, 0},
	} {
		if got := tc.c.FWMark(); got != tc.want {
			t.Errorf("%+v: mark %d, want %d", tc.c, got, tc.want)
		}
	}
}

const connHeader = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"

func TestScanConnsRejects(t *testing.T) {
	line := "TCP 0A630802 B812 0A630865 0017 0A630803 0017 ESTABLISHED     898\n"
	for name, text := range map[string]string{
		"empty":            "",
		"unknown header":   "Proto From To\n" + line,
		"short line":       connHeader + "TCP 0A630802 B812 0A630865 0017\n",
		"bad v4 address":   connHeader + strings.Replace(line, "0A630802", "0A63080G", 1),
		"bad v6 address":   connHeader + strings.Replace(line, "0A630802", "fd99::zz", 1),
		"zoned v6 address": connHeader + strings.Replace(line, "0A630802", "fe80::1%eth0", 1),
		"bad port":         connHeader + strings.Replace(line, "B812", "B81Z", 1),
		"port too big":     connHeader + strings.Replace(line, "B812", "1B812", 1),
		"bad protocol":     connHeader + strings.Replace(line, "TCP", "XTP", 1),
		"bad expires":      connHeader + strings.Replace(line, "898", "-1", 1),
		"mixed families":   connHeader + strings.Replace(line, "0A630865", "fd99:0008:0000:0000:0000:0000:0000:0101", 1),
		"line too long":    connHeader + strings.Repeat("x", 2000) + "\n",
	} {
		err := ScanConns(strings.NewReader(text), 0, func(Conn) error { return nil })
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestScanConnsLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString(connHeader)
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "TCP 0A630802 %04X 0A630865 0017 0A630803 0017 ESTABLISHED     898\n", 1000+i)
	}
	b.WriteString("\n") // a blank line is not an entry
	n := 0
	count := func(Conn) error { n++; return nil }
	if err := ScanConns(strings.NewReader(b.String()), 10, count); err != nil || n != 10 {
		t.Fatalf("10 entries with a limit of 10: %d, %v", n, err)
	}
	n = 0
	if err := ScanConns(strings.NewReader(b.String()), 9, count); !errors.Is(err, ErrTooManyConns) || n != 9 {
		t.Fatalf("10 entries with a limit of 9: %d, %v", n, err)
	}
	stop := errors.New("stop")
	if err := ScanConns(strings.NewReader(b.String()), 0, func(Conn) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("callback error not returned: %v", err)
	}
	if _, err := ReadConns("testdata/conns/no-such-file", 0); err == nil {
		t.Fatal("missing file read")
	}
}
