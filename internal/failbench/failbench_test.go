package failbench

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// TestMain lets the test binary stand in for the failbench command when
// the netns test re-executes it as a responder or agent.
func TestMain(m *testing.M) {
	if handled, err := RunMode(context.Background(), os.Args[1:]); handled {
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestEventRoundTrip(t *testing.T) {
	for _, e := range []Event{
		{Kind: 'P', Start: 1, End: 2, OK: true, From: "vs1"},
		{Kind: 'P', Start: 10, End: 250000010, From: "timeout"},
		{Kind: 'P', Start: 10, End: 11, From: "dial tcp4 10.99.0.100:8080: i/o timeout"},
		{Kind: 'A', Start: 5, End: 5, From: "10.99.0.1", VRID: 51, Prio: 150},
		{Kind: 'A', Start: 5, End: 5, From: "10.99.0.1", VRID: 51, Prio: 0},
		{Kind: 'G', Start: 7, End: 7, From: "10.99.0.100", MAC: "02:00:00:00:00:01", Op: 1, To: "10.99.0.100"},
	} {
		got, err := ParseEvent(e.String())
		if err != nil {
			t.Fatalf("%q: %v", e.String(), err)
		}
		want := e
		want.From = strings.ReplaceAll(want.From, " ", "_")
		if got != want {
			t.Errorf("round trip of %q: got %+v want %+v", e.String(), got, want)
		}
	}
}

func TestParseEventRejects(t *testing.T) {
	for _, line := range []string{"", "P 1 2 1", "X 1 2 3 4", "A x 10.99.0.1 51 150", "A 1 10.99.0.1 51", "G 1 a b c d", "P 1 x 1 vs1", "A 1 10.99.0.1 51 150 extra"} {
		if e, err := ParseEvent(line); err == nil {
			t.Errorf("ParseEvent(%q) = %+v, want an error", line, e)
		}
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add("P 1 2 1 vs1")
	f.Add("A 5 10.99.0.1 51 150")
	f.Add("G 7 10.99.0.100 02:00:00:00:00:01 1 10.99.0.100")
	f.Fuzz(func(t *testing.T, line string) {
		e, err := ParseEvent(line)
		if err != nil {
			return
		}
		if strings.ContainsAny(line, "\n\r") {
			return
		}
		again, err := ParseEvent(e.String())
		if err != nil {
			t.Fatalf("%q parsed to %+v, whose String %q does not parse: %v", line, e, e.String(), err)
		}
		if again.String() != e.String() {
			t.Fatalf("not stable: %q -> %q", e.String(), again.String())
		}
	})
}

func ipv4(proto byte, src string, payload []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:4], uint16(20+len(payload)))
	h[8] = 255
	h[9] = proto
	copy(h[12:16], net.ParseIP(src).To4())
	copy(h[16:20], net.ParseIP("224.0.0.18").To4())
	return append(h, payload...)
}

func TestParseAdvert(t *testing.T) {
	vrrp := []byte{0x31, 51, 150, 1, 0, 2, 0, 0, 10, 99, 0, 100} // v3 advert, VRID 51, prio 150, 20 ms
	e, ok := parseAdvert(ipv4(112, "10.99.0.1", vrrp), 42)
	if !ok || e.From != "10.99.0.1" || e.VRID != 51 || e.Prio != 150 || e.Start != 42 || e.Kind != 'A' {
		t.Fatalf("parseAdvert = %+v, %v", e, ok)
	}
	for name, pkt := range map[string][]byte{
		"not VRRP":   ipv4(6, "10.99.0.1", vrrp),
		"short":      ipv4(112, "10.99.0.1", vrrp[:4]),
		"not advert": ipv4(112, "10.99.0.1", append([]byte{0x32}, vrrp[1:]...)),
		"truncated":  ipv4(112, "10.99.0.1", vrrp)[:15],
	} {
		if e, ok := parseAdvert(pkt, 1); ok {
			t.Errorf("%s: accepted as %+v", name, e)
		}
	}
}

func TestParseARP(t *testing.T) {
	vip := net.ParseIP("10.99.0.100").To4()
	mk := func(op uint16, spa, tpa string) []byte {
		p := make([]byte, 28)
		binary.BigEndian.PutUint16(p[0:2], 1)
		binary.BigEndian.PutUint16(p[2:4], 0x0800)
		p[4], p[5] = 6, 4
		binary.BigEndian.PutUint16(p[6:8], op)
		copy(p[8:14], []byte{2, 0, 0, 0, 0, 2})
		copy(p[14:18], net.ParseIP(spa).To4())
		copy(p[24:28], net.ParseIP(tpa).To4())
		return p
	}
	e, ok := parseARP(mk(1, "10.99.0.100", "10.99.0.100"), 9, vip)
	if !ok || e.MAC != "02:00:00:00:00:02" || e.Op != 1 || e.From != "10.99.0.100" || e.Start != 9 {
		t.Fatalf("GARP: %+v %v", e, ok)
	}
	if e, ok := parseARP(mk(1, "10.99.0.10", "10.99.0.100"), 9, vip); !ok || e.To != "10.99.0.100" {
		t.Fatalf("client query: %+v %v", e, ok)
	}
	if e, ok := parseARP(mk(2, "10.99.0.1", "10.99.0.10"), 9, vip); ok {
		t.Fatalf("unrelated ARP accepted: %+v", e)
	}
	if _, ok := parseARP(mk(1, "10.99.0.100", "10.99.0.100")[:20], 9, vip); ok {
		t.Fatal("short ARP accepted")
	}
}

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		in   []time.Duration
		want Summary
	}{
		{nil, Summary{}},
		{[]time.Duration{5 * ms}, Summary{1, 5 * ms, 5 * ms, 5 * ms}},
		{[]time.Duration{9 * ms, 1 * ms, 4 * ms}, Summary{3, 1 * ms, 4 * ms, 9 * ms}},
		{[]time.Duration{9 * ms, 1 * ms, 4 * ms, 2 * ms}, Summary{4, 1 * ms, 3 * ms, 9 * ms}},
	} {
		if got := Summarize(tc.in); got != tc.want {
			t.Errorf("Summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestMasterDown(t *testing.T) {
	for _, tc := range []struct {
		adv     time.Duration
		prio, v int
		want    time.Duration
	}{
		{time.Second, 100, 3, 3609375 * time.Microsecond},
		{time.Second, 100, 2, 3609375 * time.Microsecond},
		{100 * time.Millisecond, 100, 3, 360937500 * time.Nanosecond},
		{10 * time.Millisecond, 100, 3, 36093750 * time.Nanosecond},
		{20 * time.Millisecond, 150, 3, 68281250 * time.Nanosecond},
	} {
		if got := MasterDown(tc.adv, tc.prio, tc.v); got != tc.want {
			t.Errorf("MasterDown(%v, %d, v%d) = %v, want %v", tc.adv, tc.prio, tc.v, got, tc.want)
		}
	}
	if got := Skew(100*time.Millisecond, 100, 3); got != 60937500*time.Nanosecond {
		t.Errorf("Skew = %v", got)
	}
}

func testSite(adv time.Duration) Site {
	return Site{VRID: 51, Advert: adv, Version: 3, VIP: "10.99.0.100/24", Iface: "eth0", Directors: directors()}
}

func TestKeepalivedConfig(t *testing.T) {
	conf := KeepalivedConfig(testSite(20*time.Millisecond), directors()[0])
	for _, want := range []string{"vrrp_version 3", "virtual_router_id 51", "priority 150", "advert_int 0.02", "10.99.0.100/24 dev eth0", "interface eth0", "state BACKUP"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if conf := KeepalivedConfig(testSite(time.Second), directors()[1]); !strings.Contains(conf, "advert_int 1\n") || !strings.Contains(conf, "priority 100") {
		t.Errorf("1 s config:\n%s", conf)
	}
	dir := t.TempDir()
	argv, err := Keepalived{Binary: "/usr/sbin/keepalived"}.Prepare(testSite(time.Second), directors()[0], dir)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(argv, " ")
	for _, want := range []string{"-P", "-n", dir + "/keepalived.pid", dir + "/vrrp.pid", dir + "/keepalived.conf"} {
		if !strings.Contains(joined, want) {
			t.Errorf("command %q lacks %q", joined, want)
		}
	}
}

func TestVigilSite(t *testing.T) {
	var got struct {
		Site     struct{ Name string }
		Director []struct {
			Name, Address, Interface string
			Priority                 int
		}
		Cluster  struct{ Insecure bool }
		Instance []struct {
			Name           string
			VRID           int
			AdvertInterval string `toml:"advert_interval"`
			Version        int
			Preempt        bool
			VIPs           []string
		}
	}
	md, err := toml.Decode(VigilSite(testSite(100*time.Millisecond)), &got)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Errorf("keys not covered by the test: %v", u)
	}
	if len(got.Director) != 2 || got.Director[0].Priority != 150 || got.Director[1].Address != "10.99.0.2" || !got.Cluster.Insecure {
		t.Errorf("directors/cluster: %+v %+v", got.Director, got.Cluster)
	}
	in := got.Instance
	if len(in) != 1 || in[0].VRID != 51 || in[0].AdvertInterval != "100ms" || in[0].Version != 3 || !in[0].Preempt || len(in[0].VIPs) != 1 || in[0].VIPs[0] != "10.99.0.100/24" {
		t.Errorf("instance: %+v", in)
	}
}

func TestUsageRatios(t *testing.T) {
	ms100 := 100 * time.Millisecond
	u := func(impl, role string, cpuMS int, rssKB int64, err string) Usage {
		return Usage{Impl: impl, Advert: ms100, Role: role, Window: time.Minute, CPU: time.Duration(cpuMS) * time.Millisecond,
			CPUPercent: float64(cpuMS) / 600, RSSKB: rssKB, Procs: 1, Err: err}
	}
	for _, c := range []struct {
		name  string
		usage []Usage
		want  []string // lines that must appear
		not   []string // text that must not
	}{
		{"both", []Usage{u("keepalived", "master", 60, 12000, ""), u("keepalived", "backup", 20, 12000, ""),
			u("vigil", "master", 120, 18000, ""), u("vigil", "backup", 30, 18000, "")},
			[]string{"100ms      master  vigil/keepalived: CPU 2.00 (0.200 % against 0.100 %), RSS 1.50",
				"100ms      backup  vigil/keepalived: CPU 1.50"}, nil},
		{"keepalived failed", []Usage{u("keepalived", "master", 0, 0, "boom"), u("vigil", "master", 120, 18000, "")},
			nil, []string{"vigil/keepalived"}},
		{"vigil only", []Usage{u("vigil", "master", 120, 18000, "")}, nil, []string{"vigil/keepalived"}},
	} {
		var b strings.Builder
		(&Report{Usage: c.usage}).printUsageRatios(&b)
		for _, w := range c.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output\n%s\nlacks %q", c.name, b.String(), w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(b.String(), n) {
				t.Errorf("%s: output\n%s\nhas %q", c.name, b.String(), n)
			}
		}
	}
}
