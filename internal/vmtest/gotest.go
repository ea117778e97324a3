package vmtest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// GuestTests describes a run of Go tests inside the guest.
type GuestTests struct {
	// Package is the package whose test binary runs in the guest, as
	// `go test -c` takes it ("." = the package of the calling test).
	Package string
	// Run is the -test.run pattern, e.g. "^TestGuest".
	Run string
	// Options for the guest; Script is set by RunGuestTests and Files gets
	// /bin/guest.test added. Timeout defaults to 10 minutes.
	Options Options
	// Args are extra arguments for the test binary.
	Args []string
}

// RunGuestTests builds the test binary of g.Package statically, lists the
// top-level tests matching g.Run, boots one guest and runs them there with
// -test.v. The console is streamed into the test log, prefixed "guest| ",
// when go test runs with -v. It fails t unless every listed test reported
// PASS (so a binary that ran nothing, crashed or skipped fails too) and
// returns the guest's result.
func RunGuestTests(t testing.TB, g GuestTests) Result {
	t.Helper()
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "guest.test")
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err := BuildTestBinary(bctx, g.Package, bin)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-test.list", g.Run).Output()
	if err != nil {
		t.Fatalf("list tests of %s: %v", g.Package, err)
	}
	var tests []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "Test") {
			tests = append(tests, l)
		}
	}
	if len(tests) == 0 {
		t.Fatalf("no tests in %s match %q", g.Package, g.Run)
	}
	o := g.Options
	files := map[string]string{"/bin/guest.test": bin}
	for k, v := range o.Files {
		files[k] = v
	}
	o.Files = files
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	args := []string{"/bin/guest.test", "-test.v", "-test.count=1", "-test.timeout=" + (o.Timeout - 30*time.Second).String(), "-test.run", shellQuote(g.Run)}
	for _, a := range g.Args {
		args = append(args, shellQuote(a))
	}
	o.Script = strings.Join(args, " ") + "\n"
	if o.Output == nil && testing.Verbose() {
		o.Output = &PrefixWriter{W: os.Stdout, Prefix: "guest| "}
	}
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest ran %d tests of %s in %v (exit %d)", len(tests), g.Package, res.Duration.Round(time.Second), res.ExitCode)
	status := TestResults(res.Output)
	failed := false
	for _, name := range tests {
		if s := status[name]; s != "PASS" {
			failed = true
			if s == "" {
				s = "no result"
			}
			t.Errorf("guest test %s: %s", name, s)
		}
	}
	for name, s := range status {
		if s == "FAIL" && strings.Contains(name, "/") {
			t.Errorf("guest subtest %s: FAIL", name)
		}
	}
	if res.ExitCode != 0 || failed {
		if !testing.Verbose() {
			t.Logf("guest console (tail):\n%s", lastLines(res.Output, 200))
		}
		t.Fatalf("guest test binary exited %d", res.ExitCode)
	}
	return res
}

var testResultLine = regexp.MustCompile(`(?m)^\s*--- (PASS|FAIL|SKIP): (\S+)`)

// TestResults maps each test and subtest name in go test -v output to
// PASS, FAIL or SKIP.
func TestResults(out string) map[string]string {
	status := map[string]string{}
	for _, m := range testResultLine.FindAllStringSubmatch(out, -1) {
		status[m[2]] = m[1]
	}
	return status
}

// PrefixWriter writes each complete line to W with Prefix in front (so a
// tier runner counting "--- PASS" lines does not count guest lines).
type PrefixWriter struct {
	W      io.Writer
	Prefix string

	mu   sync.Mutex
	part []byte
}

func (p *PrefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.part = append(p.part, b...)
	for {
		i := strings.IndexByte(string(p.part), '\n')
		if i < 0 {
			return len(b), nil
		}
		if _, err := io.WriteString(p.W, p.Prefix+string(p.part[:i+1])); err != nil {
			return 0, err
		}
		p.part = p.part[i+1:]
	}
}
