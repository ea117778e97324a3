package director

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/vrrp"
)

// TestStatusShowsFailbackWaitAndLinger: what the docs promise status
// shows of a returning director waiting for the master's connections and
// of a resigned master keeping its VIPs, in JSON fields and in the text.
func TestStatusShowsFailbackWaitAndLinger(t *testing.T) {
	cfg := &config.Instance{Name: "www", VRID: 51, AdvertInterval: config.Duration{Duration: time.Second}}
	waiting := instanceStatus(instanceRun{cfg: cfg, election: vrrp.Status{State: vrrp.Backup, PreemptHolds: []string{resyncHold}}})
	if waiting.ResyncWait != resyncWait || len(waiting.PreemptHolds) != 1 || waiting.PreemptHolds[0] != "resync" {
		t.Fatalf("waiting backup: holds %v, resync_wait %v", waiting.PreemptHolds, waiting.ResyncWait)
	}
	done := instanceStatus(instanceRun{cfg: cfg, election: vrrp.Status{State: vrrp.Master}, resync: "holds 24 connections (master vs2 sent 24) after 180ms"})
	if done.ResyncWait != 0 || done.Resync == "" {
		t.Fatalf("after the wait: %+v", done)
	}
	lingering := instanceStatus(instanceRun{cfg: cfg, election: vrrp.Status{State: vrrp.Backup}, lingering: true})
	if !lingering.Lingering {
		t.Fatal("lingering not shown")
	}
	var b bytes.Buffer
	Status{Instances: []InstanceStatus{waiting, done, lingering}}.WriteText(&b, time.Now())
	for _, want := range []string{"waiting up to 10s for the master's connections", "last resync: holds 24 connections", "resigned, VIPs kept until the new master is heard"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}
