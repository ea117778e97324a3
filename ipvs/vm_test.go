package ipvs_test

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/testenv"
	"github.com/vigil-lb/vigil/internal/vmtest"
)

// guestPrograms are the host tools the in-guest tests call.
var guestPrograms = []string{"/usr/sbin/ipvsadm", "/sbin/ip"}

// TestVMIPVS boots one guest and runs every TestGuest* test of this
// package there, against real IPVS. It fails unless each of them passed.
func TestVMIPVS(t *testing.T) {
	testenv.NeedVM(t)
	vmtest.RunGuestTests(t, vmtest.GuestTests{
		Package: ".",
		Run:     "^TestGuest",
		Options: vmtest.Options{HostPrograms: guestPrograms, Timeout: 10 * time.Minute},
	})
}

// buildGuestBinary builds this package's test binary statically (for the
// benchmark, which runs a benchmark rather than tests in the guest).
func buildGuestBinary(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "ipvs.test")
	if err := vmtest.BuildTestBinary(ctx, ".", bin); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-test.list", "^BenchmarkGuestReconcile$").Output(); err != nil || !strings.Contains(string(out), "BenchmarkGuestReconcile") {
		t.Fatalf("test binary lacks BenchmarkGuestReconcile: %v %s", err, out)
	}
	return bin
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
