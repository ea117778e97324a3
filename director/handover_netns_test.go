package director_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vigil-lb/vigil/director"
	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// holderGaps samples both directors' VIP every millisecond and records
// the longest time no director held it.
type holderGaps struct {
	stop, done chan struct{}
	longest    time.Duration
	samples    int
}

func watchGaps(t *testing.T, hosts ...*netlab.Host) *holderGaps {
	t.Helper()
	g := &holderGaps{stop: make(chan struct{}), done: make(chan struct{})}
	handles := make([]*netlink.Handle, len(hosts))
	links := make([]netlink.Link, len(hosts))
	for i, h := range hosts {
		handles[i] = h.Handle()
		l, err := handles[i].LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		links[i] = l
	}
	go func() {
		defer close(g.done)
		var since time.Time
		for {
			select {
			case <-g.stop:
				for _, h := range handles {
					h.Close()
				}
				return
			default:
			}
			n := 0
			for i := range hosts {
				if carries(handles[i], links[i]) {
					n++
				}
			}
			now := time.Now()
			g.samples++
			switch {
			case n == 0 && since.IsZero():
				since = now
			case n > 0 && !since.IsZero():
				g.longest = max(g.longest, now.Sub(since))
				since = time.Time{}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return g
}

func (g *holderGaps) close() (time.Duration, int) {
	close(g.stop)
	<-g.done
	return g.longest, g.samples
}

// TestNetnsHandoverMakeBeforeBreak: a planned handover (the control
// socket's handover, as vigil drill sends it, and SIGTERM of the master)
// never leaves the VIP on no director: the new master holds it before
// the old one lets go. The old master resigns without a fault (no
// notify_fault, no FAULT state), and neither director logs a WARN or an
// ERROR.
func TestNetnsHandoverMakeBeforeBreak(t *testing.T) {
	testenv.NeedNetns(t)
	p := newPairLab(t)
	p.start()
	ctx := context.Background()

	// 1. handover and resume.
	g := watchGaps(t, p.h1, p.h2)
	rep, err := director.Call(ctx, p.d1.sock, director.Request{Op: "handover"})
	if err != nil || !rep.OK {
		t.Fatalf("handover: %v %s", err, rep.Error)
	}
	eventually(t, 10*time.Second, "vs2 master with the VIP, vs1 without", func() bool {
		return instanceState(t, p.d2) == "master" && hasVIP(p.h2) && !hasVIP(p.h1)
	})
	longest, samples := g.close()
	t.Logf("handover: longest time with no VIP holder %v (%d samples)", longest, samples)
	if longest > 0 {
		t.Errorf("handover left the VIP on no director for %v", longest)
	}
	if rep, err := director.Call(ctx, p.d1.sock, director.Request{Op: "resume"}); err != nil || !rep.OK {
		t.Fatalf("resume: %v %s", err, rep.Error)
	}
	waitMaster(t, p.d1, p.d2, p.h1, p.h2)

	// 2. SIGTERM of the master.
	g = watchGaps(t, p.h1, p.h2)
	p.d1.signal(syscall.SIGTERM)
	p.d1.wait(t, 15*time.Second)
	eventually(t, 10*time.Second, "vs2 master with the VIP", func() bool {
		return instanceState(t, p.d2) == "master" && hasVIP(p.h2) && !hasVIP(p.h1)
	})
	longest, samples = g.close()
	t.Logf("SIGTERM: longest time with no VIP holder %v (%d samples)", longest, samples)
	if longest > 0 {
		t.Errorf("SIGTERM left the VIP on no director for %v", longest)
	}

	notify, err := os.ReadFile(filepath.Join(p.dir, "notify-vs1.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(notify), "FAULT") {
		t.Errorf("a handover ran vs1's notify for FAULT:\n%s", notify)
	}
	for _, d := range []*daemon{p.d1, p.d2} {
		b, err := os.ReadFile(d.log)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				t.Errorf("%s logged: %s", d.name, line)
			}
		}
	}
}
