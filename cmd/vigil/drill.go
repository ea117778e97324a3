package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/director"
)

func init() {
	extraCommands["drill"] = command{"rehearse a failover: hand over, measure what clients saw, optionally hand back", runDrill}
}

type probeList []string

func (p *probeList) String() string     { return strings.Join(*p, ",") }
func (p *probeList) Set(v string) error { *p = append(*p, v); return nil }

// drillReport is what `vigil drill --json` prints.
type drillReport struct {
	Instance  string        `json:"instance"`
	From      string        `json:"from,omitempty"`
	To        string        `json:"to,omitempty"`
	Held      bool          `json:"held,omitempty"` // the old master stays backup until --resume
	OK        bool          `json:"ok"`
	Failure   string        `json:"failure,omitempty"`
	Preflight []string      `json:"preflight"`
	Timeline  []drillEvent  `json:"timeline"`
	Probes    []probeReport `json:"probes"`
	Back      *drillBack    `json:"back,omitempty"`
}

type drillEvent struct {
	AtMS  float64 `json:"at_ms"` // since the step-down request
	Event string  `json:"event"`
}

type drillBack struct {
	TookMS float64 `json:"took_ms"` // resume request to this director master again
}

type probeReport struct {
	Target     string  `json:"target"`
	Sent       int     `json:"sent"`
	Failed     int     `json:"failed"`
	OutageMS   float64 `json:"outage_ms"` // longest run of failures, first failure to next success
	FirstOKMS  float64 `json:"first_ok_after_ms"`
	Answered   string  `json:"answered_by,omitempty"`
	LastFailed string  `json:"last_error,omitempty"`
}

// prober probes one target at a steady rate and keeps every result.
type prober struct {
	target  string
	every   time.Duration
	timeout time.Duration
	mu      sync.Mutex
	res     []probeResult
}

type probeResult struct {
	at  time.Time
	ok  bool
	who string
	err string
}

// run sends a probe every p.every, each in its own goroutine, so one that
// hangs until its timeout does not hide the ones after it: an outage is
// measured to the probe interval, not to the timeout.
func (p *prober) run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		at := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			who, err := probeOnce(p.target, p.timeout)
			r := probeResult{at: at, ok: err == nil, who: who}
			if err != nil {
				r.err = err.Error()
			}
			p.mu.Lock()
			p.res = append(p.res, r)
			p.mu.Unlock()
		}()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// probeOnce makes one request: an HTTP GET (any answer below 500 counts)
// or a TCP connect (for tcp://, the first line read, if any, names the
// server).
func probeOnce(target string, timeout time.Duration) (string, error) {
	switch {
	case strings.HasPrefix(target, "http://"), strings.HasPrefix(target, "https://"):
		cl := http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := cl.Get(target)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		if resp.StatusCode >= 500 {
			return "", fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return strings.TrimSpace(string(b)), nil
	case strings.HasPrefix(target, "tcp://"):
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(target, "tcp://"), timeout)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		line, _ := bufio.NewReader(c).ReadString('\n')
		if f := strings.Fields(line); len(f) > 0 {
			return f[0], nil
		}
		return "", nil
	}
	return "", fmt.Errorf("probe %q: want http://, https:// or tcp://HOST:PORT", target)
}

// report summarises the results at or after from.
func (p *prober) report(from time.Time) probeReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	sort.Slice(p.res, func(i, j int) bool { return p.res[i].at.Before(p.res[j].at) })
	r := probeReport{Target: p.target, FirstOKMS: -1}
	var failStart time.Time
	for _, x := range p.res {
		if x.at.Before(from) {
			continue
		}
		r.Sent++
		if !x.ok {
			r.Failed++
			r.LastFailed = x.err
			if failStart.IsZero() {
				failStart = x.at
			}
			continue
		}
		if r.FirstOKMS < 0 {
			r.FirstOKMS = ms(x.at.Sub(from))
		}
		if !failStart.IsZero() {
			r.OutageMS = max(r.OutageMS, ms(x.at.Sub(failStart)))
			failStart = time.Time{}
		}
		r.Answered = x.who
	}
	if !failStart.IsZero() {
		r.OutageMS = max(r.OutageMS, ms(time.Since(failStart)))
	}
	return r
}

// okSince reports whether a probe succeeded at or after t.
func (p *prober) okSince(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.res {
		if r.ok && !r.at.Before(t) {
			return true
		}
	}
	return false
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// runDrill is `vigil drill`: preflight, planned handover, measurement.
func runDrill(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "/etc/vigil/site.toml", "site file (must be the one the daemon runs)")
	sock := fs.String("socket", "", "control socket (default: the site's control_socket)")
	instName := fs.String("instance", "", "instance to drill (default: every instance this director is master of)")
	var probes probeList
	fs.Var(&probes, "probe", "probe through the VIP during the drill: http://VIP/path, https://..., tcp://VIP:PORT (repeatable)")
	back := fs.Bool("back", false, "hand mastership back afterwards")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	maxOutage := fs.Duration("max-outage", 0, "fail if a probe saw a longer interruption (0: no limit)")
	every := fs.Duration("probe-every", 10*time.Millisecond, "probe interval")
	probeTimeout := fs.Duration("probe-timeout", time.Second, "timeout of one probe")
	timeout := fs.Duration("timeout", 30*time.Second, "give up waiting for the new master after this long")
	force := fs.Bool("force", false, "run even if the preflight finds problems")
	resumeOnly := fs.Bool("resume", false, "only end an earlier drill: give this director its priority back")
	checkOnly := fs.Bool("check", false, "only run the preflight: exit 0 when a drill could run now")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	site, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "vigil drill: %v\n", err)
		return 2
	}
	if *sock == "" {
		*sock = site.Settings.ControlSocket
	}
	if *resumeOnly {
		if err := resume(*sock, *instName); err != nil {
			fmt.Fprintf(stderr, "vigil drill --resume: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "resumed: this director is back in the election at its configured priority")
		return 0
	}
	rep := drillReport{Instance: *instName}
	code := drill(site, *sock, probes, *back, *maxOutage, *every, *probeTimeout, *timeout, *force, *checkOnly, &rep)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printDrill(stdout, rep)
	}
	return code
}

func status(sock string) (director.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := director.Call(ctx, sock, director.Request{Op: "status"})
	if err != nil {
		return director.Status{}, err
	}
	return *r.Status, nil
}

func drill(site *config.Site, sock string, targets []string, back bool, maxOutage, every, probeTimeout, timeout time.Duration, force, checkOnly bool, rep *drillReport) int {
	fail := func(format string, a ...any) int {
		rep.Failure = fmt.Sprintf(format, a...)
		return 1
	}
	st, err := status(sock)
	if err != nil {
		return fail("%v", err)
	}
	rep.From = st.Node
	// Which instance: the named one, or the one this director is master of.
	var inst *director.InstanceStatus
	for i := range st.Instances {
		in := &st.Instances[i]
		if rep.Instance == "" && in.State == "master" || in.Name == rep.Instance {
			inst = in
			break
		}
	}
	switch {
	case inst == nil && rep.Instance != "":
		return fail("no instance %q on %s", rep.Instance, st.Node)
	case inst == nil:
		return fail("%s is master of no instance: run the drill on the master", st.Node)
	case inst.State != "master":
		return fail("%s is %s of %s, not master: run the drill on the master (%s)", st.Node, inst.State, inst.Name, inst.MasterAddr)
	}
	rep.Instance = inst.Name

	// Preflight: the same site everywhere, every director present, the
	// backups' health views and IPVS tables equal to ours.
	problems := preflight(site, st, inst.Name)
	rep.Preflight = problems
	if len(problems) > 0 && !force {
		return fail("preflight found %d problem(s); fix them or use --force", len(problems))
	}
	if checkOnly {
		rep.OK = true
		return 0
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ps []*prober
	for _, t := range targets {
		p := &prober{target: t, every: every, timeout: probeTimeout}
		ps = append(ps, p)
		go p.run(ctx)
	}
	// Every probe must answer before the drill, or there is nothing to
	// measure.
	warm := time.Now()
	for _, p := range ps {
		for !p.okSince(warm) {
			if time.Since(warm) > 5*time.Second {
				return fail("probe %s does not answer before the drill: nothing to measure", p.target)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t0 := time.Now()
	ev := func(at time.Time, what string) {
		rep.Timeline = append(rep.Timeline, drillEvent{AtMS: ms(at.Sub(t0)), Event: what})
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = director.Call(cctx, sock, director.Request{Op: "handover", Instance: inst.Name})
	ccancel()
	if err != nil {
		return fail("handover: %v", err)
	}
	ev(t0, fmt.Sprintf("%s resigned %s with a priority-0 advert", st.Node, inst.Name))

	// Wait for another director to be master and every probe to answer.
	deadline := t0.Add(timeout)
	var newMaster string
	var detail director.PeerInstance
	for time.Now().Before(deadline) {
		if s, err := status(sock); err == nil {
			for _, p := range s.Peers {
				if d, ok := p.InstanceDetail[inst.Name]; ok && d.State == "master" && !d.Since.Before(t0.Add(-time.Second)) {
					newMaster, detail = p.Name, d
				}
			}
		}
		allOK := true
		for _, p := range ps {
			allOK = allOK && p.okSince(t0.Add(time.Millisecond))
		}
		if newMaster != "" && !detail.FirstGARP.IsZero() && allOK {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if newMaster == "" {
		_ = resume(sock, inst.Name)
		return fail("no other director became master of %s within %v (handed back)", inst.Name, timeout)
	}
	rep.To = newMaster
	ev(detail.Since, newMaster+" master")
	if !detail.VIPsAdded.IsZero() {
		ev(detail.VIPsAdded, newMaster+" added the VIPs")
	}
	if !detail.FirstGARP.IsZero() {
		ev(detail.FirstGARP, newMaster+" sent the first GARP/NA")
	}
	time.Sleep(500 * time.Millisecond) // let the probes see the settled state
	for _, p := range ps {
		pr := p.report(t0)
		rep.Probes = append(rep.Probes, pr)
		if pr.FirstOKMS >= 0 {
			ev(t0.Add(time.Duration(pr.FirstOKMS*float64(time.Millisecond))), "first answer after the step-down: "+p.target)
		}
	}

	if back {
		t1 := time.Now()
		if err := resume(sock, inst.Name); err != nil {
			return fail("hand back: %v", err)
		}
		ev(t1, fmt.Sprintf("%s resumed its priority (hand back)", st.Node))
		ok := false
		for time.Now().Before(t1.Add(timeout)) {
			if s, err := status(sock); err == nil {
				for _, in := range s.Instances {
					if in.Name == inst.Name && in.State == "master" {
						ok = true
					}
				}
			}
			if ok {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !ok {
			return fail("%s did not become master again within %v", st.Node, timeout)
		}
		rep.Back = &drillBack{TookMS: ms(time.Since(t1))}
		ev(time.Now(), st.Node+" master again")
		time.Sleep(500 * time.Millisecond)
		for i, p := range ps {
			b := p.report(t1)
			rep.Probes[i].OutageMS = max(rep.Probes[i].OutageMS, b.OutageMS)
			rep.Probes[i].Sent += b.Sent
			rep.Probes[i].Failed += b.Failed
		}
	} else {
		// With preemption the old master would take over again at once;
		// it stays a backup until the operator says so.
		rep.Held = true
	}
	sort.SliceStable(rep.Timeline, func(i, j int) bool { return rep.Timeline[i].AtMS < rep.Timeline[j].AtMS })
	for _, p := range rep.Probes {
		if maxOutage > 0 && p.OutageMS > ms(maxOutage) {
			return fail("probe %s saw an interruption of %.0f ms (limit %v)", p.Target, p.OutageMS, maxOutage)
		}
	}
	rep.OK = true
	return 0
}

func resume(sock, inst string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := director.Call(ctx, sock, director.Request{Op: "resume", Instance: inst})
	return err
}

// preflight lists what would make the drill's answer meaningless or risky.
func preflight(site *config.Site, st director.Status, inst string) []string {
	var out []string
	if st.Digest != site.Digest() {
		out = append(out, fmt.Sprintf("the daemon runs digest %.12s but %s has %.12s: reload it first", st.Digest, site.File, site.Digest()))
	}
	for _, w := range st.Warnings {
		out = append(out, "daemon warns: "+w)
	}
	peers := map[string]director.PeerStatus{}
	for _, p := range st.Peers {
		peers[p.Name] = p
	}
	backups := 0
	for _, d := range site.Directors {
		if d.Name == st.Node {
			continue
		}
		p, ok := peers[d.Name]
		switch {
		case !ok || !p.Alive:
			out = append(out, fmt.Sprintf("director %s is not present on the cluster channel", d.Name))
			continue
		case p.Digest != st.Digest:
			out = append(out, fmt.Sprintf("director %s runs another site file (digest %.12s, ours %.12s)", d.Name, p.Digest, st.Digest))
		}
		if s := p.Instances[inst]; s == "backup" {
			backups++
		}
		if diff := healthDiff(st.Health, p.Health); diff != "" {
			out = append(out, fmt.Sprintf("director %s sees other real-server health: %s", d.Name, diff))
		}
		if p.IPVSDigest != st.IPVSDigest {
			out = append(out, fmt.Sprintf("director %s has another IPVS table (digest %.12s, ours %.12s)", d.Name, p.IPVSDigest, st.IPVSDigest))
		}
	}
	if backups == 0 {
		out = append(out, fmt.Sprintf("no director is backup of %s: nobody would take over", inst))
	}
	return out
}

func healthDiff(a, b map[string]bool) string {
	var diffs []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			diffs = append(diffs, fmt.Sprintf("%s ours=%v theirs=%v", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, k+" unknown here")
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}

func printDrill(w io.Writer, r drillReport) {
	fmt.Fprintf(w, "drill of instance %s: %s -> %s\n", r.Instance, r.From, dashIf(r.To))
	if len(r.Preflight) == 0 {
		fmt.Fprintln(w, "preflight: ok (same site file everywhere, every director present, same health and IPVS table)")
	} else {
		fmt.Fprintln(w, "preflight problems:")
		for _, p := range r.Preflight {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	if len(r.Timeline) > 0 {
		fmt.Fprintln(w, "timeline (ms after the step-down; the peer's events on its clock):")
		for _, e := range r.Timeline {
			fmt.Fprintf(w, "  %+9.1f  %s\n", e.AtMS, e.Event)
		}
	}
	for _, p := range r.Probes {
		fmt.Fprintf(w, "probe %s: %d sent, %d failed, longest interruption %.1f ms, answered by %s\n",
			p.Target, p.Sent, p.Failed, p.OutageMS, dashIf(p.Answered))
	}
	if r.Back != nil {
		fmt.Fprintf(w, "handed back: master again after %.0f ms\n", r.Back.TookMS)
	}
	if r.Held {
		fmt.Fprintf(w, "%s stays backup (held at priority 1): `vigil drill --resume` gives it its priority back\n", r.From)
	}
	if r.OK && len(r.Timeline) == 0 {
		fmt.Fprintln(w, "preflight only: a drill could run now")
	} else if r.OK {
		fmt.Fprintln(w, "drill: OK")
	} else {
		fmt.Fprintf(w, "drill: FAILED: %s\n", r.Failure)
	}
}

func dashIf(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
