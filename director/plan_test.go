package director

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"log/slog"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/healthcheck"
	"github.com/vigil-lb/vigil/ipvs"
	"github.com/vigil-lb/vigil/vrrp"
)

func loadExample(t *testing.T, name string) *config.Site {
	t.Helper()
	s, err := config.Load(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPlanChecksSharesOneCheckPerEndpoint(t *testing.T) {
	site := loadExample(t, "www-telnet.toml")
	// A second virtual server naming rs1:80 with the same check must not
	// add a checker: one per distinct endpoint and spec.
	dup := site.VirtualServers[0]
	dup.Name = "www-copy"
	site.VirtualServers = append(site.VirtualServers, dup)
	p := planChecks(site)
	if got, want := len(p.specs), 4; got != want {
		t.Fatalf("%d checks, want %d (rs1:80, rs2:80 http; rs1:23, rs2:23 tcp)", got, want)
	}
	for k, refs := range p.refs {
		if strings.Contains(k, ":80") && len(refs) != 2 {
			t.Errorf("check %s decides for %d servers, want 2 (www and www-copy)", k, len(refs))
		}
	}
	for _, s := range p.specs {
		if err := s.WithDefaults().Validate(); err != nil {
			t.Errorf("spec %s: %v", s.Key(), err)
		}
		if s.Kind == healthcheck.KindHTTP && (s.HTTP == nil || s.HTTP.Verify || s.HTTP.ServerName != "") {
			t.Errorf("http spec carries TLS options: %+v", s.HTTP)
		}
	}
}

func TestVirtualServersConvert(t *testing.T) {
	site := loadExample(t, "www-telnet.toml")
	vss, err := virtualServers(site)
	if err != nil {
		t.Fatal(err)
	}
	if len(vss) != 2 || vss[0].Key.String() != "tcp 192.168.0.101:80" || vss[0].Scheduler != "wrr" ||
		vss[0].Forwarding != ipvs.DR || len(vss[0].RealServers) != 2 {
		t.Fatalf("converted: %+v", vss)
	}
	// The converted site builds a valid table: every server up.
	h := ipvs.Health{}
	for i := range site.VirtualServers {
		for j := range site.VirtualServers[i].RealServers {
			h[serverRef(&site.VirtualServers[i], &site.VirtualServers[i].RealServers[j])] = ipvs.ServerHealth{Up: true}
		}
	}
	out, err := ipvs.Build(ipvs.BuildInput{VirtualServers: vss, Health: h, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(out.Table.Services[0].Destinations); n != 2 {
		t.Fatalf("%d destinations, want 2", n)
	}
}

func TestElectionEqual(t *testing.T) {
	site := loadExample(t, "www-telnet.toml")
	a := site.Instances[0]
	for _, tc := range []struct {
		name   string
		change func(*config.Instance)
		equal  bool
	}{
		{"same", func(*config.Instance) {}, true},
		{"garp", func(i *config.Instance) { i.GARP.Repeat++ }, true},
		{"notify", func(i *config.Instance) { i.Notify = config.Command{Shell: "true"} }, true},
		{"label", func(i *config.Instance) { i.VIPs[0].Label = "eth0:9" }, true},
		{"interval", func(i *config.Instance) { i.AdvertInterval.Duration *= 2 }, false},
		{"vrid", func(i *config.Instance) { i.VRID++ }, false},
		{"vip address", func(i *config.Instance) {
			i.VIPs[0].Prefix = netip.PrefixFrom(i.VIPs[0].Prefix.Addr().Next(), i.VIPs[0].Prefix.Bits())
		}, false},
	} {
		b := a
		b.VIPs = append([]config.VIP(nil), a.VIPs...)
		tc.change(&b)
		if got := electionEqual(a, b); got != tc.equal {
			t.Errorf("%s: electionEqual = %v, want %v", tc.name, got, tc.equal)
		}
	}
	if a.VIPs[0].Label != "eth0:101" {
		t.Fatalf("electionEqual changed its argument: label %q", a.VIPs[0].Label)
	}
}

func TestTableDigestIgnoresCountersNotWeights(t *testing.T) {
	mk := func(w int, conns uint32) ipvs.Table {
		return ipvs.Table{Services: []ipvs.Service{{Key: ipvs.MarkKey(ipvs.IPv4, 1), Scheduler: "rr",
			Stats:        ipvs.Stats{Connections: conns},
			Destinations: []ipvs.Destination{{Weight: w, Forwarding: ipvs.DR}}}}}
	}
	if tableDigest(mk(1, 0)) != tableDigest(mk(1, 99)) {
		t.Error("digest depends on counters")
	}
	if tableDigest(mk(1, 0)) == tableDigest(mk(0, 0)) {
		t.Error("digest ignores weights")
	}
}

type fakeController struct {
	reloadErr error
	handed    string
}

func (f *fakeController) Status() Status {
	return Status{Site: "www", Node: "vs1", Instances: []InstanceStatus{{Name: "www", State: "master", Priority: 150}}}
}
func (f *fakeController) Reload() error              { return f.reloadErr }
func (f *fakeController) Handover(name string) error { f.handed = name; return nil }
func (f *fakeController) Resume(string) error        { return nil }

func TestControlSocket(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	fc := &fakeController{reloadErr: errors.New("site.toml:3:1: unknown key")}
	if err := ServeControl(ctx, sock, fc, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if err := ServeControl(ctx, sock, fc, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a second daemon took over a live control socket")
	}
	rep, err := Call(ctx, sock, Request{Op: "status"})
	if err != nil || rep.Status.Instances[0].State != "master" {
		t.Fatalf("status: %+v, %v", rep, err)
	}
	if _, err := Call(ctx, sock, Request{Op: "reload"}); err == nil || !strings.Contains(err.Error(), "site.toml:3:1") {
		t.Fatalf("reload error not passed on: %v", err)
	}
	if _, err := Call(ctx, sock, Request{Op: "handover", Instance: "www"}); err != nil || fc.handed != "www" {
		t.Fatalf("handover: %v, handed %q", err, fc.handed)
	}
	if _, err := Call(ctx, sock, Request{Op: "bogus"}); err == nil {
		t.Fatal("unknown op accepted")
	}
	var b strings.Builder
	fc.Status().WriteText(&b, time.Now())
	if !strings.Contains(b.String(), "www") || !strings.Contains(b.String(), "master") {
		t.Fatalf("text status:\n%s", b.String())
	}
}

// Every VRRP state (up to the first that vrrp itself cannot name) has a
// status name of its own that ParseState reads back, and the metrics
// list every one; anything else is an error.
func TestParseStateRoundTrip(t *testing.T) {
	names := map[string]vrrp.State{}
	for s := vrrp.Initialize; !strings.HasPrefix(s.String(), "state("); s++ {
		name := stateName(s)
		if other, ok := names[name]; ok {
			t.Errorf("%v and %v are both %q in status", other, s, name)
		}
		names[name] = s
		got, err := ParseState(name)
		if err != nil || got != s {
			t.Errorf("ParseState(stateName(%v) = %q) = %v, %v", s, name, got, err)
		}
		if !slices.Contains(states, s) {
			t.Errorf("%v is missing from states (metrics)", s)
		}
	}
	for _, bad := range []string{"", "MASTER", "Master", "master ", "state(4)"} {
		if s, err := ParseState(bad); err == nil {
			t.Errorf("ParseState(%q) = %v, want an error", bad, s)
		}
	}
}
