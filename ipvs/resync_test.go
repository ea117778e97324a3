package ipvs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// resyncSite has a service of each kind the mapper tells apart.
func resyncSite() Table {
	return Table{Services: []Service{
		{Key: AddrKey(TCP, ap("10.99.8.101:23")), Scheduler: "rr", Destinations: []Destination{
			{Addr: ip("10.99.8.3"), Port: 23, Weight: 1, Forwarding: DR},
			{Addr: ip("10.99.8.4"), Port: 2323, Weight: 1, Forwarding: NAT},
		}},
		{Key: AddrKey(TCP, ap("10.99.8.102:0")), Scheduler: "rr", Timeout: 300, Destinations: []Destination{
			{Addr: ip("10.99.8.3"), Port: 0, Weight: 1, Forwarding: Tunnel},
		}},
		{Key: AddrKey(UDP, ap("10.99.8.101:53")), Scheduler: "rr", Destinations: []Destination{
			{Addr: ip("10.99.8.3"), Port: 53, Weight: 1, Forwarding: DR},
		}},
		{Key: AddrKey(TCP, ap("10.99.8.103:23")), Scheduler: "rr"}, // no real server
		{Key: MarkKey(IPv4, 5), Scheduler: "sh", Timeout: 60, Destinations: []Destination{
			{Addr: ip("10.99.8.5"), Weight: 1, Forwarding: DR},
		}},
		{Key: AddrKey(TCP, netip.MustParseAddrPort("[fd99:8::101]:23")), Scheduler: "rr", Destinations: []Destination{
			{Addr: ip("fd99:8::3"), Port: 23, Weight: 1, Forwarding: DR},
		}},
	}}
}

func TestConnMapper(t *testing.T) {
	const (
		dr     = uint32(DR) | ConnFlagNoOutput
		tun    = uint32(Tunnel) | ConnFlagNoOutput
		nat    = uint32(NAT)
		inact  = ConnFlagInactive
		tmpl   = ConnFlagTemplate | ConnFlagInactive
		minute = time.Minute
	)
	v6 := netip.MustParseAddrPort
	est := func(p Protocol, c, v, d netip.AddrPort) Conn {
		return Conn{Protocol: p, Client: c, Virtual: v, Dest: d, StateName: "ESTABLISHED", State: 1, StateKnown: true, Expires: 15 * minute}
	}
	with := func(c Conn, f func(*Conn)) Conn { f(&c); return c }
	tcp := est(TCP, ap("10.99.8.2:40000"), ap("10.99.8.101:23"), ap("10.99.8.3:23"))
	for _, tc := range []struct {
		name string
		conn Conn
		want SyncConn
		skip skipReason
	}{
		{"established, DR", tcp,
			SyncConn{Protocol: TCP, Flags: dr, State: 1, Client: tcp.Client, Virtual: tcp.Virtual, Dest: tcp.Dest}, skipNone},
		{"handshake, NAT server: inactive, output seen", with(tcp, func(c *Conn) { c.Dest = ap("10.99.8.4:2323"); c.StateName, c.State = "SYN_RECV", 3 }),
			SyncConn{Protocol: TCP, Flags: nat | inact, State: 3, Client: tcp.Client, Virtual: tcp.Virtual, Dest: ap("10.99.8.4:2323")}, skipNone},
		{"server no longer declared: the first one's forwarding", with(tcp, func(c *Conn) { c.Dest = ap("10.99.8.9:23") }),
			SyncConn{Protocol: TCP, Flags: dr, State: 1, Client: tcp.Client, Virtual: tcp.Virtual, Dest: ap("10.99.8.9:23")}, skipNone},
		{"connection of a port-0 service", est(TCP, ap("10.99.8.2:40001"), ap("10.99.8.102:8080"), ap("10.99.8.3:8080")),
			SyncConn{Protocol: TCP, Flags: tun, State: 1, Client: ap("10.99.8.2:40001"), Virtual: ap("10.99.8.102:8080"), Dest: ap("10.99.8.3:8080")}, skipNone},
		{"template of a port-0 service keeps what is left of it",
			Conn{Protocol: TCP, Client: ap("10.99.8.2:0"), Virtual: ap("10.99.8.102:0"), Dest: ap("10.99.8.3:0"), StateName: "ASSURED", State: 1, StateKnown: true, Template: true, Expires: 250 * time.Second},
			SyncConn{Protocol: TCP, Flags: tun | tmpl, State: 1, Client: ap("10.99.8.2:0"), Virtual: ap("10.99.8.102:0"), Dest: ap("10.99.8.3:0"), Timeout: 250}, skipNone},
		{"fwmark template: the mark from the virtual address",
			Conn{Protocol: 0, Client: ap("10.99.8.2:0"), Virtual: ap("0.0.0.5:0"), Dest: ap("10.99.8.5:0"), StateName: "NONE", StateKnown: true, Template: true, Expires: 1500 * time.Millisecond},
			SyncConn{Protocol: 0, Flags: dr | tmpl, Client: ap("10.99.8.2:0"), Virtual: ap("0.0.0.5:0"), Dest: ap("10.99.8.5:0"), FWMark: 5, Timeout: 2}, skipNone},
		{"fwmark connection: the mark from its real server", est(TCP, ap("10.99.8.2:40002"), ap("10.99.8.200:443"), ap("10.99.8.5:443")),
			SyncConn{Protocol: TCP, Flags: dr, State: 1, Client: ap("10.99.8.2:40002"), Virtual: ap("10.99.8.200:443"), Dest: ap("10.99.8.5:443"), FWMark: 5}, skipNone},
		{"udp: always inactive", Conn{Protocol: UDP, Client: ap("10.99.8.2:5353"), Virtual: ap("10.99.8.101:53"), Dest: ap("10.99.8.3:53"), StateName: "UDP", StateKnown: true, Expires: 5 * minute},
			SyncConn{Protocol: UDP, Flags: dr | inact, Client: ap("10.99.8.2:5353"), Virtual: ap("10.99.8.101:53"), Dest: ap("10.99.8.3:53")}, skipNone},
		{"ipv6", est(TCP, v6("[fd99:8::2]:40000"), v6("[fd99:8::101]:23"), v6("[fd99:8::3]:23")),
			SyncConn{Protocol: TCP, Flags: dr, State: 1, Client: v6("[fd99:8::2]:40000"), Virtual: v6("[fd99:8::101]:23"), Dest: v6("[fd99:8::3]:23")}, skipNone},
		{"expiring", with(tcp, func(c *Conn) { c.Expires = 999 * time.Millisecond }), SyncConn{}, skipExpiring},
		{"service without real servers", est(TCP, ap("10.99.8.2:1"), ap("10.99.8.103:23"), ap("10.99.8.3:23")), SyncConn{}, skipUnmatched},
		{"undeclared service", est(TCP, ap("10.99.8.2:1"), ap("10.99.9.1:80"), ap("10.99.9.3:80")), SyncConn{}, skipUnmatched},
		{"undeclared fwmark template", Conn{Protocol: 0, Client: ap("10.99.8.2:0"), Virtual: ap("0.0.0.6:0"), Dest: ap("10.99.8.5:0"), StateName: "NONE", StateKnown: true, Template: true, Expires: minute}, SyncConn{}, skipUnmatched},
		{"persistence engine data", with(tcp, func(c *Conn) { c.PEName, c.PEData = "sip", "id" }), SyncConn{}, skipUnsupported},
		{"unknown state", with(tcp, func(c *Conn) { c.StateName, c.StateKnown = "ERR!", false }), SyncConn{}, skipUnsupported},
		{"mixed families", est(TCP, v6("[fd99:8::2]:1"), v6("[fd99:8::101]:23"), ap("10.99.8.3:23")), SyncConn{}, skipUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := resyncSite()
			got, skip := newConnMapper(&site, time.Second).syncConn(tc.conn)
			if skip != tc.skip || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v (skip %d)\nwant %+v (skip %d)", got, skip, tc.want, tc.skip)
			}
		})
	}
}

// runPaced runs f, which waits on clk, advancing clk whenever it waits,
// and returns the clock's reading at each tick f reports.
func runPaced(t *testing.T, clk *clock.Fake, f func(tick func()) error) ([]time.Duration, error) {
	t.Helper()
	start := clk.Now()
	ticks := make(chan time.Duration)
	done := make(chan error, 1)
	go func() { done <- f(func() { ticks <- clk.Now().Sub(start) }) }()
	var got []time.Duration
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case d := <-ticks:
			got = append(got, d)
		case err := <-done:
			return got, err
		default:
			// A timer is set only while f waits, and f cannot set the next
			// before reporting its tick: advancing is safe.
			if clk.Pending() > 0 {
				clk.Advance(time.Millisecond)
			} else {
				runtime.Gosched()
			}
		}
	}
	t.Fatal("paced function did not finish")
	return nil, nil
}

func TestPacer(t *testing.T) {
	for _, tc := range []struct {
		name        string
		rate, burst int
		sizes       []int
		want        []time.Duration
	}{
		// 1000/s: after a burst of 100, one connection per millisecond.
		{"burst then rate", 1000, 100, []int{40, 40, 40, 40, 40},
			[]time.Duration{0, 0, 20 * time.Millisecond, 60 * time.Millisecond, 100 * time.Millisecond}},
		{"unpaced", -1, 1, []int{255, 255, 255}, []time.Duration{0, 0, 0}},
		{"a message larger than the burst waits for its excess", 10_000, 10, []int{40, 40},
			[]time.Duration{3 * time.Millisecond, 7 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1000, 0))
			p := pacer{clk: clk, rate: tc.rate, burst: tc.burst}
			got, err := runPaced(t, clk, func(tick func()) error {
				for _, n := range tc.sizes {
					if err := p.wait(context.Background(), n); err != nil {
						return err
					}
					tick()
				}
				return nil
			})
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("sent at %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

// After a stall the sender resumes at the rate: the bucket holds at most
// a burst, not the allowance of the whole stall.
func TestPacerAfterStall(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	p := pacer{clk: clk, rate: 1000, burst: 100}
	got, err := runPaced(t, clk, func(tick func()) error {
		for i, n := range []int{100, 40, 40, 40} {
			if i == 1 {
				clk.Stall(time.Second) // no timer pending: just time passing
			}
			if err := p.wait(context.Background(), n); err != nil {
				return err
			}
			tick()
		}
		return nil
	})
	want := []time.Duration{0, time.Second, time.Second, time.Second + 20*time.Millisecond}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("sent at %v (%v), want %v", got, err, want)
	}
}

func TestPacerCancelled(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	p := pacer{clk: clk, rate: 1, burst: 1}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.wait(ctx, 100) }()
	for clk.Pending() == 0 {
		runtime.Gosched()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("wait after cancel: %v", err)
	}
	if clk.Pending() != 0 {
		t.Fatal("timer left behind")
	}
}

func TestResyncOptionsRejected(t *testing.T) {
	for name, o := range map[string]ResyncOptions{
		"no interface":        {},
		"long interface":      {Interface: "a-very-long-interface-name"},
		"unicast group":       {Interface: "lo", Group: ip("10.99.0.1")},
		"message too small":   {Interface: "lo", MaxLen: 40},
		"missing conn table":  {Interface: "lo", ConnPath: "testdata/conns/no-such-file"},
		"interface not found": {Interface: "nosuch0", ConnPath: "testdata/conns/master_ip_vs_conn.txt", Services: capturedSite()},
	} {
		if _, err := Resync(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// capturedSite is the site of the testdata/conns captures (see
// TestGuestResync).
func capturedSite() Table {
	dr := func(a string, port uint16) []Destination {
		return []Destination{{Addr: ip(a), Port: port, Weight: 1, Forwarding: DR}}
	}
	return Table{Services: []Service{
		{Key: AddrKey(TCP, ap("10.99.8.101:23")), Scheduler: "rr", Destinations: dr("10.99.8.3", 23)},
		{Key: AddrKey(TCP, ap("10.99.8.102:23")), Scheduler: "rr", Timeout: 600, Destinations: dr("10.99.8.3", 23)},
		{Key: AddrKey(UDP, ap("10.99.8.101:53")), Scheduler: "rr", Destinations: dr("10.99.8.3", 53)},
		{Key: AddrKey(TCP, netip.MustParseAddrPort("[fd99:8::101]:23")), Scheduler: "rr", Destinations: dr("fd99:8::3", 23)},
	}}
}

// TestNetnsResyncSendsToGroup runs Resync on a captured table between two
// namespaces (no IPVS needed to send): every connection arrives in one
// datagram on the group, from the sync interface, with TTL 1 (hop limit 1
// for an IPv6 group), and none loops back to a listener on the sender.
func TestNetnsResyncSendsToGroup(t *testing.T) {
	testenv.NeedNetns(t)
	conns, err := ReadConns("testdata/conns/master_ip_vs_conn.txt", 0)
	if err != nil {
		t.Fatal(err)
	}
	site := capturedSite()
	m := newConnMapper(&site, DefaultResyncMinExpires)
	var want []SyncConn
	for _, c := range conns {
		sc, skip := m.syncConn(c)
		if skip != skipNone {
			t.Fatalf("%+v skipped (%d)", c, skip)
		}
		want = append(want, sc)
	}
	for _, group := range []netip.Addr{DefaultSyncGroup, ip("ff02::81")} {
		t.Run(group.String(), func(t *testing.T) {
			lab := netlab.New(t)
			master := lab.AddHost("m", "10.99.20.1/24", "fd99:20::1/64")
			backup := lab.AddHost("b", "10.99.20.2/24", "fd99:20::2/64")
			got := make(chan groupDatagram, 4)
			for _, h := range []*netlab.Host{backup, master} {
				if err := h.Do(func() error { return listenGroup(t, group, h.Name, got) }); err != nil {
					t.Fatal(err)
				}
			}
			var res ResyncResult
			err := master.Do(func() error {
				var err error
				res, err = Resync(context.Background(), ResyncOptions{Interface: "eth0", SyncID: 14, Group: group, Port: 8848,
					Services: site, ConnPath: "testdata/conns/master_ip_vs_conn.txt"})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Entries != len(conns) || res.Sent != len(conns) || res.Messages != 1 {
				t.Fatalf("result %+v, want %d entries sent in 1 message", res, len(conns))
			}
			select {
			case d := <-got:
				if d.host != "b" {
					t.Fatalf("datagram looped back to the sender (%s)", d.host)
				}
				if d.ttl != 1 {
					t.Fatalf("TTL %d, want 1", d.ttl)
				}
				if a := d.src.Addr().Unmap(); !a.IsLinkLocalUnicast() && a != ip("10.99.20.1") {
					t.Fatalf("sent from %s, not the sync interface's address", d.src)
				}
				msg, err := UnmarshalSyncMessage(d.payload)
				if err != nil {
					t.Fatal(err)
				}
				if msg.SyncID != 14 || !reflect.DeepEqual(msg.Conns, want) {
					t.Fatalf("received sync id %d, %d connections; want 14 and %d:\n%+v", msg.SyncID, len(msg.Conns), len(want), msg.Conns)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no datagram reached the backup")
			}
			select {
			case d := <-got:
				t.Fatalf("a second datagram, on %s", d.host)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}

type groupDatagram struct {
	host    string
	src     netip.AddrPort
	ttl     int
	payload []byte
}

// listenGroup joins group on eth0 at port 8848 and forwards what arrives
// to out, with the TTL or hop limit it arrived with.
func listenGroup(t *testing.T, group netip.Addr, host string, out chan<- groupDatagram) error {
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	network, laddr := "udp4", "0.0.0.0:8848"
	if group.Is6() {
		network, laddr = "udp6", "[::]:8848"
	}
	c, err := net.ListenPacket(network, laddr)
	if err != nil {
		return err
	}
	t.Cleanup(func() { c.Close() })
	g := &net.UDPAddr{IP: group.AsSlice()}
	var read func([]byte) (int, int, net.Addr, error)
	if group.Is4() {
		p := ipv4.NewPacketConn(c)
		if err := errors.Join(p.JoinGroup(ifi, g), p.SetControlMessage(ipv4.FlagTTL, true)); err != nil {
			return err
		}
		read = func(b []byte) (int, int, net.Addr, error) {
			n, cm, src, err := p.ReadFrom(b)
			if cm == nil {
				return n, -1, src, err
			}
			return n, cm.TTL, src, err
		}
	} else {
		p := ipv6.NewPacketConn(c)
		if err := errors.Join(p.JoinGroup(ifi, g), p.SetControlMessage(ipv6.FlagHopLimit, true)); err != nil {
			return err
		}
		read = func(b []byte) (int, int, net.Addr, error) {
			n, cm, src, err := p.ReadFrom(b)
			if cm == nil {
				return n, -1, src, err
			}
			return n, cm.HopLimit, src, err
		}
	}
	go func() {
		for {
			b := make([]byte, 65536)
			n, ttl, src, err := read(b)
			if err != nil {
				return
			}
			out <- groupDatagram{host: host, src: src.(*net.UDPAddr).AddrPort(), ttl: ttl, payload: b[:n]}
		}
	}()
	return nil
}

// writeSyntheticTable writes n established TCP connections of the
// captured site's telnet service in /proc/net/ip_vs_conn's format.
func writeSyntheticTable(tb testing.TB, n int) string {
	path := filepath.Join(tb.TempDir(), fmt.Sprintf("ip_vs_conn.%d", n))
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n")
	for i := 0; i < n; i++ {
		// clients 10.99.100.0/22-ish, ports from 1024
		fmt.Fprintf(w, "TCP 0A63%02X%02X %04X 0A630865 0017 0A630803 0017 ESTABLISHED     %3d\n",
			100+i/(250*60000), i%250+1, 1024+(i/250)%60000, 900-i%600)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		tb.Fatal(err)
	}
	return path
}

// BenchmarkResync times reading a table of 10,000 and 100,000
// connections (read: parse only, as Resync streams it) and the whole
// resync unpaced (send: read,
// map, marshal and send every datagram out of lo); with pacing the send
// takes n / DefaultResyncRate on top.
func BenchmarkResync(b *testing.B) {
	site := capturedSite()
	for _, n := range []int{10_000, 100_000} {
		path := writeSyntheticTable(b, n)
		b.Run(fmt.Sprintf("read/%d", n), func(b *testing.B) {
			for b.Loop() {
				got := 0
				if err := ScanConnFile(path, 0, func(Conn) error { got++; return nil }); err != nil || got != n {
					b.Fatalf("%d connections, %v", got, err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
		b.Run(fmt.Sprintf("send/%d", n), func(b *testing.B) {
			var res ResyncResult
			for b.Loop() {
				var err error
				res, err = Resync(context.Background(), ResyncOptions{Interface: "lo", SyncID: 1, Services: site, ConnPath: path, Rate: -1})
				if err != nil || res.Sent != n {
					b.Fatalf("%+v, %v", res, err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "conns/s")
			b.ReportMetric(float64(res.Messages), "datagrams")
			b.ReportMetric(float64(n)/DefaultResyncRate, "paced-s")
		})
	}
}
