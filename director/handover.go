package director

import (
	"context"
	"time"

	"github.com/vigil-lb/vigil/failover"
	"github.com/vigil-lb/vigil/vrrp"
)

// A planned handover among vigil directors is make-before-break: the
// outgoing master resigns (vrrp.Resign: a priority-0 advert, then
// Backup) but keeps its VIPs, and goes on serving with them (without
// announcing them again), until it hears the new master's advert. The new
// master claims and announces the VIPs before its first advert
// (BeforeMaster), so by then clients are pointed at it; the old master
// lets go a short grace later. What a
// client sees is bounded by ARP/NA propagation, not by the Skew_Time the
// new master waits before it takes over. Against a peer that is not a
// vigil director of the site (keepalived on the same VRID), the RFC's
// behaviour stays: the VIPs go with the priority-0 advert.

// linger is an instance's make-before-break state, guarded by claimMu.
type linger struct {
	on    bool
	ev    vrrp.Event    // the resignation, applied to the claimer when it ends
	timer *time.Timer   // ends it if no new master is heard
	done  chan struct{} // closed when it ends
}

// lingerMax is how long a resigned master keeps its VIPs when no new
// master is heard: a backup takes over within its Skew_Time of the
// priority-0 advert (less than an interval), then advertises at once;
// twice the interval and a margin for a busy machine cover that.
func lingerMax(advert time.Duration) time.Duration { return 2*advert + 250*time.Millisecond }

// successorGrace is how long the old master keeps the VIPs after it has
// heard the new master's first advert. The new master sent its first
// gratuitous ARP/NA before that advert (BeforeMaster announces
// synchronously), so clients are already moving; the grace is for
// packets already on their way here. It is short because two directors
// holding a VIP both answer ARP requests, and the old one's answer could
// win a client's cache just before it lets go.
func successorGrace(advert time.Duration) time.Duration {
	return min(advert/2, 10*time.Millisecond)
}

// successorExpected says whether another vigil director of the site can
// take this instance over now: it has a priority for the instance, the
// cluster channel sees it alive, and it reports the instance as backup.
func (d *Daemon) successorExpected(in *instance) bool {
	if d.ch == nil {
		return false
	}
	for _, p := range d.ch.Peers() {
		if !p.Alive || !p.StateKnown {
			continue
		}
		if _, ok := in.cfg.Priorities[p.Name]; !ok && len(in.cfg.Priorities) > 0 {
			continue
		}
		if st, ok := p.State.Instances[in.cfg.Name]; ok && st.State == stateName(vrrp.Backup) {
			return true
		}
	}
	return false
}

// startLinger keeps the VIPs of a resigned master (make-before-break);
// called by the worker for a Resigned transition when a vigil successor
// is expected.
func (d *Daemon) startLinger(in *instance, ev vrrp.Event) {
	in.claimMu.Lock()
	defer in.claimMu.Unlock()
	in.linger = linger{on: true, ev: ev, done: make(chan struct{})}
	in.claim.Quiet() // no announcement may follow the successor's
	in.lingering.Store(true)
	in.applied.Add(1) // the election's transition is accounted for; the claimer follows later
	max := lingerMax(in.cfg.AdvertInterval.Duration)
	in.linger.timer = time.AfterFunc(max, func() { d.endLinger(in, 0, "no new master heard within "+max.String()) })
	d.log.Info("resigned; keeping the VIPs until the new master is heard", "instance", in.cfg.Name)
}

// endLinger releases the VIPs of a resigned master after grace (the new
// master was heard) or now (none was).
func (d *Daemon) endLinger(in *instance, grace time.Duration, why string) {
	if grace > 0 {
		time.Sleep(grace)
	}
	in.claimMu.Lock()
	defer in.claimMu.Unlock()
	if !in.linger.on {
		return
	}
	ev := in.linger.ev
	d.stopLingerLocked(in)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := in.claim.Transition(ctx, failover.Transition{
		Instance: in.cfg.Name, From: failoverState(ev.From), To: failoverState(ev.To),
		Priority: int(ev.Priority), Reason: ev.Reason + "; " + why,
	})
	if err != nil {
		d.log.Error("apply transition", "instance", in.cfg.Name, "error", err)
	} else {
		d.log.Info("handover complete: VIPs released", "instance", in.cfg.Name, "after", why)
	}
	d.syncFollow(ctx, in.cfg.Name, false)
	d.publish()
}

// stopLingerLocked ends a linger without applying it (a later transition
// supersedes it); called with claimMu held.
func (d *Daemon) stopLingerLocked(in *instance) bool {
	if !in.linger.on {
		return false
	}
	in.linger.timer.Stop()
	close(in.linger.done)
	in.linger.on = false
	in.lingering.Store(false)
	return true
}

// Handover makes this director give up mastership of an instance (all
// instances when name is ""), as a planned failover: it resigns (a
// priority-0 advert; no fault, so no notify_fault) and stays out of the
// way (priority 1) until Resume. Among vigil directors the VIPs stay
// here until the new master has them (make-before-break).
func (d *Daemon) Handover(name string) error {
	ins, err := d.pick(name)
	if err != nil {
		return err
	}
	d.resyncBeforeHandover(ins)
	for _, in := range ins {
		d.mu.Lock()
		in.held = true
		d.mu.Unlock()
		in.vrrp.SetPriority(1)
		if in.vrrp.Resign("handover") {
			d.log.Info("handover: resigned mastership", "instance", in.cfg.Name)
		} else {
			d.log.Info("handover: not master; priority lowered to 1", "instance", in.cfg.Name)
		}
	}
	return nil
}

// Resume undoes Handover: the configured priority returns, and with
// preemption the director takes mastership back, once it holds the
// connections the master has (see resync.go).
func (d *Daemon) Resume(name string) error {
	ins, err := d.pick(name)
	if err != nil {
		return err
	}
	for _, in := range ins {
		d.mu.Lock()
		in.held = false
		p := in.basePrio
		d.mu.Unlock()
		d.holdForResync(context.Background(), in, "resume")
		in.vrrp.SetPriority(p)
		d.log.Info("handover: resumed", "instance", in.cfg.Name, "priority", p)
	}
	return nil
}

// handOffBeforeStop makes the graceful stop of a master a planned
// handover: the connection table goes to the backups, the master
// resigns, and it waits (bounded) until the new master is heard before
// the stop goes on and releases the VIPs.
func (d *Daemon) handOffBeforeStop(ctx context.Context, in *instance) {
	if in.vrrp.State() != vrrp.Master || !d.successorExpected(in) {
		return
	}
	d.resyncBeforeHandover([]*instance{in})
	// Withdraw, not Resign: a stopping director must not take the VIPs
	// back when its successor is slower than its own down timer.
	if !in.vrrp.Withdraw("stopping") {
		return
	}
	wait := time.NewTimer(lingerMax(in.cfg.AdvertInterval.Duration) + time.Second)
	defer wait.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for in.claim.Status().Master {
		select {
		case <-tick.C:
		case <-wait.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
