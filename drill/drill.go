package drill

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/director"
	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/vrrp"
)

// Director is the daemon a drill runs on: the master of the instance.
type Director interface {
	Status(ctx context.Context) (director.Status, error)
	// Handover makes the director resign instance with a priority-0
	// advert and stay backup (held) until Resume.
	Handover(ctx context.Context, instance string) error
	// Resume gives the director its configured priority back.
	Resume(ctx context.Context, instance string) error
}

// Defaults of the Options left zero.
const (
	DefaultProbeEvery   = 10 * time.Millisecond
	DefaultProbeTimeout = time.Second
	DefaultTimeout      = 30 * time.Second
)

const (
	// warmUp bounds the wait for every probe to answer before the drill.
	warmUp = 5 * time.Second
	// poll is how often the status is read while waiting for a master.
	poll = 20 * time.Millisecond
	// settle is how long the probes go on after a master is in place, so
	// the report shows the settled state, not the last failures only.
	settle = 500 * time.Millisecond
	// peerSkew is how far before the step-down a peer's clock may date
	// its becoming master and still count as the new master: the peer's
	// clock is not ours. An older "master since" is a stale one.
	peerSkew = time.Second
)

// Options describe one drill.
type Options struct {
	// Site is the site file the operator means: the preflight checks
	// that the daemon runs it and that every director in it is present.
	Site *config.Site
	// Instance is the instance to drill; "" is the first instance, in
	// status order, this director is master of.
	Instance string
	// Probes are the targets probed through the VIP during the drill:
	// http://..., https://... or tcp://HOST:PORT.
	Probes []string
	// Back hands mastership back after the drill; without it this
	// director stays backup (held) until Resume.
	Back bool
	// MaxOutage fails the drill if a probe saw a longer interruption
	// (0: no limit).
	MaxOutage    time.Duration
	ProbeEvery   time.Duration // probe interval (0: DefaultProbeEvery)
	ProbeTimeout time.Duration // timeout of one probe (0: DefaultProbeTimeout)
	// Timeout bounds the wait for the new master, and for this director
	// to be master again after the hand-back (0: DefaultTimeout).
	Timeout time.Duration
	// Force runs the drill even when the preflight finds problems.
	Force bool
	// CheckOnly runs the preflight only.
	CheckOnly bool
	// Clock is the time source (nil: the system clock).
	Clock clock.Clock
}

func (o Options) withDefaults() Options {
	if o.ProbeEvery == 0 {
		o.ProbeEvery = DefaultProbeEvery
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Clock == nil {
		o.Clock = clock.System()
	}
	return o
}

// Run drills a failover of one instance on d: preflight, handover,
// measurement, optionally hand-back. The report says what happened; the
// error, if any, is also the report's Failure.
func Run(ctx context.Context, d Director, o Options) (Report, error) {
	if o.Site == nil {
		return Report{Instance: o.Instance, Failure: "drill: no site file"}, errors.New("drill: no site file")
	}
	r := &run{d: d, o: o.withDefaults(), rep: Report{Instance: o.Instance}}
	err := r.run(ctx)
	slices.SortStableFunc(r.rep.Timeline, func(a, b Event) int { return cmp.Compare(a.AtMS, b.AtMS) })
	if err != nil {
		r.rep.Failure = err.Error()
		return r.rep, err
	}
	r.rep.OK = true
	return r.rep, nil
}

// run is one drill under way.
type run struct {
	d   Director
	o   Options
	rep Report
	t0  time.Time // the step-down request: the timeline's zero
}

func (r *run) run(ctx context.Context) error {
	st, inst, err := r.choose(ctx)
	if err != nil {
		return err
	}
	r.rep.Preflight = preflight(r.o.Site, st, inst)
	if n := len(r.rep.Preflight); n > 0 && !r.o.Force {
		return fmt.Errorf("preflight found %d problem(s); fix them or use --force", n)
	}
	if r.o.CheckOnly {
		return nil
	}
	probers, stop, err := r.startProbes(ctx)
	if err != nil {
		return err
	}
	defer stop()

	r.t0 = r.o.Clock.Now()
	if err := r.d.Handover(ctx, inst); err != nil {
		return fmt.Errorf("handover: %w", err)
	}
	r.event(r.t0, fmt.Sprintf("%s resigned %s with a priority-0 advert", st.node, inst))
	// This director is backup until it resumes, whatever happens next.
	r.rep.Held = true
	if err := r.awaitTakeover(ctx, inst, probers); err != nil {
		return err
	}
	cut, err := r.measure(ctx, probers)
	if err != nil {
		return err
	}
	if r.o.Back {
		if err := r.handBack(ctx, st.node, inst, probers, cut); err != nil {
			return err
		}
	}
	for _, p := range r.rep.Probes {
		if r.o.MaxOutage > 0 && p.OutageMS > ms(r.o.MaxOutage) {
			return fmt.Errorf("probe %s saw an interruption of %.0f ms (limit %v)", p.Target, p.OutageMS, r.o.MaxOutage)
		}
	}
	return nil
}

// status reads the director's status and parses its states.
func (r *run) status(ctx context.Context) (status, error) {
	raw, err := r.d.Status(ctx)
	if err != nil {
		return status{}, fmt.Errorf("read status: %w", err)
	}
	return parseStatus(raw)
}

// choose reads the status and picks the instance: the one named, or the
// first one this director is master of. This director must be its
// master.
func (r *run) choose(ctx context.Context) (status, string, error) {
	st, err := r.status(ctx)
	if err != nil {
		return status{}, "", err
	}
	r.rep.From = st.node
	var in *instance
	for i := range st.instances {
		x := &st.instances[i]
		if x.raw.Name == r.o.Instance || r.o.Instance == "" && x.state == vrrp.Master {
			in = x
			break
		}
	}
	switch {
	case in == nil && r.o.Instance != "":
		return status{}, "", fmt.Errorf("no instance %q on %s", r.o.Instance, st.node)
	case in == nil:
		return status{}, "", fmt.Errorf("%s is master of no instance: run the drill on the master", st.node)
	case in.state != vrrp.Master:
		return status{}, "", fmt.Errorf("%s is %s of %s, not master: run the drill on the master (%s)", st.node, in.raw.State, in.raw.Name, in.raw.MasterAddr)
	}
	r.rep.Instance = in.raw.Name
	return st, in.raw.Name, nil
}

// startProbes starts a prober per target and waits until each has
// answered: a probe that never answers before the drill has nothing to
// measure. stop ends the probers and waits for them.
func (r *run) startProbes(ctx context.Context) (probers []*Prober, stop func(), err error) {
	for _, t := range r.o.Probes {
		p, err := NewProber(t, r.o.ProbeEvery, r.o.ProbeTimeout, r.o.Clock)
		if err != nil {
			return nil, nil, err
		}
		probers = append(probers, p)
	}
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	for _, p := range probers {
		wg.Go(func() { p.Run(pctx) })
	}
	warm := r.o.Clock.Now()
	for _, p := range probers {
		for !p.OKSince(warm) {
			if r.o.Clock.Now().Sub(warm) > warmUp {
				stop()
				return nil, nil, fmt.Errorf("probe %s does not answer before the drill: nothing to measure", p.Target())
			}
			if err := sleep(ctx, r.o.Clock, poll); err != nil {
				stop()
				return nil, nil, fmt.Errorf("drill interrupted while probing %s: %w", p.Target(), err)
			}
		}
	}
	return probers, stop, nil
}

// awaitTakeover waits, up to Timeout after the step-down, until another
// director is master of inst and has sent its first GARP/NA and every
// probe has answered since. No new master at all is a failure, and the
// step-down is undone: otherwise the instance would have no master.
func (r *run) awaitTakeover(ctx context.Context, inst string, probers []*Prober) error {
	deadline := r.t0.Add(r.o.Timeout)
	var name string
	var detail peerInstance
	for r.o.Clock.Now().Before(deadline) {
		// A status that cannot be read now may be read at the next poll.
		if st, err := r.status(ctx); err == nil {
			for _, p := range st.peers {
				if d, ok := p.detail[inst]; ok && d.state == vrrp.Master && !d.since.Before(r.t0.Add(-peerSkew)) {
					name, detail = p.raw.Name, d
				}
			}
		}
		if name != "" && !detail.firstGARP.IsZero() && allOKSince(probers, r.t0.Add(time.Millisecond)) {
			break
		}
		if sleep(ctx, r.o.Clock, poll) != nil {
			break
		}
	}
	if name == "" {
		why := fmt.Sprintf("no other director became master of %s within %v", inst, r.o.Timeout)
		if ctx.Err() != nil {
			why = fmt.Sprintf("drill interrupted (%v) before another director became master of %s", ctx.Err(), inst)
		}
		// Even when ctx has ended: a held director must not stay held.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := r.d.Resume(rctx, inst); err != nil {
			return fmt.Errorf("%s, and the hand back failed: %w", why, err)
		}
		r.rep.Held = false
		return fmt.Errorf("%s (handed back)", why)
	}
	r.rep.To = name
	r.event(detail.since, name+" master")
	if !detail.vipsAdded.IsZero() {
		r.event(detail.vipsAdded, name+" added the VIPs")
	}
	if !detail.firstGARP.IsZero() {
		r.event(detail.firstGARP, name+" sent the first GARP/NA")
	}
	return nil
}

func allOKSince(probers []*Prober, t time.Time) bool {
	for _, p := range probers {
		if !p.OKSince(t) {
			return false
		}
	}
	return true
}

// measure lets the probes run on for a while, then reports on what they
// saw from the step-down until now (cut).
func (r *run) measure(ctx context.Context, probers []*Prober) (cut time.Time, err error) {
	if err := sleep(ctx, r.o.Clock, settle); err != nil {
		return time.Time{}, fmt.Errorf("drill interrupted after the takeover: %w", err)
	}
	cut = r.o.Clock.Now()
	for _, p := range probers {
		pr := summarize(p.Target(), p.Results(), r.t0, cut)
		r.rep.Probes = append(r.rep.Probes, pr)
		if pr.FirstOKMS >= 0 {
			r.rep.Timeline = append(r.rep.Timeline, Event{AtMS: pr.FirstOKMS, Event: "first answer after the step-down: " + p.Target()})
		}
	}
	return cut, nil
}

// handBack resumes this director's priority, waits for it to be master
// again and adds what the probes saw since cut to their reports.
func (r *run) handBack(ctx context.Context, node, inst string, probers []*Prober, cut time.Time) error {
	t1 := r.o.Clock.Now()
	if err := r.d.Resume(ctx, inst); err != nil {
		return fmt.Errorf("hand back: %w", err)
	}
	r.rep.Held = false
	r.event(t1, fmt.Sprintf("%s resumed its priority (hand back)", node))
	if err := r.awaitMaster(ctx, inst, t1.Add(r.o.Timeout)); errors.Is(err, errNotMaster) {
		return fmt.Errorf("%s did not become master again within %v", node, r.o.Timeout)
	} else if err != nil {
		return fmt.Errorf("%s did not become master again within %v: %w", node, r.o.Timeout, err)
	}
	again := r.o.Clock.Now()
	r.rep.Back = &Back{TookMS: ms(again.Sub(t1))}
	r.event(again, node+" master again")
	if err := sleep(ctx, r.o.Clock, settle); err != nil {
		return fmt.Errorf("drill interrupted after the hand back: %w", err)
	}
	end := r.o.Clock.Now()
	for i, p := range probers {
		r.rep.Probes[i].addBack(summarize(p.Target(), p.Results(), cut, end))
	}
	return nil
}

// addBack adds what a probe saw during the hand-back (b) to its report:
// the probes sent and failed, and the longer of the two interruptions.
func (p *ProbeReport) addBack(b ProbeReport) {
	p.Sent += b.Sent
	p.Failed += b.Failed
	p.OutageMS = max(p.OutageMS, b.OutageMS)
}

// errNotMaster is why awaitMaster gave up when the status could be read.
var errNotMaster = errors.New("still not master")

// awaitMaster polls the status until this director is master of inst,
// or until deadline. Its error is errNotMaster, or why the last status
// could not be read, or the end of ctx.
func (r *run) awaitMaster(ctx context.Context, inst string, deadline time.Time) error {
	last := errNotMaster
	for r.o.Clock.Now().Before(deadline) {
		st, err := r.status(ctx)
		last = err
		if err == nil {
			last = errNotMaster
			for _, in := range st.instances {
				if in.raw.Name == inst && in.state == vrrp.Master {
					return nil
				}
			}
		}
		if err := sleep(ctx, r.o.Clock, poll); err != nil {
			return err
		}
	}
	return last
}

// event adds a line to the timeline, at its time since the step-down.
func (r *run) event(at time.Time, what string) {
	r.rep.Timeline = append(r.rep.Timeline, Event{AtMS: ms(at.Sub(r.t0)), Event: what})
}
