package director_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// backupFDLimit is the backup's RLIMIT_NOFILE in the flood test: low
// enough that an uncapped metrics server exhausts it with the flood, high
// enough for the daemon's own sockets plus the capped server.
const backupFDLimit = 256

// floodConns is how many idle keep-alive clients hit the backup.
const floodConns = 3000

// lowFDWrapper writes a script that execs bin under an fd limit, so the
// pid startDaemon signals is still vigil's.
func lowFDWrapper(t *testing.T, dir, bin string, limit int) string {
	t.Helper()
	w := filepath.Join(dir, "vigil-lowfd")
	script := fmt.Sprintf("#!/bin/sh\nexec prlimit --nofile=%d:%d %s \"$@\"\n", limit, limit, bin)
	if err := os.WriteFile(w, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

// floodMetrics opens n connections from h to addr, each sending one
// keep-alive scrape and then idling, and keeps them open until the test
// ends. It returns how many connected.
func floodMetrics(t *testing.T, h *netlab.Host, addr string, n int) int {
	t.Helper()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	// Dialled on a thread inside h's namespace: the sockets stay there.
	err := h.Do(func() error {
		for range n {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				continue // a full backlog drops the SYN; the rest still count
			}
			conns = append(conns, c)
			_, _ = io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: vigil\r\n\r\n")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(conns)
}

// procFDs counts the open fds of pid.
func procFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// within polls f for up to d and reports whether it became true; unlike
// eventually it does not stop the test, so every failure is reported.
func within(d time.Duration, f func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return f()
}

// TestNetnsMetricsFloodTakeover floods the backup's metrics address with
// thousands of idle keep-alive clients while the backup runs under a low
// fd limit, then crashes the master. The backup must still answer
// `vigil status`, take the VIP, and put its gratuitous ARPs on the wire
// (the client's neighbour entry moves to its MAC). Before the connection
// cap and the ARP socket opened at start, the flood used every fd and the
// takeover sent no GARP ("too many open files").
func TestNetnsMetricsFloodTakeover(t *testing.T) {
	testenv.NeedNetns(t, "ping", "prlimit")
	bin := buildVigil(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.key"), []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	lab := netlab.New(t)
	// Both directors read the same file; each listens in its own namespace.
	text := strings.Replace(fmt.Sprintf(vipOnlySite, lab.Prefix(), dir, 4),
		"\n[[director]]", "metrics_address = \"0.0.0.0:9477\"\n\n[[director]]", 1)
	site := filepath.Join(dir, "site.toml")
	if err := os.WriteFile(site, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	h1 := lab.AddHost("vs1", "10.99.0.1/24")
	h2 := lab.AddHost("vs2", "10.99.0.2/24")
	client := lab.AddHost("client", "10.99.0.10/24")

	d1 := startDaemon(t, h1, bin, site, dir)
	d2 := startDaemon(t, h2, lowFDWrapper(t, dir, bin, backupFDLimit), site, dir)
	defer func() {
		if t.Failed() {
			logs(t, d1, d2)
		}
	}()
	eventually(t, 10*time.Second, "vs1 master with the VIP, vs2 backup", func() bool {
		return instanceState(t, d1) == "master" && hasVIP(h1) && instanceState(t, d2) == "backup" && !hasVIP(h2)
	})
	pid := d2.cmd.Process.Pid
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid)); err != nil || !strings.Contains(string(b), fmt.Sprintf("Max open files            %d", backupFDLimit)) {
		t.Fatalf("vs2 does not run under the fd limit %d: %v\n%s", backupFDLimit, err, b)
	}
	before := procFDs(pid)
	// The client learns the VIP at vs1's MAC.
	client.MustRun(t, "ping", "-c1", "-W2", "10.99.0.101")
	if got := neighMAC(t, client); got != h1.MAC.String() {
		t.Fatalf("client neighbour entry for the VIP: %q, want vs1's %s", got, h1.MAC)
	}

	n := floodMetrics(t, client, "10.99.0.2:9477", floodConns)
	time.Sleep(time.Second) // let the backup accept what it will
	during := procFDs(pid)
	t.Logf("vs2 (RLIMIT_NOFILE %d): %d fds before, %d with %d idle metrics clients connected", backupFDLimit, before, during, n)
	if n < floodConns/2 {
		t.Fatalf("only %d of %d flood connections opened", n, floodConns)
	}
	if _, err := d2.status(t); err != nil {
		t.Errorf("vs2 status while flooded: %v", err)
	}

	// Crash: vs1's link cut and its process killed at once, so only
	// vs2's GARP can move the client's neighbour entry.
	time.Sleep(1100 * time.Millisecond) // past the client's ARP locktime
	lab.Cut(h1)
	d1.signal(syscall.SIGKILL)
	if !within(5*time.Second, func() bool { return hasVIP(h2) }) {
		t.Errorf("vs2 did not add the VIP after vs1 crashed")
	}
	if !within(5*time.Second, func() bool { return neighMAC(t, client) == h2.MAC.String() }) {
		t.Errorf("client neighbour entry for the VIP is %q, want vs2's %s: no GARP reached it", neighMAC(t, client), h2.MAC)
	}
	st, err := d2.status(t)
	switch {
	case err != nil:
		t.Errorf("vs2 status after the takeover: %v", err)
	case len(st.Instances) == 0 || st.Instances[0].State != "master" || st.Instances[0].GARPSent == 0:
		t.Errorf("vs2 after the takeover: %+v, want master with GARPs sent", st.Instances)
	default:
		t.Logf("vs2 master, %d GARP packets sent, first at %v; %d fds", st.Instances[0].GARPSent, st.Instances[0].FirstGARP.Format(time.StampMilli), procFDs(pid))
	}
	if b, _ := os.ReadFile(d2.log); strings.Contains(string(b), "too many open files") {
		t.Errorf("vs2 ran out of file descriptors")
	}
}
