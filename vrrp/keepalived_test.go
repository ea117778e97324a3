package vrrp

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// keepalived runs Debian's keepalived (VRRP only) in a lab host's namespace.
type keepalived struct {
	t    *testing.T
	h    *netlab.Host
	dir  string
	conf string
	out  *syncBuffer
	pid  int
	vip  netip.Addr
}

type syncBuffer = testenv.Buffer

type kaConf struct {
	Version   int
	Priority  int
	Interval  string
	VRID      int
	VIP       string
	Src       string
	Peers     []string
	AuthPass  string
	NoPreempt bool
	V6        bool
}

var kaTemplate = template.Must(template.New("ka").Parse(`global_defs {
    router_id ka-test
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id {{.VRID}}
    priority {{.Priority}}
    advert_int {{.Interval}}
    version {{.Version}}
{{- if .NoPreempt}}
    nopreempt
{{- end}}
{{- if .Peers}}
    unicast_src_ip {{.Src}}
    unicast_peer {
{{- range .Peers}}
        {{.}}
{{- end}}
    }
{{- end}}
{{- if .AuthPass}}
    authentication {
        auth_type PASS
        auth_pass {{.AuthPass}}
    }
{{- end}}
    virtual_ipaddress {
        {{.VIP}}/{{if .V6}}128{{else}}32{{end}}
    }
}
`))

func startKeepalived(t *testing.T, h *netlab.Host, c kaConf) *keepalived {
	t.Helper()
	dir := t.TempDir()
	k := &keepalived{t: t, h: h, dir: dir, conf: filepath.Join(dir, "keepalived.conf"), out: &syncBuffer{}, vip: netip.MustParseAddr(c.VIP)}
	var b bytes.Buffer
	if err := kaTemplate.Execute(&b, c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.conf, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	k.start()
	k.waitReady()
	return k
}

// waitReady waits until keepalived's VRRP child runs its instance: on a
// loaded host the child can take seconds to start, which must not count
// against the election timings measured after.
func (k *keepalived) waitReady() {
	k.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(k.out.String(), "Entering BACKUP STATE") {
		if time.Now().After(deadline) {
			k.t.Fatalf("keepalived did not start its VRRP instance within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (k *keepalived) start() {
	k.t.Helper()
	// -R: the parent must not respawn a VRRP child we SIGKILL.
	cmd := k.h.Command(context.Background(), "keepalived", "-P", "-n", "-l", "-D", "-R", "-G",
		"-f", k.conf, "-p", filepath.Join(k.dir, "ka.pid"), "-r", filepath.Join(k.dir, "vrrp.pid"))
	cmd.Stdout, cmd.Stderr = k.out, k.out
	if err := cmd.Start(); err != nil {
		k.t.Fatalf("start keepalived: %v", err)
	}
	k.pid = cmd.Process.Pid
	go cmd.Wait()
	k.t.Cleanup(k.kill)
	k.t.Cleanup(func() {
		if k.t.Failed() {
			k.t.Logf("keepalived output:\n%s", k.out.String())
		}
	})
}

// kill SIGKILLs the VRRP child and then the parent: no priority-0 advert.
func (k *keepalived) kill() {
	if k.pid == 0 {
		return
	}
	if b, err := os.ReadFile(filepath.Join(k.dir, "vrrp.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	syscall.Kill(k.pid, syscall.SIGKILL)
	os.Remove(filepath.Join(k.dir, "vrrp.pid"))
	os.Remove(filepath.Join(k.dir, "ka.pid"))
	k.pid = 0
}

// terminate stops keepalived gracefully (SIGTERM): a master sends a
// priority-0 advert and drops its VIPs.
// It returns at once; wait for the exit with waitExit.
func (k *keepalived) terminate() {
	if k.pid != 0 {
		syscall.Kill(k.pid, syscall.SIGTERM)
	}
}

func (k *keepalived) waitExit() {
	if k.pid == 0 {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(k.pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	k.pid = 0
}

// master says whether keepalived holds the VIP, which it adds as MASTER
// and removes as BACKUP.
func (k *keepalived) master() bool {
	hd := k.h.Handle()
	defer hd.Close()
	link, err := hd.LinkByName("eth0")
	if err != nil {
		k.t.Fatal(err)
	}
	addrs, err := hd.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == k.vip {
			return true
		}
	}
	return false
}

func waitKA(t *testing.T, k *keepalived, master bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if k.master() == master {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("keepalived master=%v after %v, want %v", k.master(), within, master)
	return 0
}

// TestNetnsKeepalived runs a vigil director against keepalived 2.2.7 on one
// VRID: the higher priority is master whichever it is, and each takes over
// when the other is killed.
func TestNetnsKeepalived(t *testing.T) {
	testenv.NeedNetns(t, "keepalived")
	if out, err := osexec.Command("keepalived", "--version").CombinedOutput(); err == nil {
		t.Logf("%s", strings.SplitN(string(out), "\n", 2)[0])
	}
	for _, tc := range []struct {
		name    string
		version int
		iv      time.Duration
		kaIv    string
		unicast bool
		pass    string
		v6      bool
	}{
		// v3 at 200ms: sub-second, with room for a loaded CI host.
		{"v3-multicast", 3, 200 * time.Millisecond, "0.2", false, "", false},
		{"v3-unicast", 3, 200 * time.Millisecond, "0.2", true, "", false},
		{"v2-auth-pass", 2, time.Second, "1", false, "s3cret", false},
		{"v3-ipv6-multicast", 3, 200 * time.Millisecond, "0.2", false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.New(t)
			hv := lab.AddHost("vigil", "10.99.0.1/24", "fd99::1/64")
			hk := lab.AddHost("ka", "10.99.0.2/24", "fd99::2/64")
			vip, plen := "10.99.0.100", "/32"
			rc := RawConfig{Source: src(1)}
			if tc.v6 {
				vip, plen = "fd99::100", "/128"
				rc = RawConfig{IPv6: true}
			}
			kc := kaConf{Version: tc.version, Priority: 100, Interval: tc.kaIv, VRID: 51, VIP: vip, AuthPass: tc.pass, Src: "10.99.0.2", V6: tc.v6}
			if tc.unicast {
				rc.Peers = []netip.Addr{src(2)}
				kc.Peers = []string{"10.99.0.1"}
			}
			cfg := Config{Name: "www", VRID: 51, Version: tc.version, Priority: 200, Interval: tc.iv,
				VIPs: []netip.Addr{netip.MustParseAddr(vip)}, AuthPass: tc.pass}
			slack := margin
			vlog := &syncBuffer{}
			cfg.Logger = slog.New(slog.NewTextHandler(vlog, &slog.HandlerOptions{Level: slog.LevelDebug}))
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("vigil log:\n%s", vlog.String())
				}
			})

			// 1. vigil 200, keepalived 100: vigil is master, keepalived backup.
			k := startKeepalived(t, hk, kc)
			v := startDirector(t, hv, cfg, rc)
			waitState(t, v, Master, mdi(200, tc.iv)+slack)
			// keepalived started first: had it not accepted our adverts it
			// would be master within its own Master_Down_Interval, and stay
			// master. (On a loaded host keepalived's own timer can fire
			// before it reads our queued adverts, its pain point 8: then
			// it is master for a moment and steps down on our next advert.)
			time.Sleep(3 * tc.iv)
			waitKA(t, k, false, slack)
			if st := v.in.Status(); st.State != Master || st.Counters.Transitions != 2 {
				t.Fatalf("vigil status %+v", st)
			}

			// 2. vigil killed: keepalived takes over after its Master_Down_Interval.
			start := time.Now()
			v.kill()
			waitKA(t, k, true, mdi(100, tc.iv)+slack)
			t.Logf("keepalived took over %v after vigil was killed (Master_Down_Interval %v)", time.Since(start), mdi(100, tc.iv))

			// 3. vigil comes back with priority 50: it stays backup behind keepalived.
			v.cfg.Priority = 50
			v.start()
			waitState(t, v, Backup, margin)
			time.Sleep(mdi(50, tc.iv) + 2*tc.iv)
			// Had vigil not accepted keepalived's adverts it would be master
			// by now and stay so. (A starved keepalived on a loaded host can
			// make it master for a moment; it then steps down.)
			waitState(t, v, Backup, slack)
			if n := v.transitions(); n != 1 {
				t.Logf("vigil made %d transitions behind keepalived (scheduling delays)", n)
			}
			st := v.in.Status()
			kaAddr := src(2)
			if tc.v6 {
				kaAddr = linkLocalOf(t, hk)
			}
			if st.MasterAddr != kaAddr || st.MasterPriority != 100 {
				t.Fatalf("vigil sees master %v priority %d, want keepalived at 10.99.0.2 priority 100", st.MasterAddr, st.MasterPriority)
			}
			if len(st.Counters.Dropped) != 0 || st.Counters.AddrMismatch != 0 {
				t.Fatalf("vigil dropped or mismatched keepalived's adverts: %+v", st.Counters)
			}

			// 4. keepalived killed: vigil takes over.
			start = time.Now()
			k.kill()
			waitState(t, v, Master, mdi(50, tc.iv)+slack)
			t.Logf("vigil took over %v after keepalived was killed (Master_Down_Interval %v)", time.Since(start), mdi(50, tc.iv))

			// 5. keepalived comes back with a higher priority than vigil and
			// preempts it: vigil steps down on keepalived's advert. (Not
			// repeated at v2's 1s interval: slow, and v3 covers it.)
			ks := []*keepalived{k}
			if tc.version == 2 {
				checkKALog(t, ks)
				return
			}
			hk.MustRun(t, "ip", "addr", "flush", "dev", "eth0", "to", vip+plen)
			kc.Priority = 150
			k2 := startKeepalived(t, hk, kc)
			waitKA(t, k2, true, mdi(150, tc.iv)+slack)
			waitState(t, v, Backup, slack)

			// 6. keepalived stops gracefully (SIGTERM): its priority-0
			// advert makes vigil take over after Skew_Time, not
			// Master_Down_Interval.
			start = time.Now()
			k2.terminate()
			waitState(t, v, Master, mdi(50, tc.iv)+slack)
			t.Logf("vigil took over %v after keepalived's graceful stop (Skew_Time %v)", time.Since(start), 206*tc.iv/256)
			k2.waitExit()
			if r := v.in.Status(); r.State != Master {
				t.Fatalf("vigil %v", r.State)
			}
			if e := waitEvent(t, v, func(e Event) bool { return e.To == Master }); !strings.Contains(e.Reason, "resigned (priority 0)") {
				t.Errorf("vigil became master for %q, want keepalived's priority-0 advert", e.Reason)
			}

			// 7. vigil stops gracefully: keepalived takes over after its skew.
			hk.MustRun(t, "ip", "addr", "flush", "dev", "eth0", "to", vip+plen)
			k3 := startKeepalived(t, hk, kc) // priority 150, vigil 50 is master
			waitKA(t, k3, true, mdi(150, tc.iv)+slack)
			waitState(t, v, Backup, slack)
			v.cfg.Priority = 250
			v.stop()
			v.start()
			waitState(t, v, Master, mdi(250, tc.iv)+slack)
			waitKA(t, k3, false, slack)
			start = time.Now()
			v.stop()
			waitKA(t, k3, true, mdi(150, tc.iv)+slack)
			t.Logf("keepalived took over %v after vigil's graceful stop (Skew_Time %v, Master_Down_Interval %v)", time.Since(start), 106*tc.iv/256, mdi(150, tc.iv))
			checkKALog(t, append(ks, k2, k3))
		})
	}
}

// checkKALog fails on any complaint of keepalived about our packets.
func checkKALog(t *testing.T, ks []*keepalived) {
	t.Helper()
	for _, k := range ks {
		for _, l := range strings.Split(k.out.String(), "\n") {
			if strings.Contains(strings.ToLower(l), "invalid") || strings.Contains(l, "mismatch") || strings.Contains(l, "bogus") {
				t.Errorf("keepalived: %s", l)
			}
		}
	}
}

func linkLocalOf(t *testing.T, h *netlab.Host) netip.Addr {
	t.Helper()
	hd := h.Handle()
	defer hd.Close()
	link, err := hd.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := hd.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.IsLinkLocalUnicast() {
			return ip
		}
	}
	t.Fatalf("%s has no link-local address", h.Name)
	return netip.Addr{}
}
