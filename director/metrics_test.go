package director

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsFollowStatus(t *testing.T) {
	st := Status{
		Instances: []InstanceStatus{{Name: "www", State: "master", Priority: 150, AdvertsSent: 7,
			Invalid: map[string]uint64{"checksum": 2}, VIPsHeld: []string{"10.0.0.1/24"}}},
		VirtualServers: []VSStatus{{Name: "www", RealServers: []RSStatus{
			{Address: "10.0.0.3:80", Health: "up", IPVSWeight: 1},
			{Address: "10.0.0.4:80", Health: "down", IPVSWeight: -1},
		}}},
		Peers:     []PeerStatus{{Name: "vs2", Alive: true, Drift: true}},
		Reconcile: ReconcileStatus{Creates: 3, Errors: 1},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStatusCollector(func() Status { return st }))
	want := `
# HELP vigil_instance_state 1 for the instance's current state
# TYPE vigil_instance_state gauge
vigil_instance_state{instance="www",state="backup"} 0
vigil_instance_state{instance="www",state="fault"} 0
vigil_instance_state{instance="www",state="init"} 0
vigil_instance_state{instance="www",state="master"} 1
# HELP vigil_real_server_up 1 when the real server's check says up
# TYPE vigil_real_server_up gauge
vigil_real_server_up{real_server="10.0.0.3:80",virtual_server="www"} 1
vigil_real_server_up{real_server="10.0.0.4:80",virtual_server="www"} 0
# HELP vigil_adverts_invalid_total adverts dropped, by reason
# TYPE vigil_adverts_invalid_total counter
vigil_adverts_invalid_total{instance="www",reason="checksum"} 2
# HELP vigil_peer_config_drift 1 when the peer's config digest differs from ours
# TYPE vigil_peer_config_drift gauge
vigil_peer_config_drift{peer="vs2"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"vigil_instance_state", "vigil_real_server_up", "vigil_adverts_invalid_total", "vigil_peer_config_drift"); err != nil {
		t.Fatal(err)
	}
}
