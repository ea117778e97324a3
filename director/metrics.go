package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"time"

	"golang.org/x/net/netutil"
)

// The metrics are written by hand in the Prometheus text format (0.0.4)
// rather than through client_golang: that library and what it pulls in
// (protobuf, procfs) cost about 2 MB of the daemon's resident memory, for
// fifteen gauges and counters built from Status at scrape time.

// metricsContentType is what Prometheus expects for text format 0.0.4.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// family is one metric family: its HELP and TYPE lines, then its samples.
type family struct {
	name, help, typ string   // typ is "gauge" or "counter"
	labels          []string // label names, the same for every sample
	samples         []sample
}

// sample is one line of a family: label values in the order of the
// family's label names, and the value.
type sample struct {
	values []string
	v      float64
}

func (f *family) add(v float64, values ...string) {
	f.samples = append(f.samples, sample{values: values, v: v})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// statusFamilies builds the metric families from a Status, so the metrics
// and `vigil status` can never disagree. Families come in a fixed order,
// and samples in the order of Status (map keys sorted), so a scrape is
// deterministic.
func statusFamilies(s Status) []*family {
	fam := func(name, typ, help string, labels ...string) *family {
		return &family{name: "vigil_" + name, help: help, typ: typ, labels: labels}
	}
	const g, c = "gauge", "counter"
	var (
		state           = fam("instance_state", g, "1 for the instance's current state", "instance", "state")
		priority        = fam("instance_priority", g, "effective VRRP priority", "instance")
		transitions     = fam("instance_transitions_total", c, "state transitions", "instance")
		advertsSent     = fam("adverts_sent_total", c, "adverts sent", "instance")
		advertsRecv     = fam("adverts_received_total", c, "valid adverts received", "instance")
		invalid         = fam("adverts_invalid_total", c, "adverts dropped, by reason", "instance", "reason")
		vipsHeld        = fam("vips_held", g, "VIPs this director holds", "instance")
		repairs         = fam("invariant_repairs_total", c, "times the VIPs were out of step with the election and were repaired", "instance")
		evicted         = fam("vips_evicted_total", c, "VIPs removed because they were present while not master", "instance")
		answersSkipped  = fam("advert_answers_skipped_total", c, "adverts of other masters not answered (one answer per advert interval)", "instance")
		elections       = fam("elections_running", g, "VRRP elections running in this process (one per instance)")
		dualTransients  = fam("dual_master_transients_total", c, "overlaps of master claims too short to be a dual master (preemptions)")
		rsUp            = fam("real_server_up", g, "1 when the real server's check says up", "virtual_server", "real_server")
		rsWeight        = fam("real_server_ipvs_weight", g, "weight in the kernel, -1 if absent", "virtual_server", "real_server")
		checkLatency    = fam("check_latency_seconds", g, "latency of the last check", "virtual_server", "real_server")
		rsConns         = fam("real_server_connections_total", c, "IPVS connections scheduled to the real server", "virtual_server", "real_server")
		reconcileWrites = fam("reconcile_writes_total", c, "IPVS writes by kind", "kind")
		reconcileErrors = fam("reconcile_errors_total", c, "IPVS reconcile errors")
		peerAlive       = fam("peer_alive", g, "1 when the peer is alive on the cluster channel", "peer")
		peerDrift       = fam("peer_config_drift", g, "1 when the peer's config digest differs from ours", "peer")
	)
	for _, in := range s.Instances {
		for _, st := range states {
			state.add(b2f(in.State == stateName(st)), in.Name, stateName(st))
		}
		priority.add(float64(in.Priority), in.Name)
		transitions.add(float64(in.Transitions), in.Name)
		advertsSent.add(float64(in.AdvertsSent), in.Name)
		advertsRecv.add(float64(in.AdvertsRecv), in.Name)
		for _, r := range slices.Sorted(maps.Keys(in.Invalid)) {
			invalid.add(float64(in.Invalid[r]), in.Name, r)
		}
		vipsHeld.add(float64(len(in.VIPsHeld)), in.Name)
		repairs.add(float64(in.Repairs), in.Name)
		evicted.add(float64(in.VIPsEvicted), in.Name)
		answersSkipped.add(float64(in.AnswersSkipped), in.Name)
	}
	elections.add(float64(s.Elections))
	dualTransients.add(float64(s.DualMasterTransients))
	for _, vs := range s.VirtualServers {
		for _, rs := range vs.RealServers {
			rsUp.add(b2f(rs.Health == "up"), vs.Name, rs.Address)
			rsWeight.add(float64(rs.IPVSWeight), vs.Name, rs.Address)
			checkLatency.add(rs.Latency.Seconds(), vs.Name, rs.Address)
			rsConns.add(float64(rs.Conns), vs.Name, rs.Address)
		}
	}
	reconcileWrites.add(float64(s.Reconcile.Creates), "create")
	reconcileWrites.add(float64(s.Reconcile.Updates), "update")
	reconcileWrites.add(float64(s.Reconcile.Deletes), "delete")
	reconcileErrors.add(float64(s.Reconcile.Errors))
	for _, p := range s.Peers {
		peerAlive.add(b2f(p.Alive), p.Name)
		peerDrift.add(b2f(p.Drift), p.Name)
	}
	return []*family{state, priority, transitions, advertsSent, advertsRecv, invalid, vipsHeld,
		repairs, evicted, answersSkipped, elections, dualTransients, rsUp, rsWeight, checkLatency, rsConns, reconcileWrites, reconcileErrors, peerAlive, peerDrift}
}

// appendFamilies appends fams to b in the text format. Families without
// samples are left out, as client_golang does.
func appendFamilies(b []byte, fams []*family) ([]byte, error) {
	for _, f := range fams {
		if len(f.samples) == 0 {
			continue
		}
		b = append(b, "# HELP "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = appendEscaped(b, f.help, false)
		b = append(b, "\n# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.typ...)
		b = append(b, '\n')
		for _, s := range f.samples {
			if len(s.values) != len(f.labels) {
				// A programming error; refuse it rather than write a
				// line Prometheus would reject along with the rest.
				return nil, fmt.Errorf("metric %s: %d label values for %d labels", f.name, len(s.values), len(f.labels))
			}
			b = append(b, f.name...)
			for i, l := range f.labels {
				if i == 0 {
					b = append(b, '{')
				} else {
					b = append(b, ',')
				}
				b = append(b, l...)
				b = append(b, `="`...)
				b = appendEscaped(b, s.values[i], true)
				b = append(b, '"')
			}
			if len(f.labels) > 0 {
				b = append(b, '}')
			}
			b = append(b, ' ')
			b = appendFloat(b, s.v)
			b = append(b, '\n')
		}
	}
	return b, nil
}

// appendEscaped escapes as the text format requires: backslash and
// newline always, the double quote only inside label values.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat spells values as client_golang does; strconv writes +Inf,
// -Inf and NaN as the format wants them.
func appendFloat(b []byte, v float64) []byte { return strconv.AppendFloat(b, v, 'g', -1, 64) }

// metricsHandler serves the families built from status() on each scrape.
func metricsHandler(status func() Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// Rendered whole before the header goes out, so a failure is a
		// 500 rather than a truncated scrape.
		b, err := appendFamilies(nil, statusFamilies(status()))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", metricsContentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	})
}

// metricsLimits bound what clients of the metrics address can hold: a
// flood of idle or slow clients must not take the file descriptors the
// election needs (an ARP socket, the control socket, a notify pipe).
type metricsLimits struct {
	maxConns   int           // connections served at once; the rest wait in the kernel's backlog
	readHeader time.Duration // to read a request's header (slowloris)
	read       time.Duration // to read a whole request
	write      time.Duration // to write a response
	idle       time.Duration // a keep-alive connection between requests
	maxHeader  int           // bytes of request header
}

// maxMetricsConns is the default cap: Prometheus uses one connection per
// target, and a few humans with curl or pprof add a handful.
const maxMetricsConns = 64

// defaultMetricsLimits are the limits for a server with or without pprof.
func defaultMetricsLimits(pprof bool) metricsLimits {
	l := metricsLimits{
		maxConns:   maxMetricsConns,
		readHeader: 5 * time.Second,
		read:       10 * time.Second,
		write:      10 * time.Second,
		idle:       30 * time.Second, // above a 15 s scrape interval, so Prometheus keeps its connection
		maxHeader:  16 << 10,
	}
	if pprof {
		// A CPU profile writes after sampling for ?seconds= (30 by
		// default); pprof refuses one not shorter than the write
		// timeout, so this allows up to 60 s.
		l.write = 65 * time.Second
	}
	return l
}

// metricsOptions are the metrics server's settings beyond its address.
type metricsOptions struct {
	pprof  bool
	limits *metricsLimits // nil: defaultMetricsLimits(pprof)
	log    *slog.Logger
}

type metricsOption func(*metricsOptions)

// withPprof serves /debug/pprof/ too (the site's pprof key).
func withPprof(on bool) metricsOption { return func(o *metricsOptions) { o.pprof = on } }

// withMetricsLimits replaces the default limits (tests).
func withMetricsLimits(l metricsLimits) metricsOption {
	return func(o *metricsOptions) { o.limits = &l }
}

// withMetricsLogger logs the server's errors (accept failures) there.
func withMetricsLogger(log *slog.Logger) metricsOption {
	return func(o *metricsOptions) { o.log = log }
}

// metricsMux routes /metrics, and /debug/pprof/ only when asked: profiles
// and goroutine dumps show a daemon's insides to whoever reaches the
// address, and a CPU profile costs CPU, so they are opt-in.
func metricsMux(status func() Status, pprofOn bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler(status))
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serveMetrics serves /metrics (and /debug/pprof/ withPprof) on addr
// until ctx ends. At most limits.maxConns connections are served at once,
// so the server's file descriptors stay bounded whatever the clients do.
func serveMetrics(ctx context.Context, addr string, status func() Status, opts ...metricsOption) error {
	var o metricsOptions
	for _, opt := range opts {
		opt(&o)
	}
	lim := defaultMetricsLimits(o.pprof)
	if o.limits != nil {
		lim = *o.limits
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen on %s: %w", addr, err)
	}
	// Connections beyond the cap are not accepted: they wait in the
	// kernel's backlog and cost this process no descriptor.
	ln = netutil.LimitListener(ln, lim.maxConns)
	srv := &http.Server{
		Handler:           metricsMux(status, o.pprof),
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
		MaxHeaderBytes:    lim.maxHeader,
		ErrorLog:          slog.NewLogLogger(o.log.With("component", "metrics").Handler(), slog.LevelWarn),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("metrics server stopped", "addr", addr, "error", err)
		}
	}()
	return nil
}
