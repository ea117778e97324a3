package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

	pipe    *pipeline     // checks -> health view -> IPVS
	kernel  *ipvs.Kernel  // the IPVS backend when it is the kernel (sync daemon)
	pubKick chan struct{} // asks the publisher to push our view

	ch    *cluster.Channel
	demux *vrrp.GossipDemux

	elections atomic.Int64 // elections running (vrrp Run not returned)

	resync   resyncState // full connection resync (resync.go)
	resyncer connResync  // nil: no connection sync on this site
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
		pubKick: make(chan struct{}, 1),
	}
	if d.socket == "" {
		d.socket = site.Settings.ControlSocket
	}
	if !opts.SkipPrivilegeCheck {
		if err := checkPrivileges(); err != nil {
			return nil, &StartError{Err: err}
		}
	}
	var backend ipvs.Backend // nil: VIP-only site
	if len(site.VirtualServers) > 0 {
		if opts.IPVS != nil {
			backend = opts.IPVS
		} else {
			k, err := ipvs.NewKernel(ipvs.KernelOptions{Log: d.log})
			if err != nil {
				return nil, &StartError{Err: fmt.Errorf("the site declares %d virtual servers: %w", len(site.VirtualServers), err)}
			}
			backend, d.kernel = k, k
		}
	}
	d.pipe, err = newPipeline(site, backend, pipelineOptions{Log: d.log, OnChange: d.publish})
	if err != nil {
		return nil, &StartError{Config: true, Err: err}
	}
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

	if err := d.serve(runCtx); err != nil {
		return err
	}

	// Checks and IPVS first, so a director that becomes master already
	// has its rules (the backup keeps the same rules warm).
	stopPipeline := d.startPipeline(runCtx)
	defer stopPipeline()
	if d.kernel != nil {
		if err := d.startSync(runCtx); err != nil {
			log.Error("IPVS sync daemon", "error", err)
		}
	}

	d.recordVIPs()
	if err := d.startInstances(runCtx, site.Instances); err != nil {
		d.stopAll(stopPipeline)
		return err
	}
	sdNotify("READY=1\nSTATUS=running")
	log.Info("running", "instances", len(site.Instances), "virtual_servers", len(site.VirtualServers))

	<-ctx.Done()
	log.Info("stopping")
	sdNotify("STOPPING=1")
	d.stopAll(stopPipeline)
	cancel()
	log.Info("stopped")
	return nil
}

// serve starts what answers from outside: the control socket, the
// metrics server and the cluster channel.
func (d *Daemon) serve(ctx context.Context) error {
	if err := ServeControl(ctx, d.socket, d, d.log); err != nil {
		return err
	}
	if addr := d.site.Settings.MetricsAddress; addr != "" {
		if err := serveMetrics(ctx, addr, d.Status, withPprof(d.site.Settings.Pprof), withMetricsLogger(d.log)); err != nil {
			return err
		}
	}
	return d.startCluster(ctx)
}

// startPipeline runs the pipeline under a lifetime of its own, shorter
// than ctx: the returned stop ends it and waits for it, so that the
// rules can be removed after the elections stopped with no pass left to
// put them back. Stop may be called more than once.
func (d *Daemon) startPipeline(ctx context.Context) (stop func()) {
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); d.pipe.run(pctx) }()
	return sync.OnceFunc(func() { cancel(); <-done })
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

// stopAll is the graceful stop, in keepalived's order; stopPipeline
// stops the checks and the reconcile passes (and returns when they have).
func (d *Daemon) stopAll(stopPipeline func()) {
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
	stopPipeline() // no pass may put back what RemoveAll deletes
	if d.pipe.programs() && d.site.Settings.IPVSOnStop != "keep" {
		rep, err := d.pipe.removeAll(ctx)
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
	health, digest := d.pipe.view()
	d.mu.Lock()
	st := cluster.State{ConfigDigest: d.site.Digest(), Instances: map[string]cluster.InstanceState{},
		Health: health, IPVSDigest: digest}
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
	d.mu.Unlock()
	d.ch.SetLocal(st)
}
