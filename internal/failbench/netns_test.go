package failbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/testenv"
)

// TestNetnsKeepalivedFailover runs the whole harness once per failure kind
// against keepalived at 100 ms adverts: the lab, responders, agent,
// failover, recovery and the usage window all have to work for it to pass.
// It checks that figures were measured, never how fast they are.
func TestNetnsKeepalivedFailover(t *testing.T) {
	testenv.NeedNetns(t, "keepalived")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Config{
		RigConfig: RigConfig{Self: self, WorkDir: t.TempDir(), Port: 8080, Every: 5 * time.Millisecond,
			Timeout: 250 * time.Millisecond, Version: 3, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Impls:           []Impl{Keepalived{}},
		Adverts:         []time.Duration{100 * time.Millisecond},
		Kinds:           []string{Crash, Stop},
		Runs:            1,
		ResourceAdverts: []time.Duration{100 * time.Millisecond},
		ResourceWindow:  time.Second,
	}
	rep := Bench(ctx, cfg)
	if len(rep.Cases) != 2 {
		t.Fatalf("%d cases, want 2", len(rep.Cases))
	}
	for _, c := range rep.Cases {
		if c.Err != "" || len(c.Runs) != 1 {
			t.Fatalf("%s %s: err %q, %d runs", c.Kind, c.Advert, c.Err, len(c.Runs))
		}
		r := c.Runs[0]
		if r.Err != "" {
			t.Fatalf("%s run: %s", c.Kind, r.Err)
		}
		if r.Outage <= 0 || r.LastAdvert <= 0 || r.Takeover <= 0 || r.Announce <= 0 || r.PreemptTime <= 0 {
			t.Errorf("%s run: a figure was not measured: %+v", c.Kind, r)
		}
		// The new master cannot answer before it has announced itself.
		if r.LastAdvert < r.Takeover {
			t.Errorf("%s run: answer before the new master's first advert: %+v", c.Kind, r)
		}
		if c.Kind == Stop && r.VIPLeft {
			t.Errorf("keepalived left the VIP behind on stop")
		}
		// keepalived drops the VIP with its priority-0 advert and the
		// backup waits its skew (61 ms) before it answers: the planned
		// handover's window must see that interruption.
		if skew := Skew(100*time.Millisecond, 100, 3); c.Kind == Stop && (r.Gap < skew/2 || r.WindowFailed == 0) {
			t.Errorf("stop: largest gap %v with %d failed probes; keepalived's stop interrupts for about %v", r.Gap, r.WindowFailed, skew)
		}
	}
	if len(rep.Usage) != 2 {
		t.Fatalf("usage rows %+v", rep.Usage)
	}
	for _, u := range rep.Usage {
		if u.Err != "" || u.RSSKB <= 0 || u.Procs < 1 {
			t.Errorf("usage %s: %+v", u.Role, u)
		}
	}
}

// plannedBound is the largest client gap TestNetnsVigilPlannedHandover
// accepts: generous for a noisy 2-core VM; the benchmark's target is 20 ms
// (docs/failover-benchmark.md has the measured figures).
const plannedBound = 100 * time.Millisecond

// TestNetnsVigilPlannedHandover runs vigil's planned handover, SIGTERM of
// the master and the control socket's "handover" (what `vigil drill`
// sends), at 1 s, 100 ms and 10 ms adverts, and fails unless the client
// saw no failed probe and no gap of plannedBound or more in any run: the
// make-before-break promise. keepalived, which drops the VIP with its
// priority-0 advert, fails this by the RFC's skew (see the test above).
func TestNetnsVigilPlannedHandover(t *testing.T) {
	testenv.NeedNetns(t)
	bin := buildVigil(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	work := t.TempDir()
	cfg := Config{
		RigConfig: RigConfig{Self: self, WorkDir: work, Port: 8080, Every: 5 * time.Millisecond,
			Timeout: 250 * time.Millisecond, Version: 3, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Impls: []Impl{Vigil{Binary: bin}},
		Kinds: []string{Stop, Handover},
	}
	var cases []Case
	// Fewer runs at 1 s adverts: a run there costs about 10 s (the old
	// master's return waits for Master_Down), one at 10 ms about 1 s.
	for _, c := range []struct {
		advert time.Duration
		runs   int
	}{{time.Second, 2}, {100 * time.Millisecond, 4}, {10 * time.Millisecond, 4}} {
		cfg.Adverts, cfg.Runs = []time.Duration{c.advert}, c.runs
		rep := Bench(ctx, cfg)
		if len(rep.Cases) != len(cfg.Kinds) {
			t.Fatalf("%v: %d cases, want %d (notes %v)", c.advert, len(rep.Cases), len(cfg.Kinds), rep.Notes)
		}
		cases = append(cases, rep.Cases...)
	}
	var b strings.Builder
	(&Report{Cases: cases}).Print(&b)
	t.Logf("measured (the benchmark's target: 0 failed probes, largest gap under 20 ms):\n%s", b.String())
	for _, c := range cases {
		label := fmt.Sprintf("%s %s", c.Advert, c.Kind)
		if c.Err != "" {
			t.Errorf("%s: %s", label, c.Err)
		}
		for i, r := range c.Runs {
			t.Logf("%s run %d: failed %d %v, largest gap %v (no probe sent for %v of it; idle %v), switch %v, request->new %v, VIP claimed at %v and released at %v, waited %v for the successor, VIP left %v",
				label, i+1, r.WindowFailed, r.WindowErrors, r.Gap, r.GapQuiet, r.IdleGap, r.Switch, r.Outage, r.Claimed, r.Released, r.ReadyWait, r.VIPLeft)
			bad := ""
			switch {
			case r.Err != "":
				bad = "run failed: " + r.Err
			case r.WindowFailed > 0:
				bad = fmt.Sprintf("%d probes failed (%v)", r.WindowFailed, r.WindowErrors)
			case r.Gap <= 0:
				bad = "no gap measured"
			case r.Gap-r.GapQuiet+cfg.Every >= plannedBound:
				// Only the time the client was asking counts: a stretch
				// in which the agent sent no probe at all is this machine
				// not running it, not the service failing to answer.
				bad = fmt.Sprintf("largest gap %v (the client sent no probe for %v of it), want under %v", r.Gap, r.GapQuiet, plannedBound)
			case r.VIPLeft:
				bad = "the old master kept the VIP after the handover"
			case r.Claimed <= 0 || r.Released <= r.Claimed:
				// Make-before-break itself: the new master holds the VIP
				// before the old one lets it go.
				bad = fmt.Sprintf("not make-before-break: VIP claimed at %v, released at %v after the request", r.Claimed, r.Released)
			}
			if bad != "" {
				t.Errorf("%s run %d: %s\n%s", label, i+1, bad, traceOf(work, c, i))
			}
		}
	}
}

// traceOf is the trace failbench wrote for run i of c, for a failure's
// message.
func traceOf(work string, c Case, i int) string {
	f := filepath.Join(work, fmt.Sprintf("%s-%s-%s", c.Impl, c.Advert, c.Kind), fmt.Sprintf("run-%02d.trace", i+1))
	b, err := os.ReadFile(f)
	if err != nil {
		return "no trace: " + err.Error()
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > 300 {
		lines = append(lines[:300], fmt.Sprintf("... %d more lines", len(lines)-300))
	}
	return f + ":\n" + strings.Join(lines, "\n")
}

// buildVigil builds cmd/vigil for the test: pure Go, or with cgo (the
// advert pacer, as make build ships it) when VIGIL_TEST_CGO=1, as the
// director's netns tests do.
func buildVigil(t *testing.T) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	bin := filepath.Join(t.TempDir(), "vigil")
	cmd := exec.Command(goBin, "build", "-o", bin, "../../cmd/vigil")
	cgo := "0"
	if os.Getenv("VIGIL_TEST_CGO") == "1" {
		cgo = "1"
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vigil: %v\n%s", err, out)
	}
	return bin
}
