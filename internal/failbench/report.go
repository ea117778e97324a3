package failbench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Config is a whole benchmark.
type Config struct {
	RigConfig
	Impls           []Impl
	Adverts         []time.Duration // failover cases
	Kinds           []string        // Crash, Stop
	Runs            int             // per case
	ResourceAdverts []time.Duration // usage windows; none: skip
	ResourceWindow  time.Duration
	StabilityAdvert time.Duration
	Stability       time.Duration // 0: no stability run
	Spinners        int           // busy processes during the stability run
}

// Report is everything a benchmark measured.
type Report struct {
	Started   time.Time
	Versions  map[string]string
	Cases     []Case
	Usage     []Usage
	Stability []Stability
	Notes     []string // cases left out, and why
}

// Bench runs every case of cfg in order and returns what it measured. A
// case that cannot run carries its error; the others still run.
func Bench(ctx context.Context, cfg Config) *Report {
	rep := &Report{Started: time.Now(), Versions: map[string]string{}}
	for _, adv := range cfg.Adverts {
		for _, kind := range cfg.Kinds {
			for _, impl := range cfg.Impls {
				if ctx.Err() != nil {
					return rep
				}
				if _, ok := impl.(Handoverer); kind == Handover && !ok {
					note := fmt.Sprintf("%s has no handover command: its planned step-down is SIGTERM, the stop row", impl.Name())
					if !slices.Contains(rep.Notes, note) {
						rep.Notes = append(rep.Notes, note)
					}
					continue
				}
				cfg.Log.Info("case", "impl", impl.Name(), "advert", adv, "kind", kind, "runs", cfg.Runs)
				rep.Cases = append(rep.Cases, runCase(ctx, cfg, impl, adv, kind))
			}
		}
	}
	for _, adv := range cfg.ResourceAdverts {
		if ctx.Err() != nil {
			return rep
		}
		cfg.Log.Info("usage, side by side", "impls", len(cfg.Impls), "advert", adv, "window", cfg.ResourceWindow)
		rep.Usage = append(rep.Usage, measureUsage(ctx, cfg, cfg.Impls, adv)...)
	}
	if cfg.Stability > 0 {
		for _, impl := range cfg.Impls {
			if ctx.Err() != nil {
				return rep
			}
			cfg.Log.Info("stability", "impl", impl.Name(), "advert", cfg.StabilityAdvert, "duration", cfg.Stability)
			rep.Stability = append(rep.Stability, measureStability(ctx, cfg, impl))
		}
	}
	return rep
}

// Summary is min/median/max of a set of durations.
type Summary struct {
	N                int
	Min, Median, Max time.Duration
}

// Summarize computes a Summary (median of an even count: mean of the two
// middle values).
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Summary{N: len(s), Min: s[0], Median: med, Max: s[len(s)-1]}
}

func (s Summary) String() string {
	if s.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s / %s", ms(s.Min), ms(s.Median), ms(s.Max))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func pick(runs []Run, f func(Run) time.Duration) []time.Duration {
	var out []time.Duration
	for _, r := range runs {
		out = append(out, f(r))
	}
	return out
}

// Print writes the tables.
func (rep *Report) Print(w io.Writer) {
	var failovers, planned []Case
	for _, c := range rep.Cases {
		if Planned(c.Kind) {
			planned = append(planned, c)
		} else {
			failovers = append(failovers, c)
		}
	}
	if len(failovers) > 0 {
		fmt.Fprintf(w, "\nFailover as the client sees it (ms, min / median / max; probes every 5 ms over TCP)\n")
		fmt.Fprintf(w, "(RFC: 3 x advert + skew of the backup for a crash, the skew for a stop; new adv / GARP: medians from the old master's\n")
		fmt.Fprintf(w, " last advert to the new master's first advert and first ARP for the VIP; preempt: probes failed while the old master took the VIP back)\n")
		fmt.Fprintf(w, "%-8s %-5s %-10s %3s  %-26s %-26s %7s  %-15s  %s\n",
			"advert", "kind", "impl", "n", "failure->answer", "last advert->answer", "RFC", "new adv / GARP", "preempt: failed probes")
		for _, c := range failovers {
			good := c.Good()
			out := Summarize(pick(good, func(r Run) time.Duration { return r.Outage }))
			last := Summarize(pick(good, func(r Run) time.Duration { return r.LastAdvert }))
			split := advertSplit(good)
			pf, pfRuns, left := 0, 0, 0
			for _, r := range good {
				pf += r.PreemptFailed
				if r.PreemptFailed > 0 {
					pfRuns++
				}
				if r.VIPLeft {
					left++
				}
			}
			note := fmt.Sprintf("%d in %d of %d runs", pf, pfRuns, len(good))
			if left > 0 {
				note += fmt.Sprintf("; VIP left on stopped master %d times", left)
			}
			if bad := len(c.Runs) - len(good); bad > 0 {
				note += fmt.Sprintf("; %d runs failed", bad)
			}
			if c.Err != "" {
				note += "; ERROR: " + c.Err
			}
			fmt.Fprintf(w, "%-8s %-5s %-10s %3d  %-26s %-26s %7s  %-15s  %s\n",
				c.Advert, c.Kind, c.Impl, len(good), out, last, ms(c.RFC), split, note)
		}
	}
	if len(planned) > 0 || len(rep.Notes) > 0 {
		printPlanned(w, planned, rep.Notes)
	}
	if len(rep.Cases) > 0 {
		rep.printRatios(w)
	}
	if len(rep.Usage) > 0 {
		fmt.Fprintf(w, "\nDaemon cost (CPU over the window; RSS: largest sum over the daemon's processes)\n")
		fmt.Fprintf(w, "%-10s %-11s %-7s %8s %10s %9s %9s %5s\n", "advert", "impl", "role", "window", "CPU ms", "CPU %", "RSS MB", "procs")
		for _, u := range rep.Usage {
			line := fmt.Sprintf("%-10s %-11s %-7s %8s %10s %9.3f %9.1f %5d", u.Advert, u.Impl, u.Role, u.Window.Round(time.Second), ms(u.CPU), u.CPUPercent, float64(u.RSSKB)/1024, u.Procs)
			if u.Err != "" {
				line += "  ERROR: " + u.Err
			}
			fmt.Fprintln(w, line)
		}
		rep.printUsageRatios(w)
	}
	if len(rep.Stability) > 0 {
		fmt.Fprintf(w, "\nStability (both cores kept busy): spurious transitions = episodes of backup adverts or backup answers while the master lives\n")
		fmt.Fprintf(w, "%-10s %-11s %9s %8s %11s %14s %14s %13s %13s\n", "advert", "impl", "duration", "spinners", "spurious", "backup adverts", "backup answers", "failed probes", "max adv gap")
		for _, s := range rep.Stability {
			line := fmt.Sprintf("%-10s %-11s %9s %8d %11d %14d %14d %7d/%-6d %10s ms", s.Advert, s.Impl, s.Duration, s.Spinners, s.Transitions, s.BackupAdverts, s.BackupAnswers, s.FailedProbes, s.Probes, ms(s.MaxAdvertGap))
			if s.Err != "" {
				line += "  ERROR: " + s.Err
			}
			fmt.Fprintln(w, line)
		}
	}
}

// advertSplit is "new adv / GARP": the medians from the old master's last
// advert to the new master's first advert and first ARP for the VIP.
func advertSplit(good []Run) string {
	tk := Summarize(pick(good, func(r Run) time.Duration { return r.Takeover }))
	var anns []time.Duration
	for _, r := range good {
		if r.Announce > 0 {
			anns = append(anns, r.Announce)
		}
	}
	an := Summarize(anns)
	switch {
	case tk.N == 0:
		return "-"
	case an.N == 0:
		return ms(tk.Median) + " / -"
	}
	return ms(tk.Median) + " / " + ms(an.Median)
}

// failedIn is "F in R of N runs" for a count per run.
func failedIn(good []Run, f func(Run) int) string {
	total, runs := 0, 0
	for _, r := range good {
		total += f(r)
		if f(r) > 0 {
			runs++
		}
	}
	return fmt.Sprintf("%d in %d of %d runs", total, runs, len(good))
}

// printPlanned writes the planned-handover rows (Stop, Handover): what the
// client saw from the request until the new master was settled.
func printPlanned(w io.Writer, cases []Case, notes []string) {
	fmt.Fprintf(w, "\nPlanned handover as the client sees it (ms, min / median / max; probes every 5 ms over TCP)\n")
	fmt.Fprintf(w, "(stop: SIGTERM; handover: vigil's control socket, as `vigil drill`; failed probes: from the request until the new master\n")
	fmt.Fprintf(w, " is settled; largest gap: the longest time between two consecutive answers, whoever answered, from the request until the\n")
	fmt.Fprintf(w, " old master let the VIP go and the last probe failed; idle: the same over as long a time just before the request (median);\n")
	fmt.Fprintf(w, " request->new: to the new master's first answer, a gap and no outage while the old master answers meanwhile; VIP on both:\n")
	fmt.Fprintf(w, " median time from the new master's claim to the old one's release, < 0 when the old let go first; skew: the backup's RFC\n")
	fmt.Fprintf(w, " Skew_Time; new adv / GARP: medians from the old master's last advert; back: probes failed while vs1 took the VIP back;\n")
	fmt.Fprintf(w, " switch: median / max from the old master's last answer to the new master's first, the interruption at the move itself)\n")
	fmt.Fprintf(w, "%-8s %-8s %-10s %3s  %-22s %-22s %6s  %-13s  %-24s %11s %7s  %-15s  %s\n",
		"advert", "kind", "impl", "n", "failed probes", "largest gap", "idle", "switch", "request->new", "VIP on both", "skew", "new adv / GARP", "back: failed probes")
	for _, c := range cases {
		good := c.Good()
		gap := Summarize(pick(good, func(r Run) time.Duration { return r.Gap }))
		idle := Summarize(pick(good, func(r Run) time.Duration { return r.IdleGap }))
		req := Summarize(pick(good, func(r Run) time.Duration { return r.Outage }))
		var both []time.Duration
		for _, r := range good {
			if r.Claimed > 0 && r.Released > 0 {
				both = append(both, r.Released-r.Claimed)
			}
		}
		onBoth := "-"
		if b := Summarize(both); b.N > 0 {
			onBoth = fmt.Sprintf("%+.1f", float64(b.Median)/float64(time.Millisecond))
		}
		idleMed := "-"
		if idle.N > 0 {
			idleMed = ms(idle.Median)
		}
		sw := "-"
		if x := Summarize(pick(good, func(r Run) time.Duration { return r.Switch })); x.N > 0 {
			sw = ms(x.Median) + " / " + ms(x.Max)
		}
		note := failedIn(good, func(r Run) int { return r.PreemptFailed })
		left := 0
		for _, r := range good {
			if r.VIPLeft {
				left++
			}
		}
		if left > 0 {
			note += fmt.Sprintf("; VIP left on the old master %d times", left)
		}
		if bad := len(c.Runs) - len(good); bad > 0 {
			note += fmt.Sprintf("; %d runs failed", bad)
		}
		if c.Err != "" {
			note += "; ERROR: " + c.Err
		}
		fmt.Fprintf(w, "%-8s %-8s %-10s %3d  %-22s %-22s %6s  %-13s  %-24s %11s %7s  %-15s  %s\n",
			c.Advert, c.Kind, c.Impl, len(good), failedIn(good, func(r Run) int { return r.WindowFailed }), gap, idleMed, sw, req, onBoth,
			ms(c.RFC), advertSplit(good), note)
	}
	for _, n := range notes {
		fmt.Fprintf(w, "(%s)\n", n)
	}
}

// printUsageRatios prints vigil's CPU and RSS over keepalived's for each
// advert and role; the pairs ran side by side, over the same window.
func (rep *Report) printUsageRatios(w io.Writer) {
	find := func(impl string, adv time.Duration, role string) (Usage, bool) {
		for _, u := range rep.Usage {
			if u.Impl == impl && u.Advert == adv && u.Role == role && u.Err == "" && u.CPU > 0 {
				return u, true
			}
		}
		return Usage{}, false
	}
	first := true
	for _, u := range rep.Usage {
		if u.Impl != "vigil" {
			continue
		}
		v, ok1 := find("vigil", u.Advert, u.Role)
		k, ok2 := find("keepalived", u.Advert, u.Role)
		if !ok1 || !ok2 {
			continue
		}
		if first {
			fmt.Fprintf(w, "(the pairs ran side by side, so each ratio compares one window)\n")
			first = false
		}
		fmt.Fprintf(w, "%-10s %-7s vigil/keepalived: CPU %.2f (%.3f %% against %.3f %%), RSS %.2f\n", u.Advert, u.Role,
			v.CPUPercent/k.CPUPercent, v.CPUPercent, k.CPUPercent, float64(v.RSSKB)/float64(k.RSSKB))
	}
}

// printRatios prints, per advert and kind, each implementation's median
// over keepalived's.
func (rep *Report) printRatios(w io.Writer) {
	type key struct {
		adv  time.Duration
		kind string
	}
	ref := map[key]Case{}
	for _, c := range rep.Cases {
		if c.Impl == "keepalived" {
			ref[key{c.Advert, c.Kind}] = c
		}
	}
	var lines []string
	for _, c := range rep.Cases {
		if c.Impl == "keepalived" {
			continue
		}
		if Planned(c.Kind) {
			// keepalived's planned step-down is its stop.
			if k, ok := ref[key{c.Advert, Stop}]; ok {
				lines = append(lines, plannedRatio(c, k))
			}
			continue
		}
		k, ok := ref[key{c.Advert, c.Kind}]
		if !ok {
			continue
		}
		a := Summarize(pick(c.Good(), func(r Run) time.Duration { return r.LastAdvert }))
		b := Summarize(pick(k.Good(), func(r Run) time.Duration { return r.LastAdvert }))
		ao := Summarize(pick(c.Good(), func(r Run) time.Duration { return r.Outage }))
		bo := Summarize(pick(k.Good(), func(r Run) time.Duration { return r.Outage }))
		if a.N == 0 || b.N == 0 {
			lines = append(lines, fmt.Sprintf("%-10s %-6s %s/keepalived: no data", c.Advert, c.Kind, c.Impl))
			continue
		}
		lines = append(lines, fmt.Sprintf("%-10s %-6s %s/keepalived median: last advert->answer %.2f, failure->answer %.2f; %s minus RFC %+.1f ms",
			c.Advert, c.Kind, c.Impl, float64(a.Median)/float64(b.Median), float64(ao.Median)/float64(bo.Median), c.Impl, float64(a.Median-c.RFC)/float64(time.Millisecond)))
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(lines, "\n"))
	}
}

// plannedRatio compares the largest gap of c, a planned handover, with
// that of keepalived's stop k.
func plannedRatio(c, k Case) string {
	a := Summarize(pick(c.Good(), func(r Run) time.Duration { return r.Gap }))
	b := Summarize(pick(k.Good(), func(r Run) time.Duration { return r.Gap }))
	if a.N == 0 || b.N == 0 || b.Median == 0 {
		return fmt.Sprintf("%-10s %-8s %s/keepalived stop: no data", c.Advert, c.Kind, c.Impl)
	}
	fa, fb := 0, 0
	for _, r := range c.Good() {
		fa += r.WindowFailed
	}
	for _, r := range k.Good() {
		fb += r.WindowFailed
	}
	return fmt.Sprintf("%-10s %-8s %s/keepalived stop median: largest gap %.2f (%s against %s ms); failed probes %d in %d runs against %d in %d",
		c.Advert, c.Kind, c.Impl, float64(a.Median)/float64(b.Median), ms(a.Median), ms(b.Median), fa, a.N, fb, b.N)
}
