package director

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// statusCollector exports the daemon's Status as Prometheus metrics at
// scrape time, so metrics and `vigil status` can never disagree.
type statusCollector struct {
	status func() Status

	state, priority, transitions, advertsSent, advertsRecv, invalid *prometheus.Desc
	vipsHeld, rsUp, rsWeight, checkLatency, rsConns                 *prometheus.Desc
	reconcileWrites, reconcileErrors, peerAlive, peerDrift          *prometheus.Desc
}

func newStatusCollector(status func() Status) *statusCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("vigil_"+name, help, labels, nil)
	}
	return &statusCollector{
		status:          status,
		state:           d("instance_state", "1 for the instance's current state", "instance", "state"),
		priority:        d("instance_priority", "effective VRRP priority", "instance"),
		transitions:     d("instance_transitions_total", "state transitions", "instance"),
		advertsSent:     d("adverts_sent_total", "adverts sent", "instance"),
		advertsRecv:     d("adverts_received_total", "valid adverts received", "instance"),
		invalid:         d("adverts_invalid_total", "adverts dropped, by reason", "instance", "reason"),
		vipsHeld:        d("vips_held", "VIPs this director holds", "instance"),
		rsUp:            d("real_server_up", "1 when the real server's check says up", "virtual_server", "real_server"),
		rsWeight:        d("real_server_ipvs_weight", "weight in the kernel, -1 if absent", "virtual_server", "real_server"),
		checkLatency:    d("check_latency_seconds", "latency of the last check", "virtual_server", "real_server"),
		rsConns:         d("real_server_connections_total", "IPVS connections scheduled to the real server", "virtual_server", "real_server"),
		reconcileWrites: d("reconcile_writes_total", "IPVS writes by kind", "kind"),
		reconcileErrors: d("reconcile_errors_total", "IPVS reconcile errors"),
		peerAlive:       d("peer_alive", "1 when the peer is alive on the cluster channel", "peer"),
		peerDrift:       d("peer_config_drift", "1 when the peer's config digest differs from ours", "peer"),
	}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.priority, c.transitions, c.advertsSent, c.advertsRecv,
		c.invalid, c.vipsHeld, c.rsUp, c.rsWeight, c.checkLatency, c.rsConns, c.reconcileWrites,
		c.reconcileErrors, c.peerAlive, c.peerDrift} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.status()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	ct := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	for _, in := range s.Instances {
		for _, st := range []string{"init", "backup", "master", "fault"} {
			v := 0.0
			if in.State == st {
				v = 1
			}
			g(c.state, v, in.Name, st)
		}
		g(c.priority, float64(in.Priority), in.Name)
		ct(c.transitions, float64(in.Transitions), in.Name)
		ct(c.advertsSent, float64(in.AdvertsSent), in.Name)
		ct(c.advertsRecv, float64(in.AdvertsRecv), in.Name)
		for reason, n := range in.Invalid {
			ct(c.invalid, float64(n), in.Name, reason)
		}
		g(c.vipsHeld, float64(len(in.VIPsHeld)), in.Name)
	}
	for _, vs := range s.VirtualServers {
		for _, rs := range vs.RealServers {
			up := 0.0
			if rs.Health == "up" {
				up = 1
			}
			g(c.rsUp, up, vs.Name, rs.Address)
			g(c.rsWeight, float64(rs.IPVSWeight), vs.Name, rs.Address)
			g(c.checkLatency, rs.Latency.Seconds(), vs.Name, rs.Address)
			ct(c.rsConns, float64(rs.Conns), vs.Name, rs.Address)
		}
	}
	ct(c.reconcileWrites, float64(s.Reconcile.Creates), "create")
	ct(c.reconcileWrites, float64(s.Reconcile.Updates), "update")
	ct(c.reconcileWrites, float64(s.Reconcile.Deletes), "delete")
	ct(c.reconcileErrors, float64(s.Reconcile.Errors))
	for _, p := range s.Peers {
		alive, drift := 0.0, 0.0
		if p.Alive {
			alive = 1
		}
		if p.Drift {
			drift = 1
		}
		g(c.peerAlive, alive, p.Name)
		g(c.peerDrift, drift, p.Name)
	}
}

// serveMetrics serves /metrics (and /debug/pprof/) on addr until ctx ends.
func serveMetrics(ctx context.Context, addr string, status func() Status) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStatusCollector(status))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Profiles on the same (operator-chosen) address: seeing into a
	// daemon's CPU and memory is part of seeing into it.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener closed under us; nothing to do
		}
	}()
	return nil
}
