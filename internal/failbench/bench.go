package failbench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Failure kinds.
const (
	Crash = "crash" // bridge port cut and daemon SIGKILLed at one instant
	Stop  = "stop"  // SIGTERM: the daemon sends priority 0 and leaves
)

// Run is one failover and the recovery after it.
type Run struct {
	// Outage is the time from the failure (or request) to the first
	// answer from the new master. In a planned handover a vigil master
	// goes on answering meanwhile: then it is no outage, Gap is the figure.
	Outage     time.Duration
	LastAdvert time.Duration // old master's last advert to that answer
	Takeover   time.Duration // old master's last advert to the new master's first advert
	Announce   time.Duration // old master's last advert to the new master's first ARP for the VIP
	Failed     int           // probes that failed during the outage
	// Recovery: the old master restarted and preempted.
	PreemptFailed int            // probes that failed from its restart until stable
	PreemptErrors map[string]int `json:",omitempty"` // those failures by error
	PreemptTime   time.Duration  // restart to its first answer
	VIPLeft       bool           // stop, handover: the old master still held the VIP after the handover
	// A planned handover (Stop, Handover), from the request until the new
	// master is settled: what the client saw.
	Gap          time.Duration  `json:",omitempty"` // largest time between two consecutive answers, whoever answered
	GapQuiet     time.Duration  `json:",omitempty"` // the longest time in that gap in which the client sent no probe (it did not run)
	Switch       time.Duration  `json:",omitempty"` // the old master's last answer before the new master's first, to that one
	IdleGap      time.Duration  `json:",omitempty"` // the largest gap over as long a time just before the request: the lab's own noise
	WindowFailed int            `json:",omitempty"` // probes that failed
	WindowErrors map[string]int `json:",omitempty"` // those failures by error
	Claimed      time.Duration  `json:",omitempty"` // request to the VIP's addition on the new master (0: not seen)
	Released     time.Duration  `json:",omitempty"` // request to its removal from the old master (0: not seen)
	ReadyWait    time.Duration  `json:",omitempty"` // how long the old master took to know its successor (Readier)
	Err          string         `json:",omitempty"`
}

// Case is N runs of one implementation, advert interval and failure kind.
type Case struct {
	Impl   string
	Advert time.Duration
	Kind   string
	RFC    time.Duration // crash: 3 x advert + skew; stop, handover: skew
	Runs   []Run
	Err    string `json:",omitempty"`
}

// Good returns the runs without error.
func (c Case) Good() []Run {
	var out []Run
	for _, r := range c.Runs {
		if r.Err == "" {
			out = append(out, r)
		}
	}
	return out
}

// caseTiming is the polling and waiting schedule of a case.
type caseTiming struct {
	advert time.Duration
	hold   time.Duration // how long a master must look settled
}

func timingFor(advert time.Duration) caseTiming {
	hold := 2*advert + 200*time.Millisecond
	if hold < 400*time.Millisecond {
		hold = 400 * time.Millisecond
	}
	return caseTiming{advert: advert, hold: hold}
}

// waitMaster waits until, over the last hold, every probe was answered by
// name and only name's address sent adverts, and name holds the VIP.
func (r *rig) waitMaster(ctx context.Context, name string, hold, timeout time.Duration) (time.Time, error) {
	addr := r.addrOf(name)
	deadline := time.Now().Add(timeout)
	since := time.Now()
	for {
		now := time.Now()
		from := now.Add(-hold).UnixNano()
		ok := now.Sub(since) >= hold
		if ok {
			r.ev.view(func(probes, adverts []Event) {
				n := 0
				for i := len(probes) - 1; i >= 0 && probes[i].End >= from; i-- {
					if !probes[i].OK || probes[i].From != name {
						ok = false
						return
					}
					n++
				}
				if n < 5 {
					ok = false
					return
				}
				mine := 0
				for i := len(adverts) - 1; i >= 0 && adverts[i].End >= from; i-- {
					if adverts[i].From != addr {
						ok = false
						return
					}
					mine++
				}
				if mine == 0 {
					ok = false
				}
			})
		}
		if ok && r.hasVIP(name) {
			return now, nil
		}
		if now.After(deadline) {
			return now, fmt.Errorf("%s did not settle as master within %v (%s)", name, timeout, r.describe(name, hold))
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return now, err
		}
	}
}

// describe says what the last window looked like, for errors.
func (r *rig) describe(name string, window time.Duration) string {
	from := time.Now().Add(-window).UnixNano()
	answered := map[string]int{}
	adverts := map[string]int{}
	r.ev.view(func(ps, as []Event) {
		for i := len(ps) - 1; i >= 0 && ps[i].End >= from; i-- {
			answered[ps[i].From]++
		}
		for i := len(as) - 1; i >= 0 && as[i].End >= from; i-- {
			adverts[fmt.Sprintf("%s/prio%d", as[i].From, as[i].Prio)]++
		}
	})
	p := r.daemon[name]
	state := "not started"
	if p != nil {
		state = "running"
		if p.exited() {
			state = fmt.Sprintf("exited: %v; log: %s", p.err, r.daemonLogTail(name))
		}
	}
	return fmt.Sprintf("probes %v, adverts %v, VIP on %s: %v, daemon %s", answered, adverts, name, r.hasVIP(name), state)
}

// firstAnswer waits for the earliest probe answered by name that ended
// after t0, until deadline.
func (r *rig) firstAnswer(ctx context.Context, name string, t0 int64, deadline time.Time) (Event, error) {
	var best Event
	found := time.Time{}
	for {
		r.ev.view(func(probes, _ []Event) {
			for i := len(probes) - 1; i >= 0 && probes[i].Start > t0-int64(time.Second); i-- {
				p := probes[i]
				if p.OK && p.From == name && p.End > t0 && (best.End == 0 || p.End < best.End) {
					best = p
				}
			}
		})
		if best.End != 0 && found.IsZero() {
			found = time.Now()
		}
		// Probes are reported as they end; a short grace catches one
		// that ended earlier but was written a little later.
		if !found.IsZero() && time.Since(found) > 30*time.Millisecond {
			return best, nil
		}
		if time.Now().After(deadline) {
			return best, fmt.Errorf("no answer from %s within %v of the failure", name, deadline.Sub(time.Unix(0, t0)))
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return best, err
		}
	}
}

// trace writes the events around one failover to the rig's directory, in
// milliseconds from the failure, so a figure can be checked by eye.
func (r *rig) trace(t0, last, answer int64) {
	from, to := last-int64(2*r.site.Advert)-int64(50*time.Millisecond), answer+int64(50*time.Millisecond)
	head := fmt.Sprintf("# t=0 is the failure; last advert of the old master at %s, first answer from the new master at %s",
		relMS(t0, last), relMS(t0, answer))
	r.writeTrace(fmt.Sprintf("run-%02d.trace", r.traces), head, t0, from, to, false)
}

func relMS(t0, t int64) string { return fmt.Sprintf("%9.3f", float64(t-t0)/1e6) }

// writeTrace writes the events in [from, to] relative to t0; with
// quiet, probes answered like the one before them are left out.
func (r *rig) writeTrace(name, head string, t0, from, to int64, quiet bool) {
	type line struct {
		t int64
		s string
	}
	var lines []line
	rel := func(t int64) string { return relMS(t0, t) }
	r.ev.view(func(probes, adverts []Event) {
		prev := ""
		for _, p := range probes {
			if (p.End >= from && p.End <= to) || (p.Start >= from && p.Start <= to) {
				if quiet && p.OK && p.From == prev {
					continue
				}
				prev = p.From
				if !p.OK {
					prev = ""
				}
				lines = append(lines, line{p.End, fmt.Sprintf("%s probe   started %s ok=%v %s", rel(p.End), rel(p.Start), p.OK, p.From)})
			}
		}
		for _, a := range adverts {
			if a.End >= from && a.End <= to {
				lines = append(lines, line{a.End, fmt.Sprintf("%s advert  from %s prio %d", rel(a.End), a.From, a.Prio)})
			}
		}
	})
	r.ev.arpView(func(arps []Event) {
		for _, a := range arps {
			if a.End >= from && a.End <= to {
				lines = append(lines, line{a.End, fmt.Sprintf("%s arp     op %d %s is-at %s (target %s)", rel(a.End), a.Op, a.From, a.MAC, a.To)})
			}
		}
	})
	r.ev.vipView(func(vips []Event) {
		for _, v := range vips {
			if v.End >= from && v.End <= to {
				what := "removed from"
				if v.OK {
					what = "added on"
				}
				lines = append(lines, line{v.End, fmt.Sprintf("%s vip     %s %s", rel(v.End), what, v.From)})
			}
		}
	})
	slices.SortStableFunc(lines, func(a, b line) int { return cmp.Compare(a.t, b.t) })
	var b strings.Builder
	b.WriteString(head + "\n")
	for name, h := range r.hosts {
		fmt.Fprintf(&b, "# %s is %s\n", name, h.MAC)
	}
	for _, l := range lines {
		b.WriteString(l.s + "\n")
	}
	_ = os.WriteFile(filepath.Join(r.dir, name), []byte(b.String()), 0o644)
}

// runOnce fails vs1 (the master), measures, and brings it back.
func (r *rig) runOnce(ctx context.Context, kind string, tm caseTiming) Run {
	var run Run
	r.traces++ // names this run's trace files
	fail := func(err error) Run { run.Err = err.Error(); return run }
	old, nw := "vs1", "vs2"
	oldAddr, newAddr := r.addrOf(old), r.addrOf(nw)
	d := r.daemon[old]
	if d == nil || d.exited() {
		return fail(errors.New("master daemon is not running"))
	}
	pids := d.tree()
	limit := MasterDown(tm.advert, 100, r.site.Version) + 10*time.Second

	if rd, ok := r.impl.(Readier); ok && Planned(kind) {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, limit)
		err := rd.SuccessorReady(rctx, r.dirs[old])
		cancel()
		if err != nil {
			return fail(fmt.Errorf("before the handover: %w", err))
		}
		run.ReadyWait = time.Since(start)
	}
	if Planned(kind) {
		if err := r.waitServed(ctx, old, limit); err != nil {
			return fail(fmt.Errorf("before the handover: %w", err))
		}
	}

	var t0 time.Time
	switch kind {
	case Crash:
		t0 = time.Now()
		if err := r.ports[old].cut(); err != nil {
			return fail(fmt.Errorf("cut %s: %w", old, err))
		}
		killAll(pids)
	case Stop:
		t0 = time.Now()
		if err := d.signal(syscall.SIGTERM); err != nil {
			return fail(fmt.Errorf("SIGTERM %s: %w", old, err))
		}
	case Handover:
		h, ok := r.impl.(Handoverer)
		if !ok {
			return fail(fmt.Errorf("%s: %w", r.impl.Name(), errNoHandover))
		}
		t0 = time.Now()
		if err := h.Handover(ctx, r.dirs[old]); err != nil {
			return fail(fmt.Errorf("handover on %s: %w", old, err))
		}
	default:
		return fail(fmt.Errorf("unknown failure kind %q", kind))
	}
	t0n := t0.UnixNano()
	ans, err := r.firstAnswer(ctx, nw, t0n, t0.Add(limit))
	if err != nil {
		return fail(fmt.Errorf("%w (%s)", err, r.describe(nw, 2*time.Second)))
	}
	run.Outage = time.Duration(ans.End - t0n)
	var last, firstNew int64
	r.ev.view(func(probes, adverts []Event) {
		for _, a := range adverts {
			if a.From == oldAddr && a.End <= ans.End && a.End > last {
				last = a.End
			}
			if a.From == newAddr && a.End > t0n && (firstNew == 0 || a.End < firstNew) {
				firstNew = a.End
			}
		}
		for _, p := range probes {
			if p.Start >= t0n && p.End <= ans.End && !p.OK {
				run.Failed++
			}
		}
	})
	if last == 0 || last < t0n-int64(10*tm.advert+time.Second) {
		return fail(fmt.Errorf("no advert from %s seen before the failure", old))
	}
	run.LastAdvert = time.Duration(ans.End - last)
	if firstNew != 0 {
		run.Takeover = time.Duration(firstNew - last)
	}
	newMAC := r.hosts[nw].MAC.String()
	r.ev.arpView(func(arps []Event) {
		for _, a := range arps {
			if a.From == vipIP && a.MAC == newMAC && a.End > t0n && a.End <= ans.End+int64(time.Second) {
				run.Announce = time.Duration(a.End - last)
				return
			}
		}
	})

	// Written after the recovery, when the probes in flight at the failure
	// have ended too.
	var win window
	var settled time.Time
	if Planned(kind) {
		defer func() { r.plannedTrace(kind, t0n, last, ans.End, settled.UnixNano(), run, win) }()
	} else {
		defer r.trace(t0n, last, ans.End)
	}

	// Recovery: the old master comes back as after a reboot and preempts.
	switch kind {
	case Crash:
		_ = d.waitExit(2 * time.Second)
		if err := r.dropVIP(old); err != nil {
			return fail(err)
		}
		if err := r.flushNeighbours(old); err != nil {
			return fail(err)
		}
		if err := r.ports[old].heal(); err != nil {
			return fail(fmt.Errorf("heal %s: %w", old, err))
		}
	case Stop:
		if err := d.waitExit(10 * time.Second); err != nil {
			return fail(err)
		}
		run.VIPLeft = r.hasVIP(old)
		if err := r.dropVIP(old); err != nil {
			return fail(err)
		}
	}
	// The new master must be settled before the old one comes back.
	settled, err = r.waitMaster(ctx, nw, tm.hold, limit)
	if err != nil {
		return fail(fmt.Errorf("after failover: %w", err))
	}
	if kind == Handover {
		// The old master lives on as a backup: it must have let go.
		run.VIPLeft = r.waitVIPGone(ctx, old, 2*tm.advert+time.Second)
	}
	if Planned(kind) {
		// Measured once every probe started in the window has ended.
		if err := sleep(ctx, r.cfg.Timeout+20*time.Millisecond); err != nil {
			return fail(err)
		}
		r.measurePlanned(&run, &win, old, nw, t0n, ans.End, settled.UnixNano())
	}
	tRec := time.Now()
	if kind == Handover {
		if err := r.impl.(Handoverer).Resume(ctx, r.dirs[old]); err != nil {
			return fail(fmt.Errorf("resume on %s: %w", old, err))
		}
	} else if err := r.startDaemon(ctx, old); err != nil {
		return fail(err)
	}
	stable, err := r.waitMaster(ctx, old, tm.hold, MasterDown(tm.advert, 150, r.site.Version)+20*time.Second)
	if err != nil {
		return fail(fmt.Errorf("recovery: %w", err))
	}
	tr, st := tRec.UnixNano(), stable.UnixNano()
	r.ev.view(func(probes, _ []Event) {
		first := int64(0)
		for _, p := range probes {
			if p.Start < tr || p.Start > st {
				continue
			}
			if !p.OK {
				run.PreemptFailed++
				if run.PreemptErrors == nil {
					run.PreemptErrors = map[string]int{}
				}
				run.PreemptErrors[p.From]++
			} else if p.From == old && (first == 0 || p.End < first) {
				first = p.End
			}
		}
		if first != 0 {
			run.PreemptTime = time.Duration(first - tr)
		}
	})
	r.writeTrace(fmt.Sprintf("run-%02d-preempt.trace", r.traces),
		"# t=0 is the old master's restart (or resume); probes answered like the one before are left out", tr, tr, st, true)
	return run
}

// runCase runs n failovers of one kind on a fresh lab.
func runCase(ctx context.Context, cfg Config, impl Impl, advert time.Duration, kind string) Case {
	c := Case{Impl: impl.Name(), Advert: advert, Kind: kind}
	backup := directors()[1].Priority
	if kind == Crash {
		c.RFC = MasterDown(advert, backup, cfg.Version)
	} else {
		c.RFC = Skew(advert, backup, cfg.Version)
	}
	if kind == Handover {
		if _, ok := impl.(Handoverer); !ok {
			c.Err = fmt.Sprintf("%s: %v", impl.Name(), errNoHandover)
			return c
		}
	}
	label := fmt.Sprintf("%s-%s-%s", impl.Name(), advert, kind)
	r, err := newRig(ctx, cfg.RigConfig, impl, advert, label)
	if err != nil {
		c.Err = err.Error()
		return c
	}
	defer r.close()
	tm := timingFor(advert)
	if err := r.startPair(ctx, tm); err != nil {
		c.Err = err.Error()
		return c
	}
	failures := 0
	for i := 0; i < cfg.Runs; i++ {
		// Land the failure anywhere in the advert cycle.
		if err := sleep(ctx, 300*time.Millisecond+time.Duration(rand.Int64N(int64(advert)))); err != nil {
			c.Err = err.Error()
			return c
		}
		run := r.runOnce(ctx, kind, tm)
		r.ev.trim(time.Now().Add(-10*time.Second - 5*advert).UnixNano())
		c.Runs = append(c.Runs, run)
		if Planned(kind) {
			// Not an outage: a vigil master answers until its successor does.
			cfg.Log.Info("run", "impl", impl.Name(), "advert", advert, "kind", kind, "n", i+1,
				"failed", run.WindowFailed, "errors", run.WindowErrors, "gap", run.Gap, "gap_quiet", run.GapQuiet, "switch", run.Switch, "idle_gap", run.IdleGap, "request_to_new", run.Outage,
				"claimed", run.Claimed, "released", run.Released, "ready_wait", run.ReadyWait, "takeover", run.Takeover, "announce", run.Announce,
				"back_failed", run.PreemptFailed, "back_errors", run.PreemptErrors, "vip_left", run.VIPLeft, "error", run.Err)
		} else {
			cfg.Log.Info("run", "impl", impl.Name(), "advert", advert, "kind", kind, "n", i+1,
				"outage", run.Outage, "last_advert", run.LastAdvert, "takeover", run.Takeover, "announce", run.Announce,
				"preempt_failed", run.PreemptFailed, "preempt_errors", run.PreemptErrors, "preempt_time", run.PreemptTime, "error", run.Err)
		}
		if run.Err != "" {
			failures++
			if failures >= 3 || ctx.Err() != nil {
				c.Err = "too many failed runs, last: " + run.Err
				return c
			}
			// Start over from a known state.
			for _, p := range r.daemon {
				p.stop(3 * time.Second)
			}
			for name := range r.ports {
				_ = r.ports[name].heal()
				_ = r.dropVIP(name)
			}
			if err := r.startPair(ctx, tm); err != nil {
				c.Err = err.Error()
				return c
			}
		}
	}
	return c
}

// startPair starts vs2 then vs1 and waits for vs1 to be master.
func (r *rig) startPair(ctx context.Context, tm caseTiming) error {
	for _, name := range []string{"vs2", "vs1"} {
		if err := r.startDaemon(ctx, name); err != nil {
			return err
		}
	}
	_, err := r.waitMaster(ctx, "vs1", tm.hold, MasterDown(tm.advert, 100, r.site.Version)+20*time.Second)
	return err
}
