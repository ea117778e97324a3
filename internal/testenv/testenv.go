// Package testenv decides whether a test that needs root, network
// namespaces, external programs or QEMU can run here.
//
// Tests are split into tiers by name and by the helpers below:
//
//	unit   plain go test, no privileges (every other test)
//	netns  root, network namespaces on the host kernel: tests named
//	       TestNetns* that call NeedNetns
//	vm     root + qemu, real IPVS in a guest: tests named TestVM* that
//	       call NeedVM
//
// The tier runner (scripts/test.sh) sets VIGIL_TIER to the tier it is
// running, so each test runs in exactly one tier, and VIGIL_STRICT=1 under
// CI, which turns every "cannot run here" skip into a failure: under CI
// nothing may be skipped silently.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// Tier names.
const (
	Netns = "netns"
	VM    = "vm"
)

// Strict reports whether missing prerequisites must fail instead of skip.
func Strict() bool { return os.Getenv("VIGIL_STRICT") == "1" }

// tier is the tier being run, or "" when go test runs everything.
func tier() string { return os.Getenv("VIGIL_TIER") }

// cannot skips t, or fails it in strict mode, saying what is missing.
func cannot(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatalf("required prerequisite missing (VIGIL_STRICT=1): %s", msg)
	}
	t.Skipf("skipping: %s", msg)
}

// inTier skips t when the runner is running another tier. That skip is
// never an error: the test runs in its own tier.
func inTier(t testing.TB, want string) {
	t.Helper()
	if got := tier(); got != "" && got != want {
		t.Skipf("runs in the %s tier (this is the %s tier)", want, got)
	}
}

// NeedNetns marks t as a netns-tier test: it needs root (CAP_NET_ADMIN,
// CAP_NET_RAW) and the ip command, plus any extra programs named.
func NeedNetns(t testing.TB, programs ...string) {
	t.Helper()
	inTier(t, Netns)
	if os.Geteuid() != 0 {
		cannot(t, "needs root for network namespaces (run: sudo make test)")
	}
	for _, p := range append([]string{"ip"}, programs...) {
		if _, err := exec.LookPath(p); err != nil {
			cannot(t, "needs %s on PATH (apt-get install the package that has it; sudo make test installs it)", p)
		}
	}
}

// NeedVM marks t as a vm-tier test: it needs root and qemu-system-x86_64.
// The guest kernel is fetched by internal/vmtest.
func NeedVM(t testing.TB) {
	t.Helper()
	inTier(t, VM)
	if os.Geteuid() != 0 {
		cannot(t, "needs root to run the QEMU guest harness (run: sudo make test)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		cannot(t, "needs qemu-system-x86_64 (apt-get install qemu-system-x86 busybox-static)")
	}
}

// NeedCgo is for tests of code that only exists in a cgo build (the
// advert pacer). A build made pure Go on purpose (CGO_ENABLED=0 in the
// environment) skips: it has its own tests. Any other build without cgo
// means go found no C compiler and quietly built pure Go, which ships
// without the pacer: that fails in strict mode.
func NeedCgo(t testing.TB) {
	t.Helper()
	if cgoBuild() {
		return
	}
	if os.Getenv("CGO_ENABLED") == "0" {
		t.Skip("built with CGO_ENABLED=0: this tests the cgo build")
	}
	cannot(t, "built without cgo although CGO_ENABLED is not 0: no C compiler? (apt-get install gcc)")
}

// cgoBuild reports whether this test binary was built with cgo.
func cgoBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "CGO_ENABLED" {
			return s.Value == "1"
		}
	}
	return false
}

// NeedRoot is for tests that need root's capabilities outside a network
// namespace (for example CAP_SYS_NICE for a real-time thread); why says
// what for.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		cannot(t, "needs root: %s (run: sudo make test)", why)
	}
}

// Threads returns the IDs of this process's threads, for tests of what
// the process sets per thread (niceness, scheduling class).
func Threads(t testing.TB) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var tids []int
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids
}

// ThreadFile reads /proc/self/task/<tid>/<name>; ok is false when the
// thread has ended meanwhile.
func ThreadFile(tid int, name string) (b []byte, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/%s", tid, name))
	return b, err == nil
}

// ThreadsNamed returns the IDs of this process's threads whose name
// (comm, as prctl PR_SET_NAME sets it) is name: for tests of code that
// runs threads of its own outside the Go runtime.
func ThreadsNamed(t testing.TB, name string) []int {
	t.Helper()
	var tids []int
	for _, tid := range Threads(t) {
		if b, ok := ThreadFile(tid, "comm"); ok && strings.TrimSpace(string(b)) == name {
			tids = append(tids, tid)
		}
	}
	return tids
}
