package failbench

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
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

// measureUsage runs one pair per implementation at advert, all at once,
// and samples every daemon over the same window: on a shared machine the
// cost of the same daemon read minutes apart differs by 20 % and more, so
// only a shared window compares them. Results come in impls' order.
func measureUsage(ctx context.Context, cfg Config, impls []Impl, advert time.Duration) []Usage {
	pairs := make([]*usagePair, len(impls))
	var wg sync.WaitGroup
	for i, impl := range impls {
		wg.Go(func() { pairs[i] = startUsagePair(ctx, cfg, impl, advert) })
	}
	wg.Wait()
	defer func() {
		for _, p := range pairs {
			p.close()
		}
	}()
	// Let start-up work (GARP bursts, first allocations) pass everywhere.
	if err := sleep(ctx, 2*time.Second); err != nil {
		for _, p := range pairs {
			p.fail(err)
		}
	}
	for _, p := range pairs {
		p.begin()
	}
	end := time.Now().Add(cfg.ResourceWindow)
	for ctx.Err() == nil && time.Now().Before(end) {
		if err := sleep(ctx, min(time.Until(end), time.Second)); err != nil {
			break
		}
		for _, p := range pairs {
			p.sample()
		}
	}
	var out []Usage
	for _, p := range pairs {
		out = append(out, p.finish()...)
	}
	return out
}

// usagePair is one implementation's pair while its cost is measured.
type usagePair struct {
	cfg   Config
	impl  Impl
	adv   time.Duration
	r     *rig
	err   error
	pids  map[string][]int
	start map[string]usage
	peak  map[string]int64
}

var usageRoles = []struct{ role, name string }{{"master", "vs1"}, {"backup", "vs2"}}

func startUsagePair(ctx context.Context, cfg Config, impl Impl, advert time.Duration) *usagePair {
	p := &usagePair{cfg: cfg, impl: impl, adv: advert, pids: map[string][]int{}, start: map[string]usage{}, peak: map[string]int64{}}
	p.r, p.err = newRig(ctx, cfg.RigConfig, impl, advert, fmt.Sprintf("%s-%s-usage", impl.Name(), advert))
	if p.err == nil {
		p.err = p.r.startPair(ctx, timingFor(advert))
	}
	return p
}

func (p *usagePair) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

func (p *usagePair) close() {
	if p.r != nil {
		p.r.close()
	}
}

// begin takes the first sample of every daemon of the pair.
func (p *usagePair) begin() {
	if p.err != nil {
		return
	}
	for _, ro := range usageRoles {
		p.pids[ro.name] = p.r.daemon[ro.name].tree()
		p.start[ro.name] = sampleUsage(p.pids[ro.name])
		p.peak[ro.name] = p.start[ro.name].rssKB
	}
}

// sample keeps the largest RSS seen.
func (p *usagePair) sample() {
	if p.err != nil || p.r.exitedDaemons() != "" {
		return
	}
	for _, ro := range usageRoles {
		if u := sampleUsage(p.pids[ro.name]); u.rssKB > p.peak[ro.name] {
			p.peak[ro.name] = u.rssKB
		}
	}
}

// finish takes the last sample and returns the master's and the backup's usage.
func (p *usagePair) finish() []Usage {
	var out []Usage
	for _, ro := range usageRoles {
		u := Usage{Impl: p.impl.Name(), Advert: p.adv, Role: ro.role, Window: p.cfg.ResourceWindow}
		if p.err != nil {
			u.Err = p.err.Error()
			out = append(out, u)
			continue
		}
		s0, s1 := p.start[ro.name], sampleUsage(p.pids[ro.name])
		u.Window = s1.at.Sub(s0.at)
		u.CPU = s1.cpu - s0.cpu
		u.CPUPercent = 100 * u.CPU.Seconds() / u.Window.Seconds()
		u.RSSKB = p.peak[ro.name]
		u.Procs = len(p.pids[ro.name])
		if d := p.r.daemon[ro.name]; d.exited() {
			u.Err = fmt.Sprintf("daemon exited during the window (%v); figures cover %v", d.err, u.Window.Round(time.Second))
		} else if ro.role == "master" && !p.r.hasVIP(ro.name) {
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
