package director_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/director"
	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// buildVigil builds the real binary once per test: in pure Go, or with
// cgo (the advert pacer, as make build ships it) when VIGIL_TEST_CGO=1.
func buildVigil(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vigil")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/vigil")
	cgo := "0"
	if os.Getenv("VIGIL_TEST_CGO") == "1" {
		cgo = "1"
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vigil: %v\n%s", err, out)
	}
	return bin
}

const vipOnlySite = `
[site]
name = "netns-%[1]s"
control_socket = "%[2]s/unused.sock"

[[director]]
name = "vs1"
address = "10.99.0.1"
interface = "eth0"
priority = 150

[[director]]
name = "vs2"
address = "10.99.0.2"
interface = "eth0"
priority = 100

[cluster]
port = 7946
secret_key_file = "%[2]s/cluster.key"

[[instance]]
name = "www"
vrid = 51
advert_interval = "100ms"
vips = ["10.99.0.101/24 label eth0:101"]
garp = { repeat = %[3]d, interval = "1100ms" }
notify = ["/bin/sh", "-c", "echo \"$0 $1 $2 $3\" >> %[2]s/notify-$VIGIL_NODE.log"]
`

// daemon is one `vigil run` in a lab host.
type daemon struct {
	name, sock, log string
	cmd             *exec.Cmd
}

func startDaemon(t *testing.T, h *netlab.Host, bin, site, dir string) *daemon {
	t.Helper()
	d := &daemon{name: h.Name, sock: filepath.Join(dir, h.Name+".sock"), log: filepath.Join(dir, h.Name+".log")}
	f, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = h.Command(context.Background(), bin, "run", "-c", site, "--node", h.Name, "--socket", d.sock, "--state-dir", dir, "-log-level", "debug")
	d.cmd.Stdout, d.cmd.Stderr = f, f
	d.cmd.Env = append(os.Environ(), "VIGIL_NODE="+h.Name)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { checkLogKeys(t, d) }) // after the kill below: cleanups run last-in first-out
	t.Cleanup(func() { d.signal(syscall.SIGKILL) })
	return d
}

func (d *daemon) signal(s syscall.Signal) {
	if d.cmd.Process != nil && d.cmd.ProcessState == nil {
		// ip netns exec execs the daemon, so the pid is vigil's.
		_ = d.cmd.Process.Signal(s)
	}
}

func (d *daemon) wait(t *testing.T, within time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v", d.name, within)
	}
}

func (d *daemon) status(t *testing.T) (director.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rep, err := director.Call(ctx, d.sock, director.Request{Op: "status"})
	if err != nil {
		return director.Status{}, err
	}
	return *rep.Status, nil
}

func instanceState(t *testing.T, d *daemon) string {
	st, err := d.status(t)
	if err != nil || len(st.Instances) == 0 {
		return "unreachable"
	}
	return st.Instances[0].State
}

func hasVIP(h *netlab.Host) bool {
	out, _ := h.Run("ip", "-o", "-4", "addr", "show", "dev", "eth0")
	return strings.Contains(out, "10.99.0.101/24")
}

func eventually(t *testing.T, within time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if f() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("not within %v: %s", within, what)
	return 0
}

func neighMAC(t *testing.T, client *netlab.Host) string {
	out, _ := client.Run("ip", "neigh", "show", "10.99.0.101", "dev", "eth0")
	f := strings.Fields(out)
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

func logs(t *testing.T, ds ...*daemon) {
	for _, d := range ds {
		b, _ := os.ReadFile(d.log)
		t.Logf("---- %s log ----\n%s", d.name, b)
	}
}

// TestNetnsDirectorVIPOnly runs two real `vigil run` daemons on a
// VIP-only site (like keepalived -P) and checks what an operator relies
// on: the VIP moves on a crash and on a graceful stop, clients follow the
// GARP, notify commands run, stale VIPs are removed at start, a VIP deleted
// by hand comes back, and a reload that changes no election causes no
// transition.
func TestNetnsDirectorVIPOnly(t *testing.T) {
	testenv.NeedNetns(t, "ping")
	bin := buildVigil(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.key"), []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	lab := netlab.New(t)
	site := filepath.Join(dir, "site.toml")
	writeSite := func(repeat int) {
		if err := os.WriteFile(site, []byte(fmt.Sprintf(vipOnlySite, lab.Prefix(), dir, repeat)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeSite(2)
	h1 := lab.AddHost("vs1", "10.99.0.1/24")
	h2 := lab.AddHost("vs2", "10.99.0.2/24")
	client := lab.AddHost("client", "10.99.0.10/24")

	d1 := startDaemon(t, h1, bin, site, dir)
	d2 := startDaemon(t, h2, bin, site, dir)
	defer func() {
		if t.Failed() {
			logs(t, d1, d2)
		}
	}()
	eventually(t, 10*time.Second, "vs1 master with the VIP, vs2 backup", func() bool {
		return instanceState(t, d1) == "master" && hasVIP(h1) && instanceState(t, d2) == "backup" && !hasVIP(h2)
	})
	st, _ := d1.status(t)
	if len(st.Peers) != 1 || st.Peers[0].Name != "vs2" {
		t.Errorf("vs1 sees peers %+v, want vs2", st.Peers)
	}

	// The client learns the VIP at vs1's MAC.
	client.MustRun(t, "ping", "-c1", "-W2", "10.99.0.101")
	if got := neighMAC(t, client); got != h1.MAC.String() {
		t.Fatalf("client neighbour entry for the VIP: %q, want vs1's %s", got, h1.MAC)
	}

	// A VIP deleted by hand on the master comes back.
	h1.MustRun(t, "ip", "addr", "del", "10.99.0.101/24", "dev", "eth0")
	eventually(t, 15*time.Second, "VIP restored on vs1", func() bool { return hasVIP(h1) })

	// Reload with only announcement settings changed: no transition.
	st, _ = d1.status(t)
	before := st.Instances[0].Transitions
	writeSite(3)
	d1.signal(syscall.SIGHUP)
	d2.signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "vs1 reloaded", func() bool {
		s, err := d1.status(t)
		return err == nil && !s.LastReload.IsZero()
	})
	time.Sleep(500 * time.Millisecond)
	st, _ = d1.status(t)
	if st.ReloadErr != "" || st.Instances[0].Transitions != before || st.Instances[0].State != "master" || !hasVIP(h1) {
		t.Fatalf("reload without election change: err %q, transitions %d -> %d, state %s", st.ReloadErr, before, st.Instances[0].Transitions, st.Instances[0].State)
	}
	// A broken file is rejected and the running config stays.
	if err := os.WriteFile(site, []byte("[site\nname = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := director.Call(context.Background(), d1.sock, director.Request{Op: "reload"}); err == nil || !strings.Contains(err.Error(), "site.toml:") {
		t.Fatalf("reload of a broken file: err %v, want one naming the file and line", err)
	}
	st, _ = d1.status(t)
	if st.ReloadErr == "" || st.Instances[0].State != "master" {
		t.Fatalf("after a broken reload: %q, state %s", st.ReloadErr, st.Instances[0].State)
	}
	writeSite(3)

	// Crash: vs1's link cut and its process killed at the same instant.
	time.Sleep(1100 * time.Millisecond) // past the client's ARP locktime
	lab.Cut(h1)
	d1.signal(syscall.SIGKILL)
	took := eventually(t, 5*time.Second, "vs2 master after vs1 crashed", func() bool {
		return instanceState(t, d2) == "master" && hasVIP(h2)
	})
	t.Logf("crash: vs2 master after %v (Master_Down_Interval 3*100ms + skew 61ms)", took)
	eventually(t, 5*time.Second, "client neighbour entry moved to vs2 by GARP", func() bool {
		return neighMAC(t, client) == h2.MAC.String()
	})
	client.MustRun(t, "ping", "-c1", "-W2", "10.99.0.101")
	d1.wait(t, 5*time.Second)

	// vs1 comes back with its stale VIP still on eth0: the daemon removes
	// it at start, then preempts (priority 150 > 100).
	if !hasVIP(h1) {
		t.Fatal("the crashed vs1 should still have its VIP (nobody removed it)")
	}
	lab.Heal(h1)
	d1 = startDaemon(t, h1, bin, site, dir)
	eventually(t, 10*time.Second, "vs1 master again, vs2 backup without the VIP", func() bool {
		return instanceState(t, d1) == "master" && hasVIP(h1) && instanceState(t, d2) == "backup" && !hasVIP(h2)
	})
	if b, _ := os.ReadFile(d1.log); !strings.Contains(string(b), "stale") {
		t.Errorf("vs1 did not log removing its stale VIP")
	}

	// Graceful stop: priority 0, vs2 takes over after Skew_Time only.
	time.Sleep(1100 * time.Millisecond)
	d1.signal(syscall.SIGTERM)
	took = eventually(t, 5*time.Second, "vs2 master after vs1 stopped", func() bool {
		return instanceState(t, d2) == "master" && hasVIP(h2)
	})
	t.Logf("graceful stop: vs2 master after %v", took)
	d1.wait(t, 10*time.Second)
	if hasVIP(h1) {
		t.Error("vs1 kept the VIP after a graceful stop")
	}

	// Notify commands ran with keepalived's arguments.
	b, _ := os.ReadFile(filepath.Join(dir, "notify-vs2.log"))
	if !strings.Contains(string(b), "INSTANCE www MASTER 100") || !strings.Contains(string(b), "INSTANCE www BACKUP 100") {
		t.Errorf("vs2 notify log:\n%s\nwant INSTANCE www MASTER 100 and BACKUP lines", b)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "notify-vs1.log"))
	if !strings.Contains(string(b), "INSTANCE www MASTER 150") {
		t.Errorf("vs1 notify log:\n%s\nwant INSTANCE www MASTER 150", b)
	}
}

// checkLogKeys fails on a log line that names one attribute twice (the
// daemon and a package both adding node= or instance=), or that names an
// error err= instead of error=: operators grep and parse these lines.
func checkLogKeys(t *testing.T, ds ...*daemon) {
	t.Helper()
	for _, d := range ds {
		b, err := os.ReadFile(d.log)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k := repeatedKeys(line); len(k) > 0 {
				t.Errorf("%s logged %v twice: %s", d.name, k, line)
			}
			if slices.Contains(logKeys(line), "err") {
				t.Errorf("%s logged an error as err=, want error=: %s", d.name, line)
			}
		}
	}
}

// repeatedKeys returns the keys that occur more than once in one logfmt
// line.
func repeatedKeys(line string) []string {
	seen := map[string]int{}
	var rep []string
	for _, key := range logKeys(line) {
		if seen[key]++; seen[key] == 2 {
			rep = append(rep, key)
		}
	}
	return rep
}

// logKeys returns the keys of one logfmt line in order, skipping quoted
// values.
func logKeys(line string) []string {
	var keys []string
	for i := 0; i < len(line); {
		j := strings.IndexAny(line[i:], "= ")
		if j < 0 {
			break
		}
		if line[i+j] == ' ' {
			i += j + 1
			continue
		}
		keys = append(keys, line[i:i+j])
		i += j + 1
		if i < len(line) && line[i] == '"' {
			// Skip the quoted value, honouring backslash escapes.
			for i++; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' {
					i++
				}
			}
			i++
		} else if k := strings.IndexByte(line[i:], ' '); k >= 0 {
			i += k
		} else {
			break
		}
	}
	return keys
}

func TestRepeatedKeys(t *testing.T) {
	for _, c := range []struct {
		line string
		want string
	}{
		{`time=x level=INFO msg=transition node=a instance=www instance=www vrid=51`, "[instance]"},
		{`time=x msg="node=a node=a in a quoted message" node=a`, "[]"},
		{`time=x msg="a \"quoted\" node=b" node=a site=s node=a`, "[node]"},
		{`time=x level=INFO msg=running node=a instances=1`, "[]"},
		{``, "[]"},
	} {
		if got := fmt.Sprint(repeatedKeys(c.line)); got != c.want {
			t.Errorf("repeatedKeys(%q) = %s, want %s", c.line, got, c.want)
		}
	}
}

func TestLogKeys(t *testing.T) {
	for _, c := range []struct {
		line string
		want string
	}{
		{`time=x level=WARN msg="send advert" err="no route" node=a`, "[time level msg err node]"},
		{`time=x msg="err=1 inside a message" error=boom`, "[time msg error]"},
		{`time=x msg="a \"quoted\" err=b" node=a`, "[time msg node]"},
		{``, "[]"},
	} {
		if got := fmt.Sprint(logKeys(c.line)); got != c.want {
			t.Errorf("logKeys(%q) = %s, want %s", c.line, got, c.want)
		}
	}
}
