package testenv

import (
	"os"
	"testing"
)

// GuestEnv is set to "1" by internal/vmtest's /init inside the QEMU guest
// (the same name as vmtest.GuestEnv; testenv must not import vmtest).
const GuestEnv = "VIGIL_VM_GUEST"

// InGuest reports whether this process runs inside the vmtest guest.
func InGuest() bool { return os.Getenv(GuestEnv) == "1" }

// NeedGuest marks t as a test that runs only inside the vmtest guest, where
// a TestVM* test on the host started it (real IPVS, root, a scratch
// kernel). Elsewhere it is skipped: never an error, even in strict mode,
// because its TestVM* driver is what the vm tier runs.
func NeedGuest(t testing.TB) {
	t.Helper()
	if !InGuest() {
		t.Skipf("runs only inside the vm-tier guest (%s=1), started by a TestVM* test", GuestEnv)
	}
}
