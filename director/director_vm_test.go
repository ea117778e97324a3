package director_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/testenv"
	"github.com/vigil-lb/vigil/internal/vmtest"
)

// tlogWriter streams the guest's console into the test log line by line.
type tlogWriter struct {
	t   *testing.T
	buf []byte
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.t.Log(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// TestVMSite runs the seed's WWW + Telnet site end to end on real IPVS in a
// QEMU guest: client, vs1, vs2, rs1, rs2 in namespaces on a bridge, two
// real vigil daemons, LVS-DR real servers. examples/lab/tour.sh does the
// steps and checks each one (both real servers reachable on both ports;
// a failed web server dropped by both directors and restored after rise;
// a reload that changes a check interval causes no transition; a broken
// reload changes nothing; the master killed, vs2 serves; vs1 back and
// preempting with a bounded interruption). The demo runs the same tour.
func TestVMSite(t *testing.T) {
	testenv.NeedVM(t)
	res, err := runLab(t, 12*time.Minute, "tour.sh", map[string]string{
		"/lab/site.toml": "../examples/lab/site.toml",
	}, map[string]string{"SITE": "/lab/site.toml"})
	if err != nil {
		t.Fatalf("guest: %v", err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("the tour failed in the guest (exit %d); see the console above", res.ExitCode)
	}
	for _, want := range []string{"WWW balanced over rs1 and rs2", "vs2 serves the client", "vs1 is master again"} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	t.Logf("guest ran the tour in %v", res.Duration.Round(time.Second))
}

// runLab runs one of examples/lab's scenario scripts in a QEMU guest:
// vigil and labsrv built static, lab.sh and the script at /lab, extra
// files (guest path -> path from this package) and environment added to
// what lab.sh needs. The guest gets limit minus two minutes for building.
func runLab(t *testing.T, limit time.Duration, script string, files, env map[string]string) (vmtest.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	dir := t.TempDir()
	vigil, labsrv := filepath.Join(dir, "vigil"), filepath.Join(dir, "labsrv")
	if err := vmtest.BuildStatic(ctx, "../cmd/vigil", vigil); err != nil {
		t.Fatal(err)
	}
	if err := vmtest.BuildStatic(ctx, "../examples/lab/labsrv", labsrv); err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	ipPath := "/sbin/ip"
	if _, err := os.Stat(ipPath); err != nil {
		ipPath = "/usr/sbin/ip"
	}
	fs := map[string]string{
		"/bin/vigil": vigil, "/bin/labsrv": labsrv,
		"/lab/lab.sh": abs("../examples/lab/lab.sh"), "/lab/" + script: abs("../examples/lab/" + script),
	}
	for g, p := range files {
		fs[g] = abs(p)
	}
	e := map[string]string{
		"IP": ipPath, "VIGIL": "/bin/vigil", "LABSRV": "/bin/labsrv",
		"IPVSADM": "/usr/sbin/ipvsadm", "RUNDIR": "/tmp/vlab",
	}
	for k, v := range env {
		e[k] = v
	}
	return vmtest.Run(ctx, vmtest.Options{
		Files:        fs,
		HostPrograms: []string{"/usr/sbin/ipvsadm", ipPath},
		Script:       "sh /lab/" + script,
		Env:          e,
		MemoryMB:     1024,
		CPUs:         2,
		Timeout:      limit - 2*time.Minute,
		Output:       &tlogWriter{t: t},
	})
}
