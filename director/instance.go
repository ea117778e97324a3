package director

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/failover"
	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/vrrp"
)

// instance is one running VRRP instance and what acts on its transitions.
type instance struct {
	cfg      config.Instance
	vrrp     *vrrp.Instance
	tr       vrrp.Transport
	claim    *failover.Claimer
	events   chan vrrp.Event
	cancel   context.CancelFunc // stops trackers and the event worker
	runDone  chan struct{}      // closed when vrrp's Run returned
	workDone chan struct{}      // closed when the event worker drained
	basePrio uint8
	held     bool // a handover holds it out of the election
	last     vrrp.Event

	// claimMu orders every change of the claimer's master/backup state:
	// the election's BeforeMaster, the events, and the guard's repairs.
	claimMu sync.Mutex
	applied atomic.Uint64 // Transition events applied to the claimer
	repairs atomic.Uint64 // times the guard found the claimer out of step and fixed it
	// linger: a resigned master keeping its VIPs until the new master is
	// heard (handover.go); lingering mirrors linger.on for the guard.
	linger    linger
	lingering atomic.Bool
	// beforeStop runs first in a graceful stop: the make-before-break
	// handover of a master (handover.go).
	beforeStop func(ctx context.Context)
}

// startInstances builds every instance (transport, claimer, election),
// forms the sync groups, removes stale VIPs, then starts the elections.
func (d *Daemon) startInstances(ctx context.Context, cfgs []config.Instance) error {
	var built []*instance
	for i := range cfgs {
		in, err := d.buildInstance(ctx, &cfgs[i])
		if err != nil {
			for _, b := range built {
				b.close()
			}
			return err
		}
		built = append(built, in)
	}
	// Sync groups must exist before their members run.
	groups := map[string][]*vrrp.Instance{}
	for _, in := range built {
		if g := in.cfg.SyncGroup; g != "" {
			groups[g] = append(groups[g], in.vrrp)
		}
	}
	for name, members := range groups {
		vrrp.NewSyncGroup(name, members...)
	}
	d.mu.Lock()
	for _, in := range built {
		d.instances[in.cfg.Name] = in
	}
	d.mu.Unlock()
	for _, in := range built {
		d.runInstance(ctx, in)
	}
	return nil
}

// buildInstance creates an instance without starting its election.
func (d *Daemon) buildInstance(ctx context.Context, cfg *config.Instance) (*instance, error) {
	me := d.me
	log := d.log.With("instance", cfg.Name)
	var tr vrrp.Transport
	switch cfg.Transport {
	case "gossip":
		if d.demux == nil {
			return nil, fmt.Errorf("instance %s: transport gossip needs the cluster channel (a site with two or more directors)", cfg.Name)
		}
		t, err := d.demux.Transport(uint8(cfg.VRID), me.Address)
		if err != nil {
			return nil, fmt.Errorf("instance %s: %w", cfg.Name, err)
		}
		tr = t
	default:
		rc := vrrp.RawConfig{Interface: cfg.InterfaceOf(me), IPv6: cfg.IPv6(), Netns: netns.None(), Logger: log}
		if !cfg.IPv6() {
			rc.Source = me.Address
		}
		if cfg.Unicast {
			rc.Peers = d.site.UnicastPeers(cfg, me)
		}
		if cfg.AdvertInterval.Duration < time.Second {
			// Only sub-second adverts are paced; a 1 s instance needs no
			// real-time thread (nor a build with the pacer).
			rc.PacerRTPriority = d.site.Settings.PacerRTPriority
		}
		t, err := vrrp.NewRawTransport(rc)
		if err != nil {
			return nil, fmt.Errorf("instance %s: VRRP socket on %s: %w", cfg.Name, rc.Interface, err)
		}
		tr = t
	}
	cc := claimerConfig(cfg, me)
	cc.Logger = d.log // the claimer and the election add the instance themselves
	claim, err := failover.NewClaimer(cc)
	if err != nil {
		tr.Close()
		return nil, err
	}
	if removed, err := claim.RemoveStale(ctx); err != nil {
		log.Warn("remove stale VIPs", "error", err)
	} else if len(removed) > 0 {
		log.Warn("removed stale VIPs left by an earlier run", "vips", fmt.Sprint(removed))
	}
	in := &instance{cfg: *cfg, tr: tr, claim: claim, events: make(chan vrrp.Event, 256),
		runDone: make(chan struct{}), workDone: make(chan struct{})}
	vc := vrrpConfig(cfg, me)
	vc.Logger = d.log
	// Claim and announce before the first advert as master: that advert
	// makes the old master drop the VIPs at once, and clients must already
	// be pointed here (the Master event that follows finds them claimed).
	vc.BeforeMaster = func() {
		bctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		in.claimMu.Lock()
		defer in.claimMu.Unlock()
		if err := claim.BecomeMaster(bctx); err != nil {
			log.Error("claim VIPs before the first advert", "error", err)
		}
	}
	// Stop announcing in the step-down itself: the worker releases the
	// VIPs a moment later, and a scheduled GARP of ours in between would
	// pull clients back from the new master.
	vc.LeftMaster = claim.Quiet
	in.basePrio = vc.Priority
	in.beforeStop = func(ctx context.Context) { d.handOffBeforeStop(ctx, in) }
	vi, err := vrrp.NewInstance(vc, tr, clock.System(), func(ev vrrp.Event) { in.events <- ev })
	if err != nil {
		claim.Close(ctx)
		tr.Close()
		return nil, err
	}
	in.vrrp = vi
	return in, nil
}

// runInstance starts the election, its trackers and the worker that acts
// on its events.
func (d *Daemon) runInstance(ctx context.Context, in *instance) {
	ictx, cancel := context.WithCancel(ctx)
	in.cancel = cancel
	log := d.log.With("instance", in.cfg.Name)
	go d.work(ictx, in)
	// A director that (re)starts as backup takes no instance back before
	// it holds the master's connections (resync.go).
	d.holdForResync(ictx, in, "start")
	d.elections.Add(1)
	go func() {
		defer close(in.runDone)
		defer d.elections.Add(-1)
		if err := in.vrrp.Run(ictx); err != nil {
			log.Error("election stopped", "error", err)
		}
	}()
	go d.guard(ictx, in, log)
	if len(in.cfg.TrackInterfaces) > 0 {
		var tracks []vrrp.InterfaceTrack
		for _, t := range in.cfg.TrackInterfaces {
			tracks = append(tracks, vrrp.InterfaceTrack{Interface: t.Name, Weight: t.Weight})
		}
		go func() {
			if err := vrrp.WatchInterfaces(ictx, netns.None(), tracks, log, in.vrrp); err != nil && ictx.Err() == nil {
				log.Error("interface tracking stopped", "error", err)
			}
		}()
	}
	for i, t := range in.cfg.TrackScripts {
		st := vrrp.ScriptTrack{Name: fmt.Sprintf("%s#%d", in.cfg.Name, i+1), Command: argv(t.Command),
			Interval: t.Interval.Duration, Timeout: t.Timeout.Duration, Rise: t.Rise, Fall: t.Fall, Weight: t.Weight}
		go func() {
			if err := vrrp.RunScript(ictx, st, log, in.vrrp); err != nil && ictx.Err() == nil {
				log.Error("track script stopped", "error", err)
			}
		}()
	}
}

// work applies an instance's events in order: VIPs, announcements, notify
// commands, the sync daemon's role, the cluster's view. It never blocks
// the election (events queue in in.events).
func (d *Daemon) work(ctx context.Context, in *instance) {
	defer close(in.workDone)
	log := d.log.With("instance", in.cfg.Name)
	for {
		var ev vrrp.Event
		select {
		case ev = <-in.events:
		case <-in.runDone:
			// Drain what the election said before it stopped.
			for {
				select {
				case ev = <-in.events:
					d.apply(in, ev, log)
					continue
				default:
				}
				return
			}
		}
		d.apply(in, ev, log)
	}
}

func (d *Daemon) apply(in *instance, ev vrrp.Event, log interface {
	Info(string, ...any)
	Warn(string, ...any)
	Error(string, ...any)
}) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch ev.Kind {
	case vrrp.Transition:
		d.mu.Lock()
		in.last = ev
		d.mu.Unlock()
		if ev.Resigned && ev.From == vrrp.Master && d.successorExpected(in) {
			d.startLinger(in, ev)
			d.publish()
			return
		}
		in.claimMu.Lock()
		from := ev.From
		if d.stopLingerLocked(in) {
			from = vrrp.Master // the claimer still holds the VIPs of the resigned master
		}
		err := in.claim.Transition(ctx, failover.Transition{
			Instance: in.cfg.Name, From: failoverState(from), To: failoverState(ev.To),
			Priority: int(ev.Priority), Reason: ev.Reason,
		})
		in.applied.Add(1)
		in.claimMu.Unlock()
		if err != nil {
			log.Error("apply transition", "error", err)
		}
		d.syncFollow(ctx, in.cfg.Name, ev.To == vrrp.Master)
		d.publish()
	case vrrp.Successor:
		go d.endLinger(in, successorGrace(in.cfg.AdvertInterval.Duration), "new master "+ev.Peer.String()+" heard")
	case vrrp.Reannounce:
		if in.claim.Reannounce() {
			log.Info("re-announcing VIPs: a lower-priority master was heard", "other", ev.Peer.String())
		}
	}
}

// guard checks, all the time, the invariant the VIPs rest on: the
// claimer holds the VIPs exactly while the election is master. The
// events keep the two in step; the guard repairs whatever slips between
// them (a lost or reordered event, a claim that failed), whatever the
// order of events. A mismatch while transitions are still being applied
// is normal and left to the worker; one seen twice with nothing in
// flight, or one that outlives a stuck worker, is repaired.
func (d *Daemon) guard(ctx context.Context, in *instance, log *slog.Logger) {
	tick := time.NewTicker(guardInterval(in.cfg.AdvertInterval.Duration))
	defer tick.Stop()
	var g guardState
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.runDone:
			return
		case <-tick.C:
		}
		st := in.vrrp.Status()
		claimerMaster := in.claim.Status().Master
		if in.lingering.Load() {
			claimerMaster = false // a resigned master keeps its VIPs on purpose (handover.go)
		}
		if g.observe(st.State == vrrp.Master, claimerMaster, in.applied.Load() == st.Counters.Transitions) {
			d.repair(ctx, in, log)
		}
	}
}

// guardInterval is how often the guard checks: every five advert
// intervals, 250 ms to 1 s. A few checks a second at most: the ordered
// steps and the VIP watcher's eviction do the real work; this is the
// safety net, and an idle director should not wake for it at every advert.
func guardInterval(advert time.Duration) time.Duration {
	return min(max(5*advert, 250*time.Millisecond), time.Second)
}

// guardState is the guard's memory between checks.
type guardState struct {
	seen int // consecutive checks that found the claimer out of step
}

// guardPatience is how many checks a mismatch may last while the worker
// still has transitions to apply (a stuck or lost event) before the guard
// repairs it anyway.
const guardPatience = 10

// observe takes one check and says whether to repair now: a mismatch
// seen on two checks in a row with no transition in flight, or one that
// lasted guardPatience checks whatever is in flight.
func (g *guardState) observe(electionMaster, claimerMaster, idle bool) bool {
	if electionMaster == claimerMaster {
		g.seen = 0
		return false
	}
	g.seen++
	if (idle && g.seen >= 2) || g.seen >= guardPatience {
		g.seen = 0
		return true
	}
	return false
}

// repair makes the claimer follow the election's state now.
func (d *Daemon) repair(ctx context.Context, in *instance, log *slog.Logger) {
	in.claimMu.Lock()
	defer in.claimMu.Unlock()
	if in.linger.on {
		return // a resigned master keeps its VIPs until the new master is heard
	}
	state := in.vrrp.State()
	master := state == vrrp.Master
	if master == in.claim.Status().Master {
		return // the worker caught up meanwhile
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	in.repairs.Add(1)
	var err error
	if master {
		log.Error("invariant broken: master without its VIPs; claiming them", "state", state.String())
		err = in.claim.BecomeMaster(rctx)
	} else {
		log.Error("invariant broken: VIPs held while not master; releasing them", "state", state.String())
		err = in.claim.Release(rctx)
	}
	if err != nil {
		log.Error("repair VIPs", "error", err)
	}
	d.publish()
}

// stop ends an instance: graceful sends a priority-0 advert if master.
// The VIPs are released afterwards either way.
func (in *instance) stop(ctx context.Context, graceful bool) {
	if graceful && in.beforeStop != nil {
		in.beforeStop(ctx)
	}
	if graceful {
		_ = in.vrrp.Stop(ctx)
	}
	if in.cancel != nil {
		in.cancel()
	}
	select {
	case <-in.runDone:
	case <-ctx.Done():
	}
	select {
	case <-in.workDone:
	case <-ctx.Done():
	}
	_ = in.claim.Transition(ctx, failover.Transition{Instance: in.cfg.Name, To: failover.StateStop, Reason: "stopped"})
	in.close()
}

func (in *instance) close() {
	// Long enough for the final notify command: a superseded one gets
	// SupersededGrace, then the last one its whole timeout.
	timeout := in.cfg.NotifyTimeout.Duration
	if timeout == 0 {
		timeout = failover.DefaultNotifyTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+failover.SupersededGrace+time.Second)
	defer cancel()
	_ = in.claim.Close(ctx)
	_ = in.tr.Close()
}

func (d *Daemon) pick(name string) ([]*instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if name != "" {
		in, ok := d.instances[name]
		if !ok {
			return nil, fmt.Errorf("no instance %q on this director", name)
		}
		return []*instance{in}, nil
	}
	var out []*instance
	for _, in := range d.instances {
		out = append(out, in)
	}
	return out, nil
}
