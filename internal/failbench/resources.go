package failbench

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Usage is one daemon's cost over a window.
type Usage struct {
	Impl       string
	Advert     time.Duration
	Role       string // "master" or "backup"
	Window     time.Duration
	CPU        time.Duration // user + system, all its processes
	CPUPercent float64       // of one core
	RSSKB      int64         // largest VmRSS sum seen over the window
	Procs      int
	Err        string `json:",omitempty"`
}

// measureUsage runs the pair at advert and samples both daemons over window.
func measureUsage(ctx context.Context, cfg Config, impl Impl, advert time.Duration) []Usage {
	mk := func(role string) Usage {
		return Usage{Impl: impl.Name(), Advert: advert, Role: role, Window: cfg.ResourceWindow}
	}
	failAll := func(err error) []Usage {
		m, b := mk("master"), mk("backup")
		m.Err, b.Err = err.Error(), err.Error()
		return []Usage{m, b}
	}
	r, err := newRig(ctx, cfg.RigConfig, impl, advert, fmt.Sprintf("%s-%s-usage", impl.Name(), advert))
	if err != nil {
		return failAll(err)
	}
	defer r.close()
	tm := timingFor(advert)
	if err := r.startPair(ctx, tm); err != nil {
		return failAll(err)
	}
	// Let start-up work (GARP bursts, first allocations) pass.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return failAll(err)
	}
	roles := []struct{ role, name string }{{"master", "vs1"}, {"backup", "vs2"}}
	pids := map[string][]int{}
	start := map[string]usage{}
	peak := map[string]int64{}
	for _, ro := range roles {
		pids[ro.name] = r.daemon[ro.name].tree()
		start[ro.name] = sampleUsage(pids[ro.name])
		peak[ro.name] = start[ro.name].rssKB
	}
	end := time.Now().Add(cfg.ResourceWindow)
	for time.Now().Before(end) && r.exitedDaemons() == "" {
		step := time.Until(end)
		if step > time.Second {
			step = time.Second
		}
		if err := sleep(ctx, step); err != nil {
			return failAll(err)
		}
		for _, ro := range roles {
			if u := sampleUsage(pids[ro.name]); u.rssKB > peak[ro.name] {
				peak[ro.name] = u.rssKB
			}
		}
	}
	var out []Usage
	for _, ro := range roles {
		u := mk(ro.role)
		s0, s1 := start[ro.name], sampleUsage(pids[ro.name])
		u.Window = s1.at.Sub(s0.at)
		u.CPU = s1.cpu - s0.cpu
		u.CPUPercent = 100 * u.CPU.Seconds() / u.Window.Seconds()
		u.RSSKB = peak[ro.name]
		u.Procs = len(pids[ro.name])
		if d := r.daemon[ro.name]; d.exited() {
			u.Err = fmt.Sprintf("daemon exited during the window (%v); figures cover %v", d.err, u.Window.Round(time.Second))
		} else if ro.role == "master" && !r.hasVIP(ro.name) {
			u.Err = "was not master at the end of the window"
		}
		out = append(out, u)
	}
	return out
}

// Stability is a long run with both cores busy, counting spurious
// transitions: the backup claiming master while the master is alive.
type Stability struct {
	Impl          string
	Advert        time.Duration
	Duration      time.Duration
	Spinners      int
	Transitions   int // episodes of backup adverts or backup answers (merged within 1 s)
	BackupAdverts int
	BackupAnswers int
	Probes        int
	FailedProbes  int
	MasterAdverts int
	MaxAdvertGap  time.Duration // longest silence between master adverts
	Err           string        `json:",omitempty"`
}

// exitedDaemons names the daemons that have exited, or returns "".
func (r *rig) exitedDaemons() string {
	var gone []string
	for _, d := range r.site.Directors {
		if p := r.daemon[d.Name]; p != nil && p.exited() {
			gone = append(gone, fmt.Sprintf("%s on %s (%v)", r.impl.Name(), d.Name, p.err))
		}
	}
	return strings.Join(gone, ", ")
}

func measureStability(ctx context.Context, cfg Config, impl Impl) Stability {
	s := Stability{Impl: impl.Name(), Advert: cfg.StabilityAdvert, Duration: cfg.Stability, Spinners: cfg.Spinners}
	r, err := newRig(ctx, cfg.RigConfig, impl, cfg.StabilityAdvert, fmt.Sprintf("%s-%s-stability", impl.Name(), cfg.StabilityAdvert))
	if err != nil {
		s.Err = err.Error()
		return s
	}
	defer r.close()
	tm := timingFor(cfg.StabilityAdvert)
	if err := r.startPair(ctx, tm); err != nil {
		s.Err = err.Error()
		return s
	}
	var spin []*exec.Cmd
	defer func() {
		for _, c := range spin {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	for i := 0; i < cfg.Spinners; i++ {
		c := exec.Command(cfg.Self, "spin")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			s.Err = fmt.Sprintf("start spinner: %v", err)
			return s
		}
		spin = append(spin, c)
	}
	t0 := time.Now().UnixNano()
	// Counted only while both daemons live: a daemon that something else
	// on the machine stopped ends the window early, and the report says so.
	end := time.Now().Add(cfg.Stability)
	for time.Now().Before(end) {
		if err := sleep(ctx, min(time.Second, time.Until(end))); err != nil {
			s.Err = err.Error()
			return s
		}
		if gone := r.exitedDaemons(); gone != "" {
			s.Err = fmt.Sprintf("%s exited after %v; counted until then", gone, time.Since(time.Unix(0, t0)).Round(time.Second))
			break
		}
	}
	t1 := time.Now().UnixNano()
	s.Duration = time.Duration(t1 - t0).Round(time.Second)
	if s.Err == "" {
		s.Duration = cfg.Stability
	}
	masterAddr, backupAddr := r.addrOf("vs1"), r.addrOf("vs2")
	var episodes []int64
	mark := func(t int64) {
		if n := len(episodes); n == 0 || t-episodes[n-1] > int64(time.Second) {
			s.Transitions++
		}
		episodes = append(episodes, t)
	}
	r.ev.view(func(probes, adverts []Event) {
		var prev int64
		var spurious []int64
		for _, a := range adverts {
			if a.End < t0 || a.End > t1 {
				continue
			}
			switch a.From {
			case masterAddr:
				s.MasterAdverts++
				if prev != 0 && time.Duration(a.End-prev) > s.MaxAdvertGap {
					s.MaxAdvertGap = time.Duration(a.End - prev)
				}
				prev = a.End
			case backupAddr:
				s.BackupAdverts++
				spurious = append(spurious, a.End)
			}
		}
		for _, p := range probes {
			if p.Start < t0 || p.Start > t1 {
				continue
			}
			s.Probes++
			if !p.OK {
				s.FailedProbes++
			} else if p.From != "vs1" {
				s.BackupAnswers++
				spurious = append(spurious, p.End)
			}
		}
		slices.Sort(spurious)
		for _, t := range spurious {
			mark(t)
		}
	})
	return s
}
