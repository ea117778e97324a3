package vrrp

import (
	"errors"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/pacer"
	"github.com/vigil-lb/vigil/internal/testenv"
	"golang.org/x/sys/unix"
)

// waitPacerThreads waits until want threads are named vigil-pacer and
// returns their IDs.
func waitPacerThreads(t *testing.T, want int) []int {
	t.Helper()
	for deadline := time.Now().Add(margin); ; time.Sleep(10 * time.Millisecond) {
		tids := testenv.ThreadsNamed(t, "vigil-pacer")
		if len(tids) == want {
			return tids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d threads named vigil-pacer, want %d", len(tids), want)
		}
	}
}

// TestNetnsPacerThread: a master at one-second adverts never has a pacer
// thread; a master at 10 ms adverts gets one when it first paces, at
// RawConfig.PacerRTPriority, and loses it when its transport closes.
// Without cgo there is no thread and asking for a priority is an error.
func TestNetnsPacerThread(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	h := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	before := len(testenv.ThreadsNamed(t, "vigil-pacer"))

	for _, prio := range []int{-1, 100} {
		if tr, err := NewRawTransport(RawConfig{Interface: "eth0", Netns: h.NS, Source: src(1), PacerRTPriority: prio}); err == nil {
			tr.Close()
			t.Errorf("PacerRTPriority %d accepted", prio)
		}
	}

	slow := startDirector(t, h, Config{Name: "slow", VRID: 51, Priority: 255, Interval: time.Second, VIPs: vips}, RawConfig{Source: src(1)})
	waitState(t, slow, Master, margin)
	time.Sleep(1500 * time.Millisecond) // a periodic advert or two
	if n := len(testenv.ThreadsNamed(t, "vigil-pacer")); n != before {
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
		if n := len(testenv.ThreadsNamed(t, "vigil-pacer")); n != before || fast.tr.PacedStats().Sent != 0 {
			t.Fatalf("without cgo: %d pacer threads, %d paced adverts", n, fast.tr.PacedStats().Sent)
		}
		return
	}
	tids := waitPacerThreads(t, before+1)
	if fast.tr.PacedStats().Sent == 0 {
		t.Fatal("a master at 10 ms adverts paced nothing")
	}
	if before == 0 {
		a, err := unix.SchedGetAttr(tids[0], 0)
		if err != nil {
			t.Fatal(err)
		}
		if a.Policy != unix.SCHED_RR || a.Priority != 3 {
			t.Fatalf("pacer thread: policy %d priority %d, want SCHED_RR 3", a.Policy, a.Priority)
		}
	}
	fast.kill()
	waitPacerThreads(t, before)
}
