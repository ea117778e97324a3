package vmtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/testenv"
)

func TestCPIOReadableByCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed; the format is also checked by TestVMBootRunsScript")
	}
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Bytes("a/b/c.txt", 0o640, []byte("hello")))
	must(c.Symlink("bin/sh", "busybox"))
	must(c.Bytes("a/b/d.txt", 0o755, []byte("")))
	must(c.Close())
	if buf.Len()%512 != 0 {
		t.Fatalf("archive length %d not padded to 512", buf.Len())
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idm", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "a/b/c.txt"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("c.txt = %q, %v", got, err)
	}
	st, _ := os.Stat(filepath.Join(dir, "a/b/c.txt"))
	if st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", st.Mode())
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "busybox" {
		t.Fatalf("symlink = %q, %v", l, err)
	}
}

func TestParseMarker(t *testing.T) {
	cases := []struct {
		out  string
		code int
		ok   bool
	}{
		{"x\nVIGIL-VM-RESULT n1 rc=0\n", 0, true},
		{"x\nVIGIL-VM-RESULT n1 rc=3\n[  1.2] reboot: Power down\n", 3, true},
		{"echo VIGIL-VM-RESULT n1 rc=0\n", 0, false},                    // not at line start
		{"VIGIL-VM-RESULT other rc=0\n", 0, false},                      // wrong nonce
		{"VIGIL-VM-RESULT n1 rc=0\nVIGIL-VM-RESULT n1 rc=1\n", 1, true}, // last wins
		{"", 0, false},
	}
	for _, c := range cases {
		code, ok := parseMarker(c.out, "n1")
		if code != c.code || ok != c.ok {
			t.Errorf("parseMarker(%q) = %d,%v want %d,%v", c.out, code, ok, c.code, c.ok)
		}
	}
}

func TestParseLdd(t *testing.T) {
	out := `	linux-vdso.so.1 (0x00007ffd)
	libpopt.so.0 => /lib/x86_64-linux-gnu/libpopt.so.0 (0x00007f2e)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2e)
	/lib64/ld-linux-x86-64.so.2 (0x00007f2e)
`
	got := strings.Join(parseLdd(out), ",")
	want := "/lib/x86_64-linux-gnu/libpopt.so.0,/lib/x86_64-linux-gnu/libc.so.6,/lib64/ld-linux-x86-64.so.2"
	if got != want {
		t.Fatalf("parseLdd = %s want %s", got, want)
	}
}

func TestModinfoDeps(t *testing.T) {
	data := []byte("junk\x00license=GPL\x00softdep=pre: crc32c\x00depends=nf_conntrack,nf-defrag-ipv6\x00name=x\x00")
	got := strings.Join(modinfoDeps(data), ",")
	if got != "crc32c,nf_conntrack,nf_defrag_ipv6" {
		t.Fatalf("deps = %s", got)
	}
}

func TestModuleOrder(t *testing.T) {
	dir := t.TempDir()
	kdir := filepath.Join(dir, "lib/modules/6.1.0-test/kernel")
	write := func(rel, info string) {
		p := filepath.Join(kdir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("\x00"+info+"\x00"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("net/ip_vs.ko", "depends=nf_conntrack,libcrc32c")
	write("net/ip_vs_rr.ko", "depends=ip_vs")
	write("net/ip_vs_ftp.ko", "depends=ip_vs,nf_nat")
	write("net/nf_conntrack.ko", "depends=libcrc32c")
	write("lib/libcrc32c.ko", "softdep=pre: crc32c")
	write("crypto/crc32c_generic.ko", "depends=")
	tree, err := loadModuleTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(tree.schedulers(), ","); s != "ip_vs_rr" {
		t.Fatalf("schedulers = %s", s)
	}
	mods, missing, err := tree.order([]string{"ip_vs_rr", "veth"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.name)
	}
	if got := strings.Join(names, ","); got != "crc32c_generic,libcrc32c,nf_conntrack,ip_vs,ip_vs_rr" {
		t.Fatalf("order = %s", got)
	}
	if strings.Join(missing, ",") != "veth" {
		t.Fatalf("missing = %v", missing)
	}
}

func TestEnvKeyRejected(t *testing.T) {
	_, err := Run(context.Background(), Options{Script: "true", Env: map[string]string{"A B": "x"}})
	if err == nil || !strings.Contains(err.Error(), "shell identifier") {
		t.Fatalf("err = %v", err)
	}
}

// TestVMBootRunsScript boots the guest once and checks what /init
// promises: modules loaded (IPVS present), mounts, env, files, host
// programs with their libraries, netns support, and the exit code.
func TestVMBootRunsScript(t *testing.T) {
	testenv.NeedVM(t)
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "data.txt")
	os.WriteFile(data, []byte("payload-42\n"), 0o644)
	script := `
set -e
echo "env=$GREETING guest=$VIGIL_VM_GUEST"
cat /srv/data.txt
grep -q '^ip_vs ' /proc/modules
grep -q '^ip_vs_rr ' /proc/modules
grep -q '^veth ' /proc/modules
grep -q '^bridge ' /proc/modules
/usr/sbin/ipvsadm -A -t 10.99.0.1:80 -s rr
/usr/sbin/ipvsadm -Ln | grep -q '10.99.0.1:80'
/sbin/ip netns add vt1
/sbin/ip netns exec vt1 /sbin/ip link set lo up
/sbin/ip netns list | grep -q vt1
/sbin/ip netns del vt1
echo all-good
exit 7
`
	var console bytes.Buffer
	res, err := Run(ctx, Options{
		Files:        map[string]string{"/srv/data.txt": data},
		HostPrograms: []string{"/usr/sbin/ipvsadm", "/sbin/ip"},
		Script:       script,
		Env:          map[string]string{"GREETING": "it's me"},
		Timeout:      3 * time.Minute,
		Output:       &console,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest ran in %v", res.Duration)
	if res.ExitCode != 7 {
		t.Fatalf("exit code %d, want 7; console:\n%s", res.ExitCode, res.Output)
	}
	for _, want := range []string{"env=it's me guest=1", "payload-42", "all-good"} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("console lacks %q:\n%s", want, res.Output)
		}
	}
	if console.String() != res.Output {
		t.Errorf("Output writer saw %d bytes, Result.Output has %d", console.Len(), len(res.Output))
	}
}

func TestTestResults(t *testing.T) {
	out := `=== RUN   TestA
--- PASS: TestA (0.01s)
=== RUN   TestB
    --- FAIL: TestB/sub (0.00s)
--- FAIL: TestB (0.00s)
--- SKIP: TestC (0.00s)
guest| --- PASS: TestD (0.00s)
`
	got := TestResults(out)
	want := map[string]string{"TestA": "PASS", "TestB/sub": "FAIL", "TestB": "FAIL", "TestC": "SKIP"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestPrefixWriter(t *testing.T) {
	var b bytes.Buffer
	w := &PrefixWriter{W: &b, Prefix: "g| "}
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\nthr"))
	if b.String() != "g| one\ng| two\n" {
		t.Fatalf("got %q", b.String())
	}
}
