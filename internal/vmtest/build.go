package vmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildStatic builds pkg (an import path or ./relative path, resolved from
// the current directory) into out as a static binary for the guest.
func BuildStatic(ctx context.Context, pkg, out string) error {
	return goBuild(ctx, "build", "-o", out, pkg)
}

// BuildTestBinary builds the test binary of pkg into out, statically.
// Run it in the guest with -test.v, -test.run and friends.
func BuildTestBinary(ctx context.Context, pkg, out string) error {
	return goBuild(ctx, "test", "-c", "-o", out, pkg)
}

func goBuild(ctx context.Context, args ...string) error {
	goBin := "go"
	if p, err := exec.LookPath("go"); err == nil {
		goBin = p
	} else if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		goBin = "/usr/local/go/bin/go"
	}
	full := append([]string{args[0], "-buildvcs=false", "-trimpath"}, args[1:]...)
	cmd := exec.CommandContext(ctx, goBin, full...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return nil
}

// KernelDir returns the unpacked Debian kernel package for the guest:
// $VIGIL_VM_KERNEL_DIR if set, else what scripts/vm-kernel.sh prints (it
// downloads once and caches outside the repository).
func KernelDir() (string, error) {
	if d := os.Getenv("VIGIL_VM_KERNEL_DIR"); d != "" {
		return d, nil
	}
	script, err := findRepoFile("scripts/vm-kernel.sh")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(script).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		return "", fmt.Errorf("vmtest: %s: %v\n%s", script, err, msg)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := lines[len(lines)-1]
	if _, err := os.Stat(filepath.Join(dir, "boot")); err != nil {
		return "", fmt.Errorf("vmtest: %s printed %q, which has no boot/", script, dir)
	}
	return dir, nil
}

// findRepoFile looks for rel in the current directory and its parents.
func findRepoFile(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("vmtest: %s not found in any parent of the current directory", rel)
		}
		dir = parent
	}
}
