package director

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/cluster"
	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/failover"
	"github.com/vigil-lb/vigil/healthcheck"
	"github.com/vigil-lb/vigil/ipvs"
	"github.com/vigil-lb/vigil/vrrp"
)

func TestInstanceStatus(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cfg := &config.Instance{Name: "www", VRID: 51, Transport: "vrrp", AdvertInterval: config.Duration{Duration: time.Second},
		VIPs: []config.VIP{{Prefix: netip.MustParsePrefix("10.99.0.100/24")}, {Prefix: netip.MustParsePrefix("10.99.0.101/24")}}}
	vip := func(p string, held bool) failover.VIPStatus {
		return failover.VIPStatus{VIP: failover.VIP{Prefix: netip.MustParsePrefix(p)}, Held: held}
	}
	for _, tc := range []struct {
		name string
		run  instanceRun
		want InstanceStatus
	}{
		{
			name: "backup: no master heard, nothing held",
			run: instanceRun{cfg: cfg, election: vrrp.Status{State: vrrp.Backup, Priority: 100, Since: t0},
				claim: failover.ClaimStatus{VIPs: []failover.VIPStatus{vip("10.99.0.100/24", false), vip("10.99.0.101/24", false)}}},
			want: InstanceStatus{Name: "www", VRID: 51, State: "backup", Priority: 100, Interval: time.Second, Transport: "vrrp",
				VIPs: []string{"10.99.0.100/24", "10.99.0.101/24"}, Since: t0},
		},
		{
			name: "master: held VIPs only, counters, drops by name, handover",
			run: instanceRun{cfg: cfg, held: true, reason: "preempted", repairs: 2,
				election: vrrp.Status{State: vrrp.Master, Priority: 150, Since: t0, MasterAddr: netip.MustParseAddr("10.99.0.1"),
					Counters: vrrp.Counters{AdvertsSent: 10, AdvertsReceived: 3, Transitions: 2, AnswersSkipped: 1,
						Dropped: map[vrrp.DropReason]uint64{vrrp.DropTTL: 4, vrrp.DropAuth: 1}}},
				claim: failover.ClaimStatus{Evicted: 5, VIPs: []failover.VIPStatus{vip("10.99.0.100/24", true), vip("10.99.0.101/24", false)},
					Announce: failover.AnnounceStats{FirstSent: t0.Add(time.Millisecond), Sent: 6}}},
			want: InstanceStatus{Name: "www", VRID: 51, State: "master", Priority: 150, Interval: time.Second, Transport: "vrrp",
				MasterAddr: "10.99.0.1", VIPs: []string{"10.99.0.100/24", "10.99.0.101/24"}, VIPsHeld: []string{"10.99.0.100/24"},
				Since: t0, Reason: "preempted", AdvertsSent: 10, AdvertsRecv: 3, Invalid: map[string]uint64{"ttl": 4, "auth": 1},
				Transitions: 2, FirstGARP: t0.Add(time.Millisecond), GARPSent: 6, HandoverHeld: true, AnswersSkipped: 1,
				Repairs: 2, VIPsEvicted: 5},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := instanceStatus(tc.run); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	if got := instancesStatus(nil); got != nil {
		t.Errorf("no instances: %v, want nil (JSON null, as before)", got)
	}
}

func TestVirtualServersStatus(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ap := netip.MustParseAddrPort
	www := config.VirtualServer{Name: "www", Address: ap("10.99.0.100:80"), Protocol: "tcp", Scheduler: "wrr", Forwarding: "dr",
		RealServers: []config.RealServer{{Address: ap("10.99.0.3:80"), Weight: 3}, {Address: ap("10.99.0.4:0"), Weight: 1}}}
	mark := config.VirtualServer{Name: "mark", Fwmark: 7, Protocol: "tcp", Scheduler: "rr", Forwarding: "dr",
		RealServers: []config.RealServer{{Address: ap("10.99.0.5:0"), Weight: 1}}}
	wwwKey, markKey := ipvs.AddrKey(ipvs.TCP, ap("10.99.0.100:80")), ipvs.MarkKey(ipvs.IPv4, 7)
	ref := func(vs, s string) ipvs.ServerRef { return ipvs.ServerRef{VirtualServer: vs, Server: ap(s)} }
	ps := pipelineStatus{
		Keys:    map[string]ipvs.ServiceKey{"www": wwwKey, "mark": markKey},
		Health:  ipvs.Health{ref("www", "10.99.0.3:80"): {Up: true}, ref("www", "10.99.0.4:0"): {Up: false}},
		CheckOf: map[ipvs.ServerRef]string{ref("www", "10.99.0.3:80"): "tcp3", ref("www", "10.99.0.4:0"): "tcp4"},
		Checks: []healthcheck.Status{
			{Key: "tcp3", Passes: 7, LastCheck: t0, Last: healthcheck.Result{Up: true, Reason: "connected", Latency: time.Millisecond}},
			{Key: "tcp4", Fails: 2, LastCheck: t0, Last: healthcheck.Result{Reason: "refused", Latency: 2 * time.Millisecond}},
		},
	}
	// In the kernel: www with stats and one destination (.4 on the
	// virtual server's port, as port 0 means), mark absent.
	table := ipvs.Table{Services: []ipvs.Service{{Key: wwwKey, Scheduler: "rr",
		Stats: ipvs.Stats{Connections: 9, PacketsIn: 8, PacketsOut: 7, BytesIn: 600, BytesOut: 500},
		Destinations: []ipvs.Destination{{Addr: ap("10.99.0.4:80").Addr(), Port: 80, Weight: 1, ActiveConns: 2, InactiveConns: 3,
			Stats: ipvs.Stats{Connections: 4, PacketsIn: 5, PacketsOut: 6}}}}}}

	rs3 := RSStatus{Address: "10.99.0.3:80", Weight: 3, IPVSWeight: -1, Health: "up", Reason: "connected", Passes: 7,
		Latency: time.Millisecond, LastCheck: t0}
	rs4 := RSStatus{Address: "10.99.0.4:0", Weight: 1, IPVSWeight: -1, Health: "down", Reason: "refused", Fails: 2,
		Latency: 2 * time.Millisecond, LastCheck: t0}
	rs5 := RSStatus{Address: "10.99.0.5:0", Weight: 1, IPVSWeight: -1, Health: "unknown", Reason: "no check (always up)"}
	rs4In := rs4
	rs4In.IPVSWeight, rs4In.ActiveConn, rs4In.InactConn, rs4In.Conns, rs4In.InPkts, rs4In.OutPkts = 1, 2, 3, 4, 5, 6
	for _, tc := range []struct {
		name     string
		ps       func(pipelineStatus) pipelineStatus
		inKernel bool
		want     []VSStatus
	}{
		{
			name: "table not read: the configured view beside the health",
			want: []VSStatus{
				{Name: "www", Address: "10.99.0.100:80", Protocol: "tcp", Scheduler: "wrr", Forwarding: "dr", RealServers: []RSStatus{rs3, rs4}},
				{Name: "mark", Address: "fwmark 7", Protocol: "tcp", Scheduler: "rr", Forwarding: "dr", RealServers: []RSStatus{rs5}},
			},
		},
		{
			name:     "in the kernel: its scheduler and counters, destinations matched on the service's port",
			inKernel: true,
			want: []VSStatus{
				{Name: "www", Address: "10.99.0.100:80", Protocol: "tcp", Scheduler: "rr", Forwarding: "dr", InKernel: true,
					Conns: 9, InPkts: 8, OutPkts: 7, InBytes: 600, OutBytes: 500, RealServers: []RSStatus{rs3, rs4In}},
				{Name: "mark", Address: "fwmark 7", Protocol: "tcp", Scheduler: "rr", Forwarding: "dr", RealServers: []RSStatus{rs5}},
			},
		},
		{
			name: "quorum lost: the sorry server is active",
			ps:   func(p pipelineStatus) pipelineStatus { p.QuorumLost = []string{"mark"}; return p },
			want: []VSStatus{
				{Name: "www", Address: "10.99.0.100:80", Protocol: "tcp", Scheduler: "wrr", Forwarding: "dr", RealServers: []RSStatus{rs3, rs4}},
				{Name: "mark", Address: "fwmark 7", Protocol: "tcp", Scheduler: "rr", Forwarding: "dr", SorryActive: true, RealServers: []RSStatus{rs5}},
			},
		},
		{
			name:     "a virtual server the pipeline does not know yet (mid-reload) is not looked up",
			inKernel: true,
			ps: func(p pipelineStatus) pipelineStatus {
				p.Keys = map[string]ipvs.ServiceKey{"mark": markKey}
				return p
			},
			want: []VSStatus{
				{Name: "www", Address: "10.99.0.100:80", Protocol: "tcp", Scheduler: "wrr", Forwarding: "dr", RealServers: []RSStatus{rs3, rs4}},
				{Name: "mark", Address: "fwmark 7", Protocol: "tcp", Scheduler: "rr", Forwarding: "dr", RealServers: []RSStatus{rs5}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ps
			if tc.ps != nil {
				p = tc.ps(p)
			}
			got := virtualServersStatus([]config.VirtualServer{www, mark}, p, table, tc.inKernel)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestIPVSName(t *testing.T) {
	for _, tc := range []struct {
		programs, kernel bool
		want             string
	}{
		{false, false, "not used (VIP-only site)"},
		{true, true, "kernel"},
		{true, false, "in-memory (test)"},
	} {
		if got := ipvsName(tc.programs, tc.kernel); got != tc.want {
			t.Errorf("ipvsName(%v, %v) = %q, want %q", tc.programs, tc.kernel, got, tc.want)
		}
	}
}

func TestPeersStatus(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	peers := []cluster.PeerView{
		{Name: "vs2", Addr: netip.MustParseAddrPort("10.99.0.2:7946"), Alive: true, LastSeen: t0, StateKnown: true,
			State: cluster.State{ConfigDigest: "abc", IPVSDigest: "def", Health: map[string]bool{"www/10.99.0.3:80": true},
				Instances: map[string]cluster.InstanceState{"www": {State: "backup", Priority: 100, Since: t0}}}},
		{Name: "vs3", Addr: netip.MustParseAddrPort("10.99.0.3:7946")},
	}
	got := peersStatus(peers, []cluster.DriftReport{{Peer: cluster.Peer{Name: "vs2"}}})
	want := []PeerStatus{
		{Name: "vs2", Addr: "10.99.0.2:7946", Alive: true, Digest: "abc", Drift: true, LastSeen: t0,
			Instances: map[string]string{"www": "backup"}, Health: map[string]bool{"www/10.99.0.3:80": true}, IPVSDigest: "def",
			InstanceDetail: map[string]PeerInstance{"www": {State: "backup", Priority: 100, Since: t0}}},
		{Name: "vs3", Addr: "10.99.0.3:7946"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
