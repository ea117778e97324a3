package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/director"
)

const drillSite = "../../examples/nat.toml"

// daemon is the control side of a director: the status it reports, and
// the resumes it got.
type daemon struct {
	st      director.Status
	mu      sync.Mutex
	resumed []string
}

func (d *daemon) Status() director.Status    { return d.st }
func (d *daemon) Reload() error              { return errors.New("no reload in a drill") }
func (d *daemon) Handover(inst string) error { return errors.New("no handover in these tests") }
func (d *daemon) Resume(inst string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resumed = append(d.resumed, inst)
	return nil
}

// serveDaemon serves, on a real control socket, the status of the first
// director of drillSite as master of the first instance, with the other
// director a healthy backup: a drill could run.
func serveDaemon(t *testing.T) (*daemon, string) {
	t.Helper()
	site, err := config.Load(drillSite)
	if err != nil {
		t.Fatal(err)
	}
	inst := site.Instances[0].Name
	st := director.Status{Node: site.Directors[0].Name, Digest: site.Digest(),
		Instances: []director.InstanceStatus{{Name: inst, State: "master"}}}
	for _, d := range site.Directors[1:] {
		st.Peers = append(st.Peers, director.PeerStatus{Name: d.Name, Alive: true, Digest: site.Digest(), Instances: map[string]string{inst: "backup"}})
	}
	d := &daemon{st: st}
	dir, err := os.MkdirTemp("", "vd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := director.ServeControl(ctx, sock, d, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return d, sock
}

func drillCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runDrill(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestDrillFlags: every flag of `vigil drill` is there, and --instance
// says what the drill does without it.
func TestDrillFlags(t *testing.T) {
	code, _, usage := drillCmd("-h")
	if code != 2 {
		t.Errorf("-h: exit %d, want 2", code)
	}
	for _, f := range []string{"-c ", "-socket ", "-instance ", "-probe ", "-back\n", "-json\n", "-max-outage ", "-probe-every ", "-probe-timeout ", "-timeout ", "-force\n", "-resume\n", "-check\n"} {
		if !strings.Contains(usage, "  "+f) {
			t.Errorf("usage lacks %q:\n%s", f, usage)
		}
	}
	for _, want := range []string{"the first instance, in status order, this director is master of", `(default 10ms)`, `(default 1s)`, `(default 30s)`} {
		if !strings.Contains(usage, want) {
			t.Errorf("usage lacks %q:\n%s", want, usage)
		}
	}
}

func TestDrillExitCodes(t *testing.T) {
	_, sock := serveDaemon(t)
	none := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		wantOut    string
		wantStderr string
	}{
		{"bad flag", []string{"--no-such-flag"}, 2, "", "flag provided but not defined"},
		{"no site file", []string{"-c", filepath.Join(t.TempDir(), "none.toml")}, 2, "", "vigil drill: "},
		{"check: a drill could run", []string{"-c", drillSite, "--socket", sock, "--check"}, 0, "preflight only: a drill could run now\n", ""},
		{"check: no such instance", []string{"-c", drillSite, "--socket", sock, "--check", "--instance", "mail"}, 1, `drill: FAILED: no instance "mail" on lb1`, ""},
		{"no daemon", []string{"-c", drillSite, "--socket", none, "--check"}, 1, "drill: FAILED: read status: no vigil daemon at " + none, ""},
		{"resume", []string{"-c", drillSite, "--socket", sock, "--resume"}, 0, "resumed: this director is back in the election at its configured priority\n", ""},
		{"resume without a daemon", []string{"-c", drillSite, "--socket", none, "--resume"}, 1, "", "vigil drill --resume: no vigil daemon at " + none},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := drillCmd(tc.args...)
			if code != tc.code || !strings.Contains(out, tc.wantOut) || !strings.Contains(errs, tc.wantStderr) {
				t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout with %q, stderr with %q", code, out, errs, tc.code, tc.wantOut, tc.wantStderr)
			}
		})
	}
}

// TestDrillResumeEveryInstance: --resume without --instance resumes every
// instance (the daemon reads "" as all).
func TestDrillResumeEveryInstance(t *testing.T) {
	d, sock := serveDaemon(t)
	if code, _, errs := drillCmd("-c", drillSite, "--socket", sock, "--resume"); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if code, _, errs := drillCmd("-c", drillSite, "--socket", sock, "--resume", "--instance", "gateway"); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if got := strings.Join(d.resumed, ","); got != ",gateway" {
		t.Errorf("daemon resumed %q, want every instance then gateway", got)
	}
}

func TestDrillJSON(t *testing.T) {
	_, sock := serveDaemon(t)
	code, out, errs := drillCmd("-c", drillSite, "--socket", sock, "--check", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	if rep["ok"] != true || rep["instance"] != "external" || rep["from"] != "lb1" {
		t.Errorf("report %v; want ok, instance external, from lb1", rep)
	}
}
