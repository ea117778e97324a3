package failbench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/vigil-lb/vigil/director"
)

// Handover is the planned step-down through the daemon's own command
// (vigil's control socket "handover", what `vigil drill` sends), undone
// with "resume" after the run. keepalived has no such command: its
// planned step-down is SIGTERM, the Stop kind.
const Handover = "handover"

// Planned says whether kind is a planned handover (the master is asked to
// step down and lives on until it has), whose figure is what the client
// saw meanwhile, not an outage.
func Planned(kind string) bool { return kind == Stop || kind == Handover }

// Handoverer is an Impl with a planned step-down command. dir is the
// directory Prepare wrote the director's files into.
type Handoverer interface {
	Handover(ctx context.Context, dir string) error // give up mastership, stay a backup
	Resume(ctx context.Context, dir string) error   // take the configured priority back
}

// Readier is an Impl whose planned handover depends on state the daemon
// learns after it starts (vigil: the cluster channel must show the
// successor). SuccessorReady returns once the director in dir, master,
// knows a backup that will take over, or ctx ends.
type Readier interface {
	SuccessorReady(ctx context.Context, dir string) error
}

// window is what the client saw over a planned handover.
type window struct {
	gap            time.Duration // longest time between two consecutive answers
	gapFrom, gapTo int64         // the answers around it
	failed         int
	errors         map[string]int
}

// clientWindow measures the probes of one planned handover. A probe
// fails in the window when it started by failEnd and at most one probe
// interval (every) before t0: one started earlier and still unanswered
// was failing before the request. The gap is the longest time between
// two consecutive answers, whoever answered, from the last answer before
// the request (t0), so an interruption that starts at the request is
// whole, to the first answer after the later of gapEnd and the last
// failure, so one that starts by then is whole too.
func clientWindow(probes []Event, t0, gapEnd, failEnd int64, every time.Duration) window {
	var w window
	for _, p := range probes {
		if !p.OK && p.End > t0 && p.Start >= t0-int64(every) && p.Start <= failEnd {
			w.failed++
			if w.errors == nil {
				w.errors = map[string]int{}
			}
			w.errors[p.From]++
			gapEnd = max(gapEnd, p.End)
		}
	}
	w.gap, w.gapFrom, w.gapTo = largestGap(probes, t0, gapEnd, true)
	return w
}

// largestGap is the longest time between two consecutive answers from
// the last one that ended by from to the first one that ended after to
// (with closing; else the last one that ended by to), and the answers
// around it.
func largestGap(probes []Event, from, to int64, closing bool) (time.Duration, int64, int64) {
	var ends []int64
	anchor, next := int64(0), int64(0)
	for _, p := range probes {
		switch {
		case !p.OK:
		case p.End <= from:
			anchor = max(anchor, p.End)
		case p.End <= to:
			ends = append(ends, p.End)
		case closing && (next == 0 || p.End < next):
			next = p.End
		}
	}
	for _, e := range []int64{anchor, next} {
		if e != 0 {
			ends = append(ends, e)
		}
	}
	slices.Sort(ends)
	var gap time.Duration
	var a, b int64
	for i := 1; i < len(ends); i++ {
		if d := time.Duration(ends[i] - ends[i-1]); d > gap {
			gap, a, b = d, ends[i-1], ends[i]
		}
	}
	return gap, a, b
}

// lastAnswerBefore is the end of the last probe name answered before t,
// or 0.
func lastAnswerBefore(probes []Event, name string, t int64) int64 {
	last := int64(0)
	for _, p := range probes {
		if p.OK && p.From == name && p.End < t {
			last = max(last, p.End)
		}
	}
	return last
}

// quietIn is the longest time in [a, b] in which the client started no
// probe. The agent starts one every 5 ms while it runs, so a long quiet
// stretch in a gap is the measuring client itself not running (a loaded
// machine), not the service failing to answer.
func quietIn(probes []Event, a, b int64) time.Duration {
	if b <= a {
		return 0
	}
	starts := []int64{a, b}
	for _, p := range probes {
		if p.Start > a && p.Start < b {
			starts = append(starts, p.Start)
		}
	}
	slices.Sort(starts)
	var q time.Duration
	for i := 1; i < len(starts); i++ {
		q = max(q, time.Duration(starts[i]-starts[i-1]))
	}
	return q
}

// vipChange is the first time after t0 that name added (added) or
// removed the VIP, or 0.
func vipChange(vips []Event, name string, added bool, t0 int64) int64 {
	for _, v := range vips {
		if v.From == name && v.OK == added && v.End > t0 {
			return v.End
		}
	}
	return 0
}

// measurePlanned fills in what the client saw over a planned handover
// requested at t0, whose new master first answered at ans and was settled
// at settled (it had answered every probe for a while). Failures count
// until settled; the gap runs until the old master let the VIP go, or
// the new master answered, or the last failure, whichever came last:
// after that the new master served alone, and a gap there is this
// machine's (the idle figure measures that), not the handover's.
func (r *rig) measurePlanned(run *Run, win *window, old, nw string, t0, ans, settled int64) {
	var claimed, released int64
	r.ev.vipView(func(vips []Event) {
		claimed = vipChange(vips, nw, true, t0)
		released = vipChange(vips, old, false, t0)
	})
	end := ans
	if released == 0 || released > settled {
		end = settled // never let go in the window: all of it counts
	} else {
		end = max(end, released)
	}
	r.ev.view(func(probes, _ []Event) {
		*win = clientWindow(probes, t0, end, settled, r.cfg.Every)
		run.GapQuiet = quietIn(probes, win.gapFrom, win.gapTo)
		if last := lastAnswerBefore(probes, old, ans); last != 0 {
			run.Switch = time.Duration(ans - last)
		}
		// Before the request only: the handover's own gap must not close it.
		run.IdleGap, _, _ = largestGap(probes, t0-(end-t0), t0, false)
	})
	run.Gap, run.WindowFailed, run.WindowErrors = win.gap, win.failed, win.errors
	if claimed != 0 {
		run.Claimed = time.Duration(claimed - t0)
	}
	if released != 0 {
		run.Released = time.Duration(released - t0)
	}
}

// waitServed waits until name answered the client's latest probe, less
// than 20 ms ago, and every probe that ended over the last 100 ms: a
// planned handover is measured from a client that is being served, not
// from the tail of an earlier disturbance (a preemption, a spurious
// transition on a loaded machine) or while the agent itself is stalled.
func (r *rig) waitServed(ctx context.Context, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		now := time.Now().UnixNano()
		ok := false
		r.ev.view(func(probes, _ []Event) {
			n := len(probes)
			if n == 0 || !probes[n-1].OK || probes[n-1].From != name || now-probes[n-1].End > int64(20*time.Millisecond) {
				return
			}
			for i := n - 1; i >= 0 && probes[i].End >= now-int64(100*time.Millisecond); i-- {
				if !probes[i].OK || probes[i].From != name {
					return
				}
			}
			ok = true
		})
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the client was not being served by %s within %v (%s)", name, timeout, r.describe(name, 100*time.Millisecond))
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitVIPGone waits up to d for name to release the VIP and reports
// whether it still holds it.
func (r *rig) waitVIPGone(ctx context.Context, name string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for r.hasVIP(name) {
		if time.Now().After(deadline) || sleep(ctx, 10*time.Millisecond) != nil {
			return true
		}
	}
	return false
}

// plannedTrace writes the events of one planned handover, from before the
// request until the new master was settled, every probe included.
func (r *rig) plannedTrace(kind string, t0, last, ans, settled int64, run Run, w window) {
	from := min(last, t0) - int64(50*time.Millisecond)
	to := max(ans, w.gapTo, t0+int64(run.Released), settled) + int64(50*time.Millisecond)
	at := func(d time.Duration) string {
		if d == 0 {
			return "(not seen)"
		}
		return relMS(t0, t0+int64(d))
	}
	head := fmt.Sprintf("# %s: t=0 is the request; last advert of the old master at %s, new master took the VIP at %s, first answer from it at %s,"+
		" old master let the VIP go at %s; largest gap %s ms, from %s to %s; %d probes failed",
		kind, relMS(t0, last), at(run.Claimed), relMS(t0, ans), at(run.Released), ms(w.gap), relMS(t0, w.gapFrom), relMS(t0, w.gapTo), w.failed)
	r.writeTrace(fmt.Sprintf("run-%02d.trace", r.traces), head, t0, from, to, false)
}

// vigilSocket is the control socket of the vigil director prepared in dir.
func vigilSocket(dir string) string { return filepath.Join(dir, "vigil.sock") }

// vigilCall sends one control request, with its own timeout.
func vigilCall(ctx context.Context, dir, op string) (director.Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rep, err := director.Call(ctx, vigilSocket(dir), director.Request{Op: op})
	if err != nil {
		return rep, fmt.Errorf("vigil %s on %s: %w", op, vigilSocket(dir), err)
	}
	return rep, nil
}

// Handover asks the director to hand every instance over, as `vigil drill`
// does.
func (v Vigil) Handover(ctx context.Context, dir string) error {
	_, err := vigilCall(ctx, dir, "handover")
	return err
}

// Resume gives the director its configured priority back.
func (v Vigil) Resume(ctx context.Context, dir string) error {
	_, err := vigilCall(ctx, dir, "resume")
	return err
}

// SuccessorReady waits until the director is master and its cluster
// channel shows a live peer that is backup of the bench instance: the
// condition under which vigil hands over make-before-break (and which
// `vigil drill` checks first). Without it vigil falls back to the RFC's
// priority-0 step-down, which the benchmark must not measure by accident
// (for example right after the old master's restart).
func (v Vigil) SuccessorReady(ctx context.Context, dir string) error {
	var why string
	for {
		rep, err := vigilCall(ctx, dir, "status")
		switch {
		case err != nil:
			why = err.Error()
		case rep.Status == nil:
			why = "status reply without status"
		default:
			why = successorMissing(*rep.Status)
			if why == "" {
				return nil
			}
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("no successor ready (%s): %w", why, err)
		}
	}
}

// benchInstance is the instance name VigilSite writes.
const benchInstance = "bench"

// successorMissing says why st is not ready for a make-before-break
// handover of the bench instance, or "".
func successorMissing(st director.Status) string {
	master := false
	for _, in := range st.Instances {
		if in.Name == benchInstance {
			master = in.State == "master"
		}
	}
	if !master {
		return "not master of " + benchInstance
	}
	var peers []string
	for _, p := range st.Peers {
		if p.Alive && p.Instances[benchInstance] == "backup" {
			return ""
		}
		peers = append(peers, fmt.Sprintf("%s alive=%v %s=%q", p.Name, p.Alive, benchInstance, p.Instances[benchInstance]))
	}
	slices.SortFunc(peers, cmp.Compare)
	if len(peers) == 0 {
		return "no peer on the cluster channel"
	}
	return fmt.Sprintf("no live backup among the peers %v", peers)
}

var errNoHandover = errors.New("no handover command")
