package ipvs

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }

func www() VirtualServer {
	return VirtualServer{
		Name: "www", Key: AddrKey(TCP, ap("10.99.0.100:80")), Scheduler: "wrr", Forwarding: DR,
		RealServers: []RealServer{
			{Addr: ip("10.99.0.3"), Weight: 2},
			{Addr: ip("10.99.0.4"), Port: 8080, Weight: 3},
		},
	}
}

func weights(s Service) string {
	var b strings.Builder
	for _, d := range s.Destinations {
		b.WriteString(d.Key().String())
		b.WriteString("=")
		b.WriteString(itoa(d.Weight))
		b.WriteString(" ")
	}
	return strings.TrimSpace(b.String())
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestBuildHealth(t *testing.T) {
	rs3 := ServerRef{"www", ap("10.99.0.3:0")}
	rs4 := ServerRef{"www", ap("10.99.0.4:8080")}
	cases := []struct {
		name   string
		mutate func(*VirtualServer)
		health Health
		want   string
	}{
		{"all unknown count as up", nil, nil, "10.99.0.3:80=2 10.99.0.4:8080=3"},
		{"alpha: unknown is down", func(v *VirtualServer) { v.UnknownIsDown = true }, Health{rs4: {Up: true}}, "10.99.0.4:8080=3"},
		{"failed removed", nil, Health{rs3: {Up: false}, rs4: {Up: true}}, "10.99.0.4:8080=3"},
		{"failed drained", func(v *VirtualServer) { v.DrainOnFailure = true }, Health{rs3: {Up: false}}, "10.99.0.3:80=0 10.99.0.4:8080=3"},
		{"operator drain", nil, Health{rs4: {Up: true, Drain: true}}, "10.99.0.3:80=2 10.99.0.4:8080=0"},
		{"weight override", nil, Health{rs3: {Up: true, Weight: 7, WeightSet: true}}, "10.99.0.3:80=7 10.99.0.4:8080=3"},
		{"all down, no sorry", nil, Health{rs3: {}, rs4: {}}, ""},
		{"all down, sorry", func(v *VirtualServer) {
			v.SorryServer = &RealServer{Addr: ip("10.99.0.9"), Weight: 1}
		}, Health{rs3: {}, rs4: {}}, "10.99.0.9:80=1"},
		{"quorum 4 lost: sorry replaces live", func(v *VirtualServer) {
			v.Quorum = 4
			v.SorryServer = &RealServer{Addr: ip("10.99.0.9")}
		}, Health{rs4: {}}, "10.99.0.9:80=1"},
		{"quorum 4 lost, no sorry: live stay", func(v *VirtualServer) { v.Quorum = 4 }, Health{rs4: {}}, "10.99.0.3:80=2"},
		{"quorum met", func(v *VirtualServer) {
			v.Quorum = 5
			v.SorryServer = &RealServer{Addr: ip("10.99.0.9")}
		}, nil, "10.99.0.3:80=2 10.99.0.4:8080=3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vs := www()
			if c.mutate != nil {
				c.mutate(&vs)
			}
			out, err := Build(BuildInput{VirtualServers: []VirtualServer{vs}, Health: c.health, Now: t0})
			if err != nil {
				t.Fatal(err)
			}
			if got := weights(out.Table.Services[0]); got != c.want {
				t.Fatalf("destinations %q, want %q", got, c.want)
			}
			for _, d := range out.Table.Services[0].Destinations {
				if d.Forwarding != DR {
					t.Fatalf("forwarding %v, want dr", d.Forwarding)
				}
			}
		})
	}
}

func TestBuildQuorumHysteresis(t *testing.T) {
	// Four servers of weight 1, quorum 3, hysteresis 1: lost below 2,
	// regained at 4.
	vs := VirtualServer{Name: "q", Key: AddrKey(TCP, ap("10.99.0.100:80")), Scheduler: "rr",
		Quorum: 3, Hysteresis: 1, SorryServer: &RealServer{Addr: ip("10.99.0.9"), Weight: 1}}
	for i := 1; i <= 4; i++ {
		vs.RealServers = append(vs.RealServers, RealServer{Addr: netip.AddrFrom4([4]byte{10, 99, 0, byte(i)}), Weight: 1})
	}
	healthWith := func(upCount int) Health {
		h := Health{}
		for i := 1; i <= 4; i++ {
			h[ServerRef{"q", netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 99, 0, byte(i)}), 0)}] = ServerHealth{Up: i <= upCount}
		}
		return h
	}
	var state QuorumState
	steps := []struct {
		up     int
		wantUp bool
	}{{4, true}, {3, true}, {2, true}, {1, false}, {2, false}, {3, false}, {4, true}, {2, true}, {1, false}}
	for i, s := range steps {
		out, err := Build(BuildInput{VirtualServers: []VirtualServer{vs}, Health: healthWith(s.up), Now: t0, Quorum: state})
		if err != nil {
			t.Fatal(err)
		}
		state = out.Quorum
		if state["q"] != s.wantUp {
			t.Fatalf("step %d (%d up): quorum up = %v, want %v", i, s.up, state["q"], s.wantUp)
		}
		dests := out.Table.Services[0].Destinations
		sorry := len(dests) == 1 && dests[0].Addr == ip("10.99.0.9")
		if sorry == s.wantUp {
			t.Fatalf("step %d: sorry server in use = %v with quorum up = %v: %v", i, sorry, s.wantUp, dests)
		}
		if (len(out.QuorumLost) == 1) == s.wantUp {
			t.Fatalf("step %d: QuorumLost = %v", i, out.QuorumLost)
		}
	}
}

func TestBuildSlowStart(t *testing.T) {
	vs := www()
	vs.SlowStart = 10 * time.Second
	vs.RealServers[1].Weight = 10
	ref := ServerRef{"www", ap("10.99.0.4:8080")}
	h := Health{ref: {Up: true, Since: t0}}
	cases := []struct {
		at       time.Duration
		want     int
		nextWant time.Duration // 0 = none
	}{
		{0, 1, 2 * time.Second},
		{500 * time.Millisecond, 1, 2 * time.Second},
		{2 * time.Second, 2, 3 * time.Second},
		{5500 * time.Millisecond, 5, 6 * time.Second},
		{9999 * time.Millisecond, 9, 10 * time.Second},
		{10 * time.Second, 10, 0},
		{time.Hour, 10, 0},
	}
	for _, c := range cases {
		out, err := Build(BuildInput{VirtualServers: []VirtualServer{vs}, Health: h, Now: t0.Add(c.at)})
		if err != nil {
			t.Fatal(err)
		}
		var got int
		for _, d := range out.Table.Services[0].Destinations {
			if d.Port == 8080 {
				got = d.Weight
			}
		}
		if got != c.want {
			t.Errorf("at %v: weight %d, want %d", c.at, got, c.want)
		}
		var wantNext time.Time
		if c.nextWant != 0 {
			wantNext = t0.Add(c.nextWant)
		}
		if !out.NextChange.Equal(wantNext) {
			t.Errorf("at %v: next change %v, want %v", c.at, out.NextChange, wantNext)
		}
	}
	// The quorum counts the full weight, not the ramped one.
	vs.Quorum = 12
	out, _ := Build(BuildInput{VirtualServers: []VirtualServer{vs}, Health: h, Now: t0})
	if !out.Quorum["www"] {
		t.Errorf("quorum lost during slow start: %v", out.Quorum)
	}
}

func TestBuildServiceSettings(t *testing.T) {
	fwd := NAT
	vs := VirtualServer{
		Name: "mark", Key: MarkKey(IPv6, 7), Scheduler: "sh", SchedFlags: FlagSched1 | FlagSched2,
		OnePacket: true, Persistence: 1500 * time.Millisecond, PersistenceNetmask: 64, Forwarding: Tunnel,
		RealServers: []RealServer{{Addr: ip("fd99::3"), Weight: 1, Forwarding: &fwd, UpperThreshold: 100, LowerThreshold: 50}, {Addr: ip("fd99::4"), Weight: 1}},
	}
	out, err := Build(BuildInput{VirtualServers: []VirtualServer{vs}, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	s := out.Table.Services[0]
	if s.Timeout != 2 || s.Netmask != 64 || s.normFlags() != FlagPersistent|FlagOnePacket|FlagSched1|FlagSched2 {
		t.Fatalf("service settings: %+v flags %#x", s, s.normFlags())
	}
	if s.Destinations[0].Port != 0 || s.Destinations[0].Forwarding != NAT || s.Destinations[0].UpperThreshold != 100 || s.Destinations[1].Forwarding != Tunnel {
		t.Fatalf("destinations: %+v", s.Destinations)
	}
}

func TestBuildRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*[]VirtualServer)
		want   string
	}{
		{"no name", func(v *[]VirtualServer) { (*v)[0].Name = "" }, "no name"},
		{"dup name", func(v *[]VirtualServer) { *v = append(*v, (*v)[0]); (*v)[1].Key.Port = 81 }, "name used twice"},
		{"dup key", func(v *[]VirtualServer) { *v = append(*v, (*v)[0]); (*v)[1].Name = "b" }, "declared twice"},
		{"dup real server", func(v *[]VirtualServer) { (*v)[0].RealServers[1] = (*v)[0].RealServers[0] }, "declared twice"},
		{"mixed family", func(v *[]VirtualServer) { (*v)[0].RealServers[0].Addr = ip("fd99::1") }, "is not inet"},
		{"weight", func(v *[]VirtualServer) { (*v)[0].RealServers[0].Weight = 70000 }, "out of range"},
		{"no scheduler", func(v *[]VirtualServer) { (*v)[0].Scheduler = "" }, "no scheduler"},
		{"netmask", func(v *[]VirtualServer) { (*v)[0].PersistenceNetmask = 33 }, "netmask"},
		{"fwmark with address", func(v *[]VirtualServer) { (*v)[0].Key.FWMark = 3 }, "fwmark service has no address"},
		{"bad sorry family", func(v *[]VirtualServer) {
			(*v)[0].SorryServer = &RealServer{Addr: ip("fd99::9")}
			(*v)[0].RealServers = nil
		}, "is not inet"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vss := []VirtualServer{www()}
			c.mutate(&vss)
			_, err := Build(BuildInput{VirtualServers: vss, Now: t0})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestKernelNetmask(t *testing.T) {
	for _, c := range []struct {
		fam  Family
		n    int
		back int
	}{{IPv4, 0, 32}, {IPv4, 24, 24}, {IPv4, 32, 32}, {IPv4, 1, 1}, {IPv6, 0, 128}, {IPv6, 64, 64}} {
		s := Service{Key: ServiceKey{Family: c.fam}, Netmask: c.n}
		if got := prefixFromKernelNetmask(c.fam, s.kernelNetmask()); got != c.back {
			t.Errorf("%v /%d -> %#x -> /%d, want /%d", c.fam, c.n, s.kernelNetmask(), got, c.back)
		}
	}
	v4 := Service{Key: ServiceKey{Family: IPv4}}
	if v4.kernelNetmask() != 0xffffffff {
		t.Errorf("IPv4 host mask = %#x", v4.kernelNetmask())
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]Forwarding{"dr": DR, "gate": DR, "NAT": NAT, "masq": NAT, "tunnel": Tunnel, "ipip": Tunnel} {
		if got, err := ParseForwarding(in); err != nil || got != want {
			t.Errorf("ParseForwarding(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseForwarding("bridge"); err == nil {
		t.Error("ParseForwarding(bridge) succeeded")
	}
	if p, err := ParseProtocol("udp"); err != nil || p != UDP {
		t.Errorf("ParseProtocol(udp) = %v, %v", p, err)
	}
	if f, err := ParseSchedFlag("sh-port"); err != nil || f != FlagSched2 {
		t.Errorf("ParseSchedFlag = %v, %v", f, err)
	}
}
