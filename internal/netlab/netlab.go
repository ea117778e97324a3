package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vigil-lb/vigil/internal/nsrun"
)

// Lab is a bridge and the hosts plugged into it.
type Lab struct {
	t      testing.TB
	prefix string // unique per lab: namespaces are prefix-<name>
	bridge string // namespace holding br0

	mu    sync.Mutex
	hosts []*Host
}

// Host is one network namespace with eth0 on the lab's bridge.
type Host struct {
	Name  string           // short name given to AddHost
	Netns string           // namespace name, for `ip netns exec`
	NS    netns.NsHandle   // open handle of the namespace
	Link  string           // "eth0"
	MAC   net.HardwareAddr // eth0's address
	port  string           // the veth end in the bridge namespace
	lab   *Lab
}

// New creates an empty lab (a namespace with bridge br0, multicast
// snooping off so VRRP multicast is flooded like on a plain switch).
func New(t testing.TB) *Lab {
	t.Helper()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("netlab: random name: %v", err)
	}
	l := &Lab{t: t, prefix: fmt.Sprintf("vl%d%s", os.Getpid()%100000, hex.EncodeToString(b[:]))}
	l.bridge = l.prefix + "-br"
	t.Cleanup(l.destroy)
	l.ip("netns", "add", l.bridge)
	l.ip("-n", l.bridge, "link", "set", "lo", "up")
	l.ip("-n", l.bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.ip("-n", l.bridge, "link", "set", "br0", "up")
	return l
}

// Prefix is the unique prefix of this lab's namespace names.
func (l *Lab) Prefix() string { return l.prefix }

// AddHost creates a host namespace with eth0 on the bridge and the given
// addresses ("10.99.0.1/24", "fd99::1/64"). IPv6 duplicate address
// detection is off, so addresses are usable at once.
func (l *Lab) AddHost(name string, addrs ...string) *Host {
	l.t.Helper()
	l.mu.Lock()
	n := len(l.hosts)
	l.mu.Unlock()
	h := &Host{Name: name, Netns: l.prefix + "-" + name, Link: "eth0", lab: l,
		port: fmt.Sprintf("%s-p%d", l.prefix, n)}
	if len(h.port) > 15 {
		h.port = h.port[len(h.port)-15:]
	}
	l.ip("netns", "add", h.Netns)
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	ns, err := netns.GetFromName(h.Netns)
	if err != nil {
		l.t.Fatalf("netlab: open namespace %s: %v", h.Netns, err)
	}
	h.NS = ns
	l.ip("link", "add", "eth0", "netns", h.Netns, "type", "veth", "peer", "name", h.port, "netns", l.bridge)
	h.sysctl("net.ipv6.conf.all.accept_dad", "0")
	h.sysctl("net.ipv6.conf.default.accept_dad", "0")
	h.sysctl("net.ipv6.conf.eth0.accept_dad", "0")
	l.ip("-n", h.Netns, "link", "set", "lo", "up")
	for _, a := range addrs {
		l.ip("-n", h.Netns, "addr", "add", a, "dev", "eth0")
	}
	l.ip("-n", h.Netns, "link", "set", "eth0", "up")
	l.ip("-n", l.bridge, "link", "set", h.port, "master", "br0", "up")
	hd := h.Handle()
	defer hd.Close()
	link, err := hd.LinkByName("eth0")
	if err != nil {
		l.t.Fatalf("netlab: eth0 in %s: %v", h.Netns, err)
	}
	h.MAC = link.Attrs().HardwareAddr
	return h
}

// Cut takes h's bridge port down: h is isolated from every other host.
func (l *Lab) Cut(h *Host) { l.ip("-n", l.bridge, "link", "set", h.port, "down") }

// Heal puts h's bridge port back up.
func (l *Lab) Heal(h *Host) { l.ip("-n", l.bridge, "link", "set", h.port, "up") }

func (l *Lab) ip(args ...string) {
	l.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("netlab: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// destroy removes every namespace of the lab; their veths go with them.
func (l *Lab) destroy() {
	l.mu.Lock()
	hosts := l.hosts
	l.mu.Unlock()
	for _, h := range hosts {
		if h.NS.IsOpen() {
			h.NS.Close()
		}
		// Processes still inside keep a namespace alive but not its name;
		// tests kill what they start (Host.Command ties them to the test).
		_ = exec.Command("ip", "netns", "del", h.Netns).Run()
	}
	_ = exec.Command("ip", "netns", "del", l.bridge).Run()
}

// sysctl sets a sysctl inside h's namespace.
func (h *Host) sysctl(key, value string) {
	h.lab.t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	out, err := exec.Command("ip", "netns", "exec", h.Netns, "sh", "-c", "echo "+value+" > "+path).CombinedOutput()
	if err != nil {
		h.lab.t.Fatalf("netlab: sysctl %s=%s in %s: %v: %s", key, value, h.Netns, err, out)
	}
}

// Sysctl sets a sysctl (dotted name, e.g. "net.ipv4.conf.all.arp_ignore")
// inside h's namespace.
func (h *Host) Sysctl(key, value string) { h.sysctl(key, value) }

// Handle returns a netlink handle bound to h's namespace. Close it.
func (h *Host) Handle() *netlink.Handle {
	h.lab.t.Helper()
	hd, err := netlink.NewHandleAt(h.NS)
	if err != nil {
		h.lab.t.Fatalf("netlab: netlink handle in %s: %v", h.Netns, err)
	}
	return hd
}

// Do runs f on an OS thread switched into h's namespace. Sockets that f
// opens stay in that namespace after Do returns.
func (h *Host) Do(f func() error) error { return nsrun.Do(h.NS, f) }

// Command returns `ip netns exec <ns> name args...`. A process still running
// when the test ends is killed.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Netns, name}, args...)...)
	h.lab.t.Cleanup(func() {
		// Not cmd.ProcessState: a caller's goroutine may be in cmd.Wait.
		// Killing or reaping a process that already ended only errs.
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
	})
	return cmd
}

// Run runs a command in h's namespace and returns its combined output.
func (h *Host) Run(name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.Netns, name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), h.Netns, err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (h *Host) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := h.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
