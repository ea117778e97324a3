package vrrp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/pacer"
	"github.com/vigil-lb/vigil/internal/testenv"
	"golang.org/x/sys/unix"
)

// pacerThreadDirs returns /proc/self/task/TID of this process's threads
// named vigil-pacer.
func pacerThreadDirs(t *testing.T) []string {
	t.Helper()
	comms, err := filepath.Glob("/proc/self/task/*/comm")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, f := range comms {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == "vigil-pacer" {
			dirs = append(dirs, filepath.Dir(f))
		}
	}
	return dirs
}

func waitPacerThreads(t *testing.T, want int) []string {
	t.Helper()
	for deadline := time.Now().Add(margin); ; time.Sleep(10 * time.Millisecond) {
		dirs := pacerThreadDirs(t)
		if len(dirs) == want {
			return dirs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d threads named vigil-pacer, want %d", len(dirs), want)
		}
	}
}

// schedClass reads a thread's policy and real-time priority (proc(5):
// fields 41 and 40 of stat).
func schedClass(t *testing.T, dir string) (policy, prio int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])) // f[0] is field 3
	if _, err := fmt.Sscan(f[40-3], &prio); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(f[41-3], &policy); err != nil {
		t.Fatal(err)
	}
	return policy, prio
}

// TestNetnsPacerThread: a master at one-second adverts never has a pacer
// thread; a master at 10 ms adverts gets one when it first paces, at
// RawConfig.PacerRTPriority, and loses it when its transport closes.
// Without cgo there is no thread and asking for a priority is an error.
func TestNetnsPacerThread(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	h := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	before := len(pacerThreadDirs(t))

	for _, prio := range []int{-1, 100} {
		if tr, err := NewRawTransport(RawConfig{Interface: "eth0", Netns: h.NS, Source: src(1), PacerRTPriority: prio}); err == nil {
			tr.Close()
			t.Errorf("PacerRTPriority %d accepted", prio)
		}
	}

	slow := startDirector(t, h, Config{Name: "slow", VRID: 51, Priority: 255, Interval: time.Second, VIPs: vips}, RawConfig{Source: src(1)})
	waitState(t, slow, Master, margin)
	time.Sleep(1500 * time.Millisecond) // a periodic advert or two
	if n := len(pacerThreadDirs(t)); n != before {
		t.Fatalf("a master at 1 s adverts: %d pacer threads, want %d", n, before)
	}
	if c := slow.in.Status().Counters; c.AdvertsSent < 2 || slow.tr.PacedStats().Sent != 0 {
		t.Fatalf("a master at 1 s adverts: %d adverts sent, %d paced", c.AdvertsSent, slow.tr.PacedStats().Sent)
	}

	fastRC := RawConfig{Source: src(1), PacerRTPriority: 3}
	if !pacer.Available() {
		_, err := NewRawTransport(RawConfig{Interface: "eth0", Netns: h.NS, Source: src(1), PacerRTPriority: 3})
		if !errors.Is(err, pacer.ErrUnavailable) {
			t.Fatalf("PacerRTPriority without cgo: %v, want ErrUnavailable", err)
		}
		fastRC.PacerRTPriority = 0
	}
	fast := startDirector(t, h, Config{Name: "fast", VRID: 52, Priority: 255, Interval: 10 * time.Millisecond, VIPs: vips}, fastRC)
	waitState(t, fast, Master, margin)
	time.Sleep(200 * time.Millisecond)
	if !pacer.Available() {
		if n := len(pacerThreadDirs(t)); n != before || fast.tr.PacedStats().Sent != 0 {
			t.Fatalf("without cgo: %d pacer threads, %d paced adverts", n, fast.tr.PacedStats().Sent)
		}
		return
	}
	dirs := waitPacerThreads(t, before+1)
	if fast.tr.PacedStats().Sent == 0 {
		t.Fatal("a master at 10 ms adverts paced nothing")
	}
	if before == 0 {
		if pol, p := schedClass(t, dirs[0]); pol != unix.SCHED_RR || p != 3 {
			t.Fatalf("pacer thread: policy %d priority %d, want SCHED_RR 3", pol, p)
		}
	}
	fast.kill()
	waitPacerThreads(t, before)
}
