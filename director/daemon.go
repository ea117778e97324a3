package director

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-lb/vigil/cluster"
	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/failover"
	"github.com/vigil-lb/vigil/healthcheck"
	"github.com/vigil-lb/vigil/ipvs"
	"github.com/vigil-lb/vigil/vrrp"
)

// Options configure a Daemon.
type Options struct {
	ConfigPath string
	Node       string // this director's [[director]] name
	Socket     string // control socket; "" = the site's control_socket
	Logger     *slog.Logger
	// IPVS replaces the kernel backend (tests); nil: the kernel's IPVS,
	// required when the site has virtual servers.
	IPVS ipvs.Backend
	// SkipPrivilegeCheck lets tests run parts without root.
	SkipPrivilegeCheck bool
	// VIPRecord is a file where the daemon records the VIPs it may hold
	// (failover.WriteRecord), so that the next start removes them even if
	// the site file no longer loads; "": none.
	VIPRecord string
}

// StartError is an error that stops the daemon before it runs. Config is
// true when the site file is at fault (vigil run exits 1), false when the
// machine is (exit 3).
type StartError struct {
	Config bool
	Err    error
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Daemon is one director of a site.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	started time.Time
	socket  string

	ctx context.Context // the daemon's lifetime, from Run

	reloadMu sync.Mutex // one reload at a time

	mu         sync.Mutex // guards everything below
	site       *config.Site
	me         *config.Director
	lastReload time.Time
	reloadErr  string
	warnings   map[string]string // key -> text (drift, dual master)
	instances  map[string]*instance
	plan       checkPlan
	running    map[string]healthcheck.Spec // specIdentity -> the spec running
	wasUp      map[ipvs.ServerRef]bool     // has been up since start (slow start applies to recoveries only)
	health     ipvs.Health
	vss        []ipvs.VirtualServer
	quorum     ipvs.QuorumState
	quorumLost []string
	recStat    ReconcileStatus
	ipvsDigest string // of the last table applied without error
	nextChange time.Time

	checks  *healthcheck.Scheduler
	backend ipvs.Backend // nil: VIP-only site
	kernel  *ipvs.Kernel // the backend when it is the kernel (sync daemon)
	rec     *ipvs.Reconciler
	kick    chan struct{} // asks the reconcile loop for a pass
	pubKick chan struct{} // asks the publisher to push our view

	ch    *cluster.Channel
	demux *vrrp.GossipDemux

	elections atomic.Int64 // elections running (vrrp Run not returned)
}

// New loads the site file and checks that this machine can run it. It
// changes nothing on the machine.
func New(opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	site, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, &StartError{Config: true, Err: err}
	}
	me, err := site.Director(opts.Node)
	if err != nil {
		return nil, &StartError{Config: true, Err: fmt.Errorf("%s: %w (use --node NAME)", opts.ConfigPath, err)}
	}
	d := &Daemon{
		opts: opts, log: opts.Logger.With("node", me.Name), site: site, me: me,
		socket: opts.Socket, warnings: map[string]string{}, instances: map[string]*instance{},
		health: ipvs.Health{}, quorum: ipvs.QuorumState{}, kick: make(chan struct{}, 1), pubKick: make(chan struct{}, 1),
		wasUp: map[ipvs.ServerRef]bool{},
	}
	if d.socket == "" {
		d.socket = site.Settings.ControlSocket
	}
	if !opts.SkipPrivilegeCheck {
		if err := checkPrivileges(); err != nil {
			return nil, &StartError{Err: err}
		}
	}
	if len(site.VirtualServers) > 0 {
		if opts.IPVS != nil {
			d.backend = opts.IPVS
		} else {
			k, err := ipvs.NewKernel(ipvs.KernelOptions{Log: d.log})
			if err != nil {
				return nil, &StartError{Err: fmt.Errorf("the site declares %d virtual servers: %w", len(site.VirtualServers), err)}
			}
			d.backend, d.kernel = k, k
		}
		d.rec = ipvs.NewReconciler(d.backend, d.log)
	}
	vss, err := virtualServers(site)
	if err != nil {
		return nil, &StartError{Config: true, Err: err}
	}
	d.vss = vss
	return d, nil
}

// checkPrivileges fails unless the process may change addresses and open
// raw sockets (CAP_NET_ADMIN and CAP_NET_RAW).
func checkPrivileges() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return fmt.Errorf("parse CapEff %q: %w", hex, err)
		}
		const netAdmin, netRaw = 12, 13
		var missing []string
		if caps&(1<<netAdmin) == 0 {
			missing = append(missing, "CAP_NET_ADMIN")
		}
		if caps&(1<<netRaw) == 0 {
			missing = append(missing, "CAP_NET_RAW")
		}
		if len(missing) > 0 {
			return fmt.Errorf("vigil run needs %s (run as root, or grant them with AmbientCapabilities in the unit)", strings.Join(missing, " and "))
		}
		return nil
	}
	return errors.New("read capabilities: no CapEff line in /proc/self/status")
}

// Run runs the director until ctx ends, then stops gracefully: priority-0
// adverts, VIPs released, sync daemon stopped, IPVS rules removed unless
// ipvs_on_stop = "keep", cluster left.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now()
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.ctx = runCtx
	site := d.site
	log := d.log
	log.Info("starting", "site", site.Settings.Name, "config", d.opts.ConfigPath, "digest", site.Digest()[:12])
	if n := site.Settings.Nice; n != 0 {
		if err := setNice(n); err != nil {
			log.Warn("scheduling priority not changed", "error", err)
		} else {
			log.Info("scheduling priority set", "nice", n)
		}
	}

	if err := ServeControl(runCtx, d.socket, d, log); err != nil {
		return err
	}
	if addr := site.Settings.MetricsAddress; addr != "" {
		if err := serveMetrics(runCtx, addr, d.Status, withPprof(site.Settings.Pprof), withMetricsLogger(log)); err != nil {
			return err
		}
	}
	if err := d.startCluster(runCtx); err != nil {
		return err
	}

	// Checks and IPVS first, so a director that becomes master already
	// has its rules (the backup keeps the same rules warm).
	d.checks = healthcheck.NewScheduler(healthcheck.Options{Logger: log})
	var wg sync.WaitGroup
	d.applyCheckPlan(planChecks(site))
	wg.Add(2)
	go func() { defer wg.Done(); _ = d.checks.Run(runCtx) }()
	go func() { defer wg.Done(); d.followChecks(runCtx) }()
	if d.rec != nil {
		if err := d.startSync(runCtx); err != nil {
			log.Error("IPVS sync daemon", "error", err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); d.reconcileLoop(runCtx) }()
	}

	d.recordVIPs()
	if err := d.startInstances(runCtx, site.Instances); err != nil {
		d.stopAll()
		return err
	}
	sdNotify("READY=1\nSTATUS=running")
	log.Info("running", "instances", len(site.Instances), "virtual_servers", len(site.VirtualServers))

	<-ctx.Done()
	log.Info("stopping")
	sdNotify("STOPPING=1")
	d.stopAll()
	cancel()
	wg.Wait()
	log.Info("stopped")
	return nil
}

// recordVIPs writes every VIP this director may hold to the VIP record,
// before any can be claimed.
func (d *Daemon) recordVIPs() {
	if d.opts.VIPRecord == "" {
		return
	}
	d.mu.Lock()
	var vips []failover.VIP
	for i := range d.site.Instances {
		vips = append(vips, claimerConfig(&d.site.Instances[i], d.me).VIPs...)
	}
	d.mu.Unlock()
	if err := failover.WriteRecord(d.opts.VIPRecord, vips); err != nil {
		d.log.Warn("VIP record not written: a crash followed by a site file that does not load would leave stale VIPs", "error", err)
	}
}

// stopAll is the graceful stop, in keepalived's order.
func (d *Daemon) stopAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d.mu.Lock()
	insts := make([]*instance, 0, len(d.instances))
	for _, in := range d.instances {
		insts = append(insts, in)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Add(1)
		go func() { defer wg.Done(); in.stop(ctx, true) }()
	}
	wg.Wait()
	d.stopSync(ctx)
	if d.rec != nil && d.site.Settings.IPVSOnStop != "keep" {
		rep, err := d.rec.RemoveAll(ctx)
		d.log.Info("IPVS rules removed", "report", rep.String(), "error", err)
	}
	if d.ch != nil {
		_ = d.ch.Leave(time.Second)
		_ = d.ch.Close()
	}
}

// startCluster starts the cluster channel when the site has peers.
func (d *Daemon) startCluster(ctx context.Context) error {
	site, me := d.site, d.me
	if len(site.Directors) < 2 {
		return nil
	}
	var peers []netip.AddrPort
	for _, o := range site.Directors {
		if o.Name != me.Name {
			peers = append(peers, netip.AddrPortFrom(o.Address, uint16(site.Cluster.Port)))
		}
	}
	ch, err := cluster.New(cluster.Config{
		Site: site.Settings.Name, NodeName: me.Name,
		BindAddr: site.ClusterBindAddress(me), AdvertiseAddr: me.Address,
		Port: site.Cluster.Port, Peers: peers,
		KeyFile: site.Cluster.SecretKeyFile, Insecure: site.Cluster.Insecure,
		OnEvent: d.clusterEvent, Logger: d.opts.Logger.With("component", "cluster"), // the channel adds site and node
	})
	if err != nil {
		return fmt.Errorf("cluster channel: %w", err)
	}
	d.ch = ch
	d.demux = vrrp.NewGossipDemux(ch.Messenger("vrrp"))
	d.publishNow()
	go d.publisher(ctx)
	if err := ch.Start(ctx); err != nil {
		return fmt.Errorf("cluster channel: %w", err)
	}
	return nil
}

// clusterEvent keeps drift and dual-master reports as status warnings
// (the channel logs every event itself).
func (d *Daemon) clusterEvent(ev cluster.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch ev.Kind {
	case cluster.Drift:
		d.warnings["drift/"+ev.Peer.Name] = fmt.Sprintf("config drift: %s runs digest %.12s, we run %.12s", ev.Peer.Name, ev.PeerDigest, ev.LocalDigest)
	case cluster.DriftCleared:
		delete(d.warnings, "drift/"+ev.Peer.Name)
	case cluster.DualMaster:
		d.warnings["dual/"+ev.Instance] = fmt.Sprintf("dual master: instance %s is master on %s", ev.Instance, strings.Join(ev.Masters, " and "))
	case cluster.DualMasterCleared:
		delete(d.warnings, "dual/"+ev.Instance)
	}
}

// publish asks the publisher to push this director's view to the
// cluster channel. It never blocks: transitions must not wait on the
// network (a late Backup transition would let a stale announcement out).
func (d *Daemon) publish() {
	select {
	case d.pubKick <- struct{}{}:
	default:
	}
}

// publisher pushes the view whenever asked, coalescing bursts.
func (d *Daemon) publisher(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.pubKick:
			d.publishNow()
		}
	}
}

// publishNow pushes this director's view to the cluster channel.
func (d *Daemon) publishNow() {
	if d.ch == nil {
		return
	}
	d.mu.Lock()
	st := cluster.State{ConfigDigest: d.site.Digest(), Instances: map[string]cluster.InstanceState{},
		Health: map[string]bool{}, IPVSDigest: d.ipvsDigest}
	for name, in := range d.instances {
		s := in.vrrp.Status()
		is := cluster.InstanceState{
			State: stateName(s.State), Priority: int(s.Priority), Master: s.State == vrrp.Master,
			Since: s.Since, AdvertInterval: in.cfg.AdvertInterval.Duration,
		}
		if is.Master {
			cs := in.claim.Status()
			is.VIPsAdded, is.FirstGARP = cs.VIPsAdded, cs.Announce.FirstSent
		}
		st.Instances[name] = is
	}
	for ref, h := range d.health {
		st.Health[healthKey(ref)] = h.Up
	}
	d.mu.Unlock()
	d.ch.SetLocal(st)
}

// applyCheckPlan hands the site's checks to the scheduler. A check whose
// spec did not change keeps running with its state. A server whose check
// changed (a new interval, say) keeps its health: its new check starts in
// the state the old one had reached, so a reload never pulls a healthy
// server for rise x interval. New servers start in their check's initial
// state.
func (d *Daemon) applyCheckPlan(p checkPlan) {
	d.mu.Lock()
	running := map[string]healthcheck.Spec{}
	plan := checkPlan{refs: map[string][]ipvs.ServerRef{}, always: p.always, initUp: p.initUp}
	for _, s := range p.specs {
		refs := p.refs[s.Key()]
		id := specIdentity(s)
		if old, ok := d.running[id]; ok {
			s = old
		} else {
			for _, r := range refs {
				if h, ok := d.health[r]; ok {
					s.InitialUp = h.Up
					break
				}
			}
		}
		running[id] = s
		plan.specs = append(plan.specs, s)
		plan.refs[s.Key()] = refs
	}
	// A zero Since means "up since before we started": like HAProxy,
	// slow start never applies at process start, only to a recovery.
	health := ipvs.Health{}
	for _, refs := range plan.refs {
		for _, r := range refs {
			if h, ok := d.health[r]; ok {
				health[r] = h
			} else {
				health[r] = ipvs.ServerHealth{Up: p.initUp[r]}
			}
		}
	}
	for _, r := range p.always {
		if h, ok := d.health[r]; ok {
			health[r] = h
		} else {
			health[r] = ipvs.ServerHealth{Up: true}
		}
	}
	d.plan, d.health, d.running = plan, health, running
	d.mu.Unlock()
	if err := d.checks.Set(plan.specs); err != nil {
		d.log.Error("health checks", "error", err)
	}
	d.kickReconcile()
}

// specIdentity is a check's key without its initial state, which the
// daemon sets itself when a changed check takes over a server's health.
func specIdentity(s healthcheck.Spec) string {
	s.InitialUp = false
	return s.Key()
}

// followChecks applies check verdicts to the health view.
func (d *Daemon) followChecks(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-d.checks.Changes():
			d.mu.Lock()
			for _, r := range d.plan.refs[c.Key] {
				h := d.health[r]
				if c.Up && !h.Up && d.wasUp[r] {
					h.Since = c.At // a recovery: slow start applies
				}
				if c.Up {
					d.wasUp[r] = true
				}
				h.Up = c.Up
				h.Weight, h.WeightSet = c.Weight, c.Weight != healthcheck.NoWeight
				d.health[r] = h
			}
			d.mu.Unlock()
			if !c.Initial {
				d.log.Info("real server check", "target", c.Spec.Target.String(), "up", c.Up, "reason", c.Reason,
					"passes", c.Passes, "fails", c.Fails)
			}
			d.kickReconcile()
			d.publish()
		}
	}
}

func (d *Daemon) kickReconcile() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// reconcileLoop makes IPVS match the health view: at once on a change,
// periodically to repair what someone changed by hand, and when slow
// start next moves a weight.
func (d *Daemon) reconcileLoop(ctx context.Context) {
	tick := time.NewTicker(d.site.Settings.ReconcileInterval.Duration)
	defer tick.Stop()
	slow := time.NewTimer(time.Hour)
	defer slow.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-tick.C:
		case <-slow.C:
		}
		next := d.reconcileOnce(ctx)
		if !next.IsZero() {
			slow.Reset(max(time.Until(next), 10*time.Millisecond))
		}
	}
}

// reconcileOnce builds the desired table and applies it; it returns when
// slow start next needs a pass (zero: never).
func (d *Daemon) reconcileOnce(ctx context.Context) time.Time {
	d.mu.Lock()
	in := ipvs.BuildInput{VirtualServers: d.vss, Health: maps.Clone(d.health), Now: time.Now(), Quorum: d.quorum}
	d.mu.Unlock()
	out, err := ipvs.Build(in)
	if err != nil {
		d.mu.Lock()
		d.recStat.Errors++
		d.recStat.LastError = err.Error()
		d.mu.Unlock()
		d.log.Error("build IPVS table", "error", err)
		return time.Time{}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	rep, err := d.rec.Apply(cctx, out.Table)
	cancel()
	d.mu.Lock()
	for _, name := range out.QuorumLost {
		if !contains(d.quorumLost, name) {
			d.log.Warn("quorum lost: sorry server (if any) takes the traffic", "virtual_server", name)
		}
	}
	d.quorum, d.quorumLost = out.Quorum, out.QuorumLost
	r := &d.recStat
	r.Passes++
	r.LastPass = time.Now()
	r.Creates += uint64(rep.Creates)
	r.Updates += uint64(rep.Updates)
	r.Deletes += uint64(rep.Deletes)
	r.Errors += uint64(rep.Errors)
	changed := false
	if err != nil {
		r.LastError = err.Error()
	} else if dg := tableDigest(out.Table); dg != d.ipvsDigest {
		d.ipvsDigest, changed = dg, true
	}
	d.mu.Unlock()
	if err != nil {
		d.log.Error("IPVS reconcile", "report", rep.String(), "error", err)
	} else if rep.Writes() > 0 {
		d.log.Info("IPVS reconciled", "report", rep.String())
	}
	if changed {
		d.publish()
	}
	return out.NextChange
}

// tableDigest identifies a desired IPVS table: services with their
// scheduling and destinations with their weights, not counters.
func tableDigest(t ipvs.Table) string {
	h := sha256.New()
	for _, s := range t.Services {
		fmt.Fprintf(h, "%s|%s|%d|%d|%d\n", s.Key, s.Scheduler, s.Flags, s.Timeout, s.Netmask)
		for _, d := range s.Destinations {
			fmt.Fprintf(h, " %s|%d|%d|%d|%d\n", d.Key(), d.Weight, d.Forwarding, d.UpperThreshold, d.LowerThreshold)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
