package ipvs_test

import (
	"bufio"
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

	"github.com/vigil-lb/vigil/internal/testenv"
	"github.com/vigil-lb/vigil/internal/vmtest"
)

// guestPrograms are the host tools the in-guest tests call.
var guestPrograms = []string{"/usr/sbin/ipvsadm", "/sbin/ip"}

// buildGuestBinary builds this package's test binary statically and lists
// the TestGuest* tests it holds.
func buildGuestBinary(t testing.TB) (bin string, tests []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin = filepath.Join(t.TempDir(), "ipvs.test")
	if err := vmtest.BuildTestBinary(ctx, ".", bin); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-test.list", "^TestGuest").Output()
	if err != nil {
		t.Fatalf("list guest tests: %v", err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "TestGuest") {
			tests = append(tests, l)
		}
	}
	return bin, tests
}

// prefixWriter streams the guest console into the test log line by line,
// prefixed so that the tier runner does not count guest lines as host tests.
type prefixWriter struct {
	mu   sync.Mutex
	w    io.Writer
	part []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.part = append(p.part, b...)
	for {
		i := strings.IndexByte(string(p.part), '\n')
		if i < 0 {
			return len(b), nil
		}
		io.WriteString(p.w, "guest| "+string(p.part[:i+1]))
		p.part = p.part[i+1:]
	}
}

// TestVMIPVS boots one guest and runs every TestGuest* test of this
// package there, against real IPVS. It fails unless each of them passed.
func TestVMIPVS(t *testing.T) {
	testenv.NeedVM(t)
	bin, tests := buildGuestBinary(t)
	if len(tests) < 4 {
		t.Fatalf("only %d guest tests found: %v", len(tests), tests)
	}
	var console io.Writer = io.Discard
	if testing.Verbose() {
		console = &prefixWriter{w: os.Stdout}
	}
	res, err := vmtest.Run(context.Background(), vmtest.Options{
		Files:        map[string]string{"/bin/ipvs.test": bin},
		HostPrograms: guestPrograms,
		Script:       "/bin/ipvs.test -test.v -test.count=1 -test.timeout=8m -test.run '^TestGuest'\n",
		Timeout:      10 * time.Minute,
		Output:       console,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest ran %d tests in %v (exit %d)", len(tests), res.Duration.Round(time.Second), res.ExitCode)
	checkGuestResults(t, res, tests)
}

var guestResult = regexp.MustCompile(`(?m)^\s*--- (PASS|FAIL|SKIP): (\S+)`)

func checkGuestResults(t *testing.T, res vmtest.Result, tests []string) {
	t.Helper()
	status := map[string]string{}
	for _, m := range guestResult.FindAllStringSubmatch(res.Output, -1) {
		status[m[2]] = m[1]
	}
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
			t.Logf("guest console:\n%s", tail(res.Output, 200))
		}
		t.Fatalf("guest test binary exited %d", res.ExitCode)
	}
}

func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
