package failover_test

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vigil-lb/vigil/failover"
)

// How the daemon drives one instance: remove stale VIPs before the
// election starts, apply each election event, reannounce when a lower
// priority master is heard, release and close on shutdown.
func ExampleClaimer() {
	ctx := context.Background()
	c, err := failover.NewClaimer(failover.ClaimerConfig{
		Instance: "www",
		VIPs: []failover.VIP{
			{Prefix: netip.MustParsePrefix("192.168.0.101/24"), Interface: "eth0", Label: "eth0:101"},
			{Prefix: netip.MustParsePrefix("2001:db8::101/128"), Interface: "eth0"},
		},
		Announce: failover.AnnounceConfig{Repeat: 4, Interval: 1100 * time.Millisecond, Refresh: time.Minute},
		Notify: []failover.NotifyCommand{
			{Argv: []string{"/etc/vigil/notify.sh"}},                                                     // every transition
			{Argv: []string{"/etc/vigil/cloud-move-ip"}, States: []failover.State{failover.StateMaster}}, // like notify_master
		},
		NotifyTimeout: 10 * time.Second,
	})
	if err != nil {
		slog.Error("instance www", "error", err)
		return
	}
	if _, err := c.RemoveStale(ctx); err != nil {
		slog.Error("stale VIPs", "error", err)
	}

	// From the election's events:
	_ = c.Transition(ctx, failover.Transition{From: failover.StateBackup, To: failover.StateMaster, Priority: 150, Reason: "master down timer expired"})
	c.Reannounce() // heard a lower priority master
	st := c.Status()
	slog.Info("claimed", "vips", st.VIPs, "vip_added", st.VIPsAdded, "first_garp", st.Announce.FirstSent)

	// SIGTERM: give the VIPs up, then close.
	_ = c.Transition(ctx, failover.Transition{From: failover.StateMaster, To: failover.StateStop, Priority: 0, Reason: "shutdown"})
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = c.Close(closeCtx)
}
