package vmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GuestEnv is set to "1" in the guest's environment (see testenv.NeedGuest).
const GuestEnv = "VIGIL_VM_GUEST"

// Options describe one guest run.
type Options struct {
	// Files maps a guest path to a host path (followed if a symlink):
	// static binaries, scripts, site files.
	Files map[string]string
	// HostPrograms are host executables copied to the same path in the
	// guest together with their shared libraries (from ldd) and the
	// dynamic loader, e.g. /usr/sbin/ipvsadm or /sbin/ip.
	HostPrograms []string
	// Modules are loaded in addition to DefaultModules and the IPVS
	// schedulers (names as in lsmod; dependencies are added).
	Modules []string
	// Script is run by /bin/sh (busybox) in the guest once the guest is
	// set up; its exit code is the result.
	Script string
	// Env is exported to the script. Keys must be shell identifiers.
	Env map[string]string
	// MemoryMB defaults to 512, CPUs to 1, Timeout to 10 minutes.
	MemoryMB int
	CPUs     int
	Timeout  time.Duration
	// Output, if set, receives the serial console (kernel messages, the
	// script's stdout and stderr) as it is produced, with \r removed.
	Output io.Writer
	// KernelDir overrides KernelDir() (an unpacked linux-image package).
	KernelDir string
}

// Result is what the guest reported.
type Result struct {
	ExitCode int           // the script's exit code
	Output   string        // the whole serial console, \r removed
	Duration time.Duration // from starting QEMU to its exit
}

// Run boots a guest, runs o.Script and returns its exit code. The error is
// non-nil only when no result was obtained: QEMU failed, the guest timed
// out, crashed or ended without printing the result marker.
func Run(ctx context.Context, o Options) (Result, error) {
	var res Result
	if o.Script == "" {
		return res, errors.New("vmtest: empty script")
	}
	for k := range o.Env {
		if !envKey.MatchString(k) {
			return res, fmt.Errorf("vmtest: env key %q is not a shell identifier", k)
		}
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = 512
	}
	if o.CPUs == 0 {
		o.CPUs = 1
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	kdir := o.KernelDir
	if kdir == "" {
		var err error
		if kdir, err = KernelDir(); err != nil {
			return res, err
		}
	}
	vmlinuz, err := filepath.Glob(filepath.Join(kdir, "boot", "vmlinuz-*"))
	if err != nil || len(vmlinuz) == 0 {
		return res, fmt.Errorf("vmtest: no boot/vmlinuz-* in %s", kdir)
	}
	tree, err := loadModuleTree(kdir)
	if err != nil {
		return res, fmt.Errorf("vmtest: %w", err)
	}
	wanted := append(append(append([]string{}, DefaultModules...), tree.schedulers()...), o.Modules...)
	mods, missing, err := tree.order(wanted)
	if err != nil {
		return res, fmt.Errorf("vmtest: module order: %w", err)
	}
	for _, m := range missing {
		for _, asked := range o.Modules {
			if normName(asked) == normName(m) {
				return res, fmt.Errorf("vmtest: module %s not found in %s", m, kdir)
			}
		}
	}
	base, err := baseArchive(kdir, tree, mods)
	if err != nil {
		return res, err
	}

	work, err := os.MkdirTemp("", "vigil-vm-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)
	nonce := randomHex(8)
	initrd := filepath.Join(work, "initrd.cpio")
	if err := writeInitrd(initrd, base, tree, mods, o, nonce); err != nil {
		return res, err
	}

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-m", strconv.Itoa(o.MemoryMB), "-smp", strconv.Itoa(o.CPUs),
		"-serial", "stdio", "-monitor", "none",
		"-kernel", vmlinuz[len(vmlinuz)-1], "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 oops=panic quiet loglevel=3 mitigations=off rdinit=/init",
	}
	if kvmUsable() {
		// arch-capabilities: nested KVM here rejects MSR 0x10a with -cpu host.
		args = append(args, "-accel", "kvm", "-cpu", "host,-arch-capabilities")
	} else {
		// qemu64 rather than max: emulated AVX made Go code (memclr,
		// memmove) slower under TCG; VIGIL_VM_CPU overrides.
		cpu := os.Getenv("VIGIL_VM_CPU")
		if cpu == "" {
			cpu = "qemu64"
		}
		args = append(args, "-accel", "tcg", "-cpu", cpu)
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var console bytes.Buffer
	sinks := []io.Writer{&console}
	if o.Output != nil {
		sinks = append(sinks, o.Output)
	}
	out := &crStripper{w: io.MultiWriter(sinks...)}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	res.Duration = time.Since(start)
	res.Output = console.String()
	code, found := parseMarker(res.Output, nonce)
	if found {
		res.ExitCode = code
		return res, nil
	}
	res.ExitCode = -1
	tail := lastLines(res.Output, 30)
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return res, fmt.Errorf("vmtest: guest timed out after %v; console tail:\n%s", o.Timeout, tail)
	case ctx.Err() != nil:
		return res, fmt.Errorf("vmtest: guest run cancelled: %w", ctx.Err())
	case runErr != nil:
		return res, fmt.Errorf("vmtest: qemu: %w; console tail:\n%s", runErr, tail)
	}
	return res, fmt.Errorf("vmtest: guest ended without a result marker (crash or panic?); console tail:\n%s", tail)
}

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

const markerPrefix = "VIGIL-VM-RESULT"

// parseMarker finds "VIGIL-VM-RESULT <nonce> rc=<n>" on a line of its own.
func parseMarker(out, nonce string) (int, bool) {
	re := regexp.MustCompile(`(?m)^` + markerPrefix + ` ` + regexp.QuoteMeta(nonce) + ` rc=(\d+)\s*$`)
	m := re.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(m[len(m)-1][1])
	if err != nil {
		return 0, false
	}
	return n, true
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// crStripper removes the carriage returns the serial line adds.
type crStripper struct{ w io.Writer }

func (c *crStripper) Write(p []byte) (int, error) {
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte{'\r'}, nil)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// kvmUsable: KVM only on request (VIGIL_VM_ACCEL=kvm). On the nested
// machines measured, KVM guests hung at boot while TCG boots in seconds.
var kvmOnce = sync.OnceValue(func() bool {
	if os.Getenv("VIGIL_VM_ACCEL") != "kvm" {
		return false
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
})

func kvmUsable() bool { return kvmOnce() }

// initScript is /init. %s: nonce. It must never exit (the kernel would panic).
const initScript = `#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev /run /tmp /var
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
ln -sfn /run /var/run
mkdir -p /run/netns
while read -r m; do
  insmod "$m" 2>/dev/null || echo "vmtest: insmod $m failed" >&2
done < /etc/vmtest/modules
ip link set lo up
hostname vigil-guest
export %s=1
. /etc/vmtest/env
cd /
/bin/sh /etc/vmtest/script
rc=$?
echo
echo "` + markerPrefix + ` %s rc=$rc"
sync
poweroff -f
`

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeInitrd writes base followed by the per-run archive.
func writeInitrd(dst, base string, tree *moduleTree, mods []*kmod, o Options, nonce string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	bf, err := os.Open(base)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, bf)
	bf.Close()
	if err != nil {
		return fmt.Errorf("vmtest: copy base initramfs: %w", err)
	}
	c := newCPIOWriter(f)
	if err := c.Bytes("init", 0o755, []byte(fmt.Sprintf(initScript, GuestEnv, nonce))); err != nil {
		return err
	}
	var env strings.Builder
	for _, k := range slices.Sorted(maps.Keys(o.Env)) {
		fmt.Fprintf(&env, "export %s=%s\n", k, shellQuote(o.Env[k]))
	}
	if err := c.Bytes("etc/vmtest/env", 0o644, []byte(env.String())); err != nil {
		return err
	}
	if err := c.Bytes("etc/vmtest/script", 0o755, []byte(o.Script)); err != nil {
		return err
	}
	// Host programs and their libraries, then Files (which win on a clash).
	files := map[string]string{}
	for _, p := range o.HostPrograms {
		libs, err := sharedLibs(p)
		if err != nil {
			return err
		}
		files[p] = p
		for _, l := range libs {
			files[l] = l
		}
	}
	for g, h := range o.Files {
		if !filepath.IsAbs(g) {
			return fmt.Errorf("vmtest: guest path %q must be absolute", g)
		}
		files[g] = h
	}
	for _, g := range slices.Sorted(maps.Keys(files)) {
		if err := c.HostFile(g, files[g]); err != nil {
			return fmt.Errorf("vmtest: add %s as %s: %w", files[g], g, err)
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	return f.Close()
}

// sharedLibs lists the libraries (and the loader) prog needs, per ldd.
// A static program needs none.
func sharedLibs(prog string) ([]string, error) {
	if _, err := os.Stat(prog); err != nil {
		return nil, fmt.Errorf("vmtest: host program: %w", err)
	}
	out, err := exec.Command("ldd", prog).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("vmtest: ldd %s: %v: %s", prog, err, out)
	}
	return parseLdd(string(out)), nil
}

func parseLdd(out string) []string {
	var libs []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "=> "); i >= 0 {
			line = strings.TrimSpace(line[i+3:])
		}
		if strings.HasPrefix(line, "/") {
			if j := strings.Index(line, " ("); j >= 0 {
				line = line[:j]
			}
			libs = append(libs, line)
		}
	}
	return libs
}

// baseArchive returns the path of the cached base archive (busybox,
// modules, module list), building it when missing.
func baseArchive(kdir string, tree *moduleTree, mods []*kmod) (string, error) {
	busybox, err := findBusybox()
	if err != nil {
		return "", err
	}
	st, err := os.Stat(busybox)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "v1\n%s\n%s %d %d\n", kdir, busybox, st.Size(), st.ModTime().UnixNano())
	for _, m := range mods {
		fmt.Fprintln(h, m.rel)
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	dir := filepath.Join(filepath.Dir(kdir), "initramfs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		// The kernel cache may be read-only: fall back to a temp dir.
		dir = filepath.Join(os.TempDir(), "vigil-vm-initramfs")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
	}
	path := filepath.Join(dir, "base-"+key+".cpio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, "base-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	c := newCPIOWriter(tmp)
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "var", "etc", "root", "sbin", "usr/bin", "usr/sbin"} {
		if err := c.Dir(d); err != nil {
			return "", err
		}
	}
	if err := c.HostFile("bin/busybox", busybox); err != nil {
		return "", err
	}
	if err := c.Symlink("bin/sh", "busybox"); err != nil {
		return "", err
	}
	var list strings.Builder
	modRoot := "lib/modules/" + tree.version
	for _, m := range mods {
		if err := c.HostFile(modRoot+"/"+m.rel, filepath.Join(tree.root, m.rel)); err != nil {
			return "", err
		}
		list.WriteString("/" + modRoot + "/" + m.rel + "\n")
	}
	if err := c.Bytes(modRoot+"/modules.dep", 0o644, []byte(modulesDep(mods, tree))); err != nil {
		return "", err
	}
	if err := c.Bytes("etc/vmtest/modules", 0o644, []byte(list.String())); err != nil {
		return "", err
	}
	if err := c.Close(); err != nil {
		return "", err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

func findBusybox() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("vmtest: busybox not found (apt-get install busybox-static)")
}
