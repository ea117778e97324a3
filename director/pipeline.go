package director

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/healthcheck"
	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/ipvs"
)

// pipeline turns the checks' verdicts into the IPVS table: the health
// view (seeded from the site's checks, moved by their changes), ipvs.Build
// over it, and the Reconciler that makes the backend hold the result. It
// knows nothing of elections or the cluster: it tells its owner through
// onChange when there is something new to publish.
type pipeline struct {
	log      *slog.Logger
	clk      clock.Clock
	checks   *healthcheck.Scheduler
	rec      *ipvs.Reconciler // nil: a VIP-only site (nothing to program)
	onChange func()           // the health view or the programmed table changed
	kick     chan struct{}    // asks the reconcile loop for a pass

	// planMu makes a new plan and its hand-over to the scheduler one
	// step, so two reloads cannot leave the scheduler on the older plan.
	planMu sync.Mutex

	mu         sync.Mutex    // guards everything below
	interval   time.Duration // between repair passes (the site's reconcile_interval)
	vss        []ipvs.VirtualServer
	plan       checkPlan
	running    map[string]healthcheck.Spec // specIdentity -> the spec running
	wasUp      map[ipvs.ServerRef]bool     // has been up since start (slow start applies to recoveries only)
	health     ipvs.Health
	quorum     ipvs.QuorumState
	quorumLost []string
	hadQuorum  map[string]bool // virtual servers that have had their quorum since start
	stat       ReconcileStatus
	digest     string // of the last table applied without error
}

// pipelineOptions are the parts of a pipeline that tests replace.
type pipelineOptions struct {
	Log *slog.Logger
	// Clock drives the repair and slow-start passes; nil: the system clock.
	Clock clock.Clock
	// Checks configure the scheduler (Logger defaults to Log).
	Checks healthcheck.Options
	// OnChange is called, never under the pipeline's lock, when the
	// health view or the programmed table changed; nil: nobody listens.
	OnChange func()
}

// newPipeline plans the site's checks and seeds the health view with
// their initial states; backend nil means nothing is programmed (a
// VIP-only site). Nothing runs until run.
func newPipeline(site *config.Site, backend ipvs.Backend, o pipelineOptions) (*pipeline, error) {
	vss, err := virtualServers(site)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.System()
	}
	if o.Checks.Logger == nil {
		o.Checks.Logger = o.Log
	}
	if o.OnChange == nil {
		o.OnChange = func() {}
	}
	p := &pipeline{
		log: o.Log, clk: o.Clock, checks: healthcheck.NewScheduler(o.Checks), onChange: o.OnChange, kick: make(chan struct{}, 1), hadQuorum: map[string]bool{},
		health: ipvs.Health{}, wasUp: map[ipvs.ServerRef]bool{}, quorum: ipvs.QuorumState{},
	}
	if backend != nil {
		p.rec = ipvs.NewReconciler(backend, o.Log)
	}
	p.apply(site.Settings.ReconcileInterval.Duration, vss, planChecks(site))
	return p, nil
}

// programs reports whether the pipeline programs IPVS (false for a
// VIP-only site, whose checks still run).
func (p *pipeline) programs() bool { return p.rec != nil }

// run runs the checks, follows their verdicts and reconciles IPVS until
// ctx ends, then returns once all of that has stopped.
func (p *pipeline) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		// Run returns an error only when its event loop fails (epoll): the
		// checks have stopped, and health freezes where it was.
		if err := p.checks.Run(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("health checks stopped; real servers keep their last state", "error", err)
		}
	})
	wg.Go(func() { p.followChecks(ctx) })
	if p.rec != nil {
		wg.Go(func() { p.reconcileLoop(ctx) })
	}
	wg.Wait()
}

// setSite applies a reloaded site: its virtual servers, its checks and
// its reconcile interval (from the next pass). An invalid site changes
// nothing.
func (p *pipeline) setSite(site *config.Site) error {
	vss, err := virtualServers(site)
	if err != nil {
		return err
	}
	p.apply(site.Settings.ReconcileInterval.Duration, vss, planChecks(site))
	return nil
}

// apply hands the repair interval, the virtual servers and the checks
// to the pipeline. A check whose spec did not change keeps running with
// its state. A server whose check changed (a new interval, say) keeps its
// health: its new check starts in the state the old one had reached, so a
// reload never pulls a healthy server for rise x interval. New servers
// start in their check's initial state.
func (p *pipeline) apply(interval time.Duration, vss []ipvs.VirtualServer, cp checkPlan) {
	p.planMu.Lock()
	defer p.planMu.Unlock()
	p.mu.Lock()
	running := map[string]healthcheck.Spec{}
	plan := checkPlan{refs: map[string][]ipvs.ServerRef{}, always: cp.always, initUp: cp.initUp}
	for _, s := range cp.specs {
		refs := cp.refs[s.Key()]
		id := specIdentity(s)
		if old, ok := p.running[id]; ok {
			s = old
		} else {
			for _, r := range refs {
				if h, ok := p.health[r]; ok {
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
			if h, ok := p.health[r]; ok {
				health[r] = h
			} else {
				health[r] = ipvs.ServerHealth{Up: cp.initUp[r]}
			}
		}
	}
	for _, r := range cp.always {
		if h, ok := p.health[r]; ok {
			health[r] = h
		} else {
			health[r] = ipvs.ServerHealth{Up: true}
		}
	}
	p.interval, p.vss, p.plan, p.health, p.running = interval, vss, plan, health, running
	p.mu.Unlock()
	if err := p.checks.Set(plan.specs); err != nil {
		p.log.Error("health checks", "error", err)
	}
	p.kickReconcile()
}

// specIdentity is a check's key without its initial state, which the
// pipeline sets itself when a changed check takes over a server's health.
func specIdentity(s healthcheck.Spec) string {
	s.InitialUp = false
	return s.Key()
}

// followChecks applies check verdicts to the health view.
func (p *pipeline) followChecks(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-p.checks.Changes():
			p.verdict(c)
			if !c.Initial {
				p.log.Info("real server check", "target", c.Spec.Target.String(), "up", c.Up, "reason", c.Reason,
					"passes", c.Passes, "fails", c.Fails)
			}
			p.kickReconcile()
			p.onChange()
		}
	}
}

// verdict applies one check's change to the servers it decides for.
func (p *pipeline) verdict(c healthcheck.Change) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.plan.refs[c.Key] {
		h := p.health[r]
		if c.Up && !h.Up && p.wasUp[r] {
			h.Since = c.At // a recovery: slow start applies
		}
		if c.Up {
			p.wasUp[r] = true
		}
		h.Up = c.Up
		h.Weight, h.WeightSet = c.Weight, c.Weight != healthcheck.NoWeight
		p.health[r] = h
	}
}

func (p *pipeline) kickReconcile() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// reconcileLoop makes IPVS match the health view: at once on a change,
// an interval after the last pass to repair what someone changed by
// hand, and when slow start next moves a weight.
func (p *pipeline) reconcileLoop(ctx context.Context) {
	var repair, slow clock.Timer
	stop := func(t clock.Timer) {
		if t != nil {
			t.Stop()
		}
	}
	defer func() { stop(repair); stop(slow) }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
		next := p.reconcileOnce(ctx)
		p.mu.Lock()
		interval := p.interval
		p.mu.Unlock()
		stop(repair)
		repair = p.clk.AfterFunc(interval, p.kickReconcile)
		stop(slow)
		slow = nil
		if !next.IsZero() {
			slow = p.clk.AfterFunc(max(next.Sub(p.clk.Now()), 10*time.Millisecond), p.kickReconcile)
		}
	}
}

// reconcileOnce builds the desired table and applies it; it returns when
// slow start next needs a pass (zero: never).
func (p *pipeline) reconcileOnce(ctx context.Context) time.Time {
	p.mu.Lock()
	in := ipvs.BuildInput{VirtualServers: p.vss, Health: maps.Clone(p.health), Now: p.clk.Now(), Quorum: p.quorum}
	p.mu.Unlock()
	out, err := ipvs.Build(in)
	if err != nil {
		p.mu.Lock()
		p.stat.Errors++
		p.stat.LastError = err.Error()
		p.mu.Unlock()
		p.log.Error("build IPVS table", "error", err)
		return time.Time{}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	rep, err := p.rec.Apply(cctx, out.Table)
	cancel()
	p.mu.Lock()
	for _, name := range out.QuorumLost {
		switch {
		case slices.Contains(p.quorumLost, name):
		case !p.hadQuorum[name]:
			// Real servers start down until their checks rise: no alarm
			// for a virtual server that never had its quorum yet.
			p.log.Info("no quorum yet: waiting for the real servers' checks", "virtual_server", name)
		default:
			p.log.Warn("quorum lost: sorry server (if any) takes the traffic", "virtual_server", name)
		}
	}
	for _, vs := range p.vss {
		if !slices.Contains(out.QuorumLost, vs.Name) {
			p.hadQuorum[vs.Name] = true
		}
	}
	p.quorum, p.quorumLost = out.Quorum, out.QuorumLost
	r := &p.stat
	r.Passes++
	r.LastPass = p.clk.Now()
	r.Creates += uint64(rep.Creates)
	r.Updates += uint64(rep.Updates)
	r.Deletes += uint64(rep.Deletes)
	r.Errors += uint64(rep.Errors)
	changed := false
	if err != nil {
		r.LastError = err.Error()
	} else if dg := tableDigest(out.Table); dg != p.digest {
		p.digest, changed = dg, true
	}
	p.mu.Unlock()
	if err != nil {
		p.log.Error("IPVS reconcile", "report", rep.String(), "error", err)
	} else if rep.Writes() > 0 {
		p.log.Info("IPVS reconciled", "report", rep.String())
	}
	if changed {
		p.onChange()
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

// removeAll deletes the IPVS services the pipeline programmed (shutdown
// with ipvs_on_stop = "remove"). Call it after run returned, or a pass
// could put them back.
func (p *pipeline) removeAll(ctx context.Context) (ipvs.Report, error) {
	if p.rec == nil {
		return ipvs.Report{}, nil
	}
	return p.rec.RemoveAll(ctx)
}

// view is what the cluster channel publishes of the pipeline: each real
// server's health (healthKey -> up) and the digest of the table last
// programmed.
func (p *pipeline) view() (health map[string]bool, digest string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return healthView(p.health), p.digest
}

// healthView is the health view keyed for status and the cluster.
func healthView(h ipvs.Health) map[string]bool {
	out := make(map[string]bool, len(h))
	for ref, sh := range h {
		out[healthKey(ref)] = sh.Up
	}
	return out
}

// pipelineStatus is a snapshot of the pipeline for `vigil status`.
type pipelineStatus struct {
	Health ipvs.Health
	// CheckOf is the key of the check that decides for each real server;
	// a server missing from it has no check (always up).
	CheckOf map[ipvs.ServerRef]string
	// Checks is the scheduler's state, sorted by key.
	Checks     []healthcheck.Status
	Keys       map[string]ipvs.ServiceKey // virtual server name -> IPVS service
	QuorumLost []string
	Reconcile  ReconcileStatus
	Digest     string
}

// status returns a snapshot of the pipeline's state (it reads no table;
// see table).
func (p *pipeline) status() pipelineStatus {
	p.mu.Lock()
	s := pipelineStatus{
		Health: maps.Clone(p.health), CheckOf: map[ipvs.ServerRef]string{}, Keys: map[string]ipvs.ServiceKey{},
		QuorumLost: slices.Clone(p.quorumLost), Reconcile: p.stat, Digest: p.digest,
	}
	for k, refs := range p.plan.refs {
		for _, r := range refs {
			s.CheckOf[r] = k
		}
	}
	for _, vs := range p.vss {
		s.Keys[vs.Name] = vs.Key
	}
	p.mu.Unlock()
	s.Checks = p.checks.Snapshot()
	return s
}

// table reads the table as the backend has it (one dump), with counters;
// ok is false for a VIP-only site.
func (p *pipeline) table(ctx context.Context) (t ipvs.Table, ok bool, err error) {
	if p.rec == nil {
		return ipvs.Table{}, false, nil
	}
	t, err = p.rec.Snapshot(ctx, false)
	if err != nil {
		return ipvs.Table{}, false, fmt.Errorf("read IPVS table: %w", err)
	}
	return t, true, nil
}
