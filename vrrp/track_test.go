package vrrp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// target records what trackers did.
type target struct {
	mu      sync.Mutex
	faults  map[string]bool
	weights map[string]int
}

func newTarget() *target { return &target{faults: map[string]bool{}, weights: map[string]int{}} }

func (t *target) SetFault(r string, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if on {
		t.faults[r] = true
	} else {
		delete(t.faults, r)
	}
}

func (t *target) SetWeight(n string, d int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d == 0 {
		delete(t.weights, n)
	} else {
		t.weights[n] = d
	}
}

func (t *target) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprint(t.faults, t.weights)
}

func TestInterfaceTracker(t *testing.T) {
	tg := newTarget()
	it := newIfaceTracker([]InterfaceTrack{{Interface: "eth0"}, {Interface: "eth1", Weight: -30}, {Interface: "eth2", Weight: 20}}, discard(), []Tracked{tg})
	steps := []struct {
		name string
		up   bool
		want string
	}{
		{"eth0", true, "map[] map[]"},
		{"eth1", true, "map[] map[]"},
		{"eth2", true, "map[] map[interface eth2:20]"},
		{"eth9", false, "map[] map[interface eth2:20]"}, // not tracked
		{"eth0", false, "map[interface eth0 down:true] map[interface eth2:20]"},
		{"eth1", false, "map[interface eth0 down:true] map[interface eth1:-30 interface eth2:20]"},
		{"eth2", false, "map[interface eth0 down:true] map[interface eth1:-30]"},
		{"eth0", true, "map[] map[interface eth1:-30]"},
		{"eth1", true, "map[] map[]"},
	}
	for i, s := range steps {
		it.update(s.name, s.up)
		if got := tg.String(); got != s.want {
			t.Fatalf("step %d (%s up=%v): %s, want %s", i, s.name, s.up, got, s.want)
		}
	}
}

func TestHysteresis(t *testing.T) {
	h := newHysteresis(2, 3, true)
	seq := []bool{false, false, true, false, false, false, true, true, false, true, true}
	want := []bool{true, true, true, true, true, false, false, true, true, true, true}
	for i, ok := range seq {
		h.observe(ok)
		if h.up != want[i] {
			t.Fatalf("after %d observations: up=%v, want %v", i+1, h.up, want[i])
		}
	}
}

func TestRunScriptWeightAndFault(t *testing.T) {
	results := []bool{true, false, false, true, true}
	for _, weight := range []int{0, -50, 10} {
		t.Run(fmt.Sprint(weight), func(t *testing.T) {
			tg := newTarget()
			ctx, cancel := context.WithCancel(context.Background())
			var mu sync.Mutex
			var seen []string
			i := 0
			check := func(context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				if i > 0 {
					seen = append(seen, tg.String())
				}
				if i == len(results) {
					cancel()
					return nil
				}
				ok := results[i]
				i++
				if ok {
					return nil
				}
				return errors.New("exit status 1")
			}
			st := ScriptTrack{Name: "haproxy", Interval: time.Millisecond, Fall: 2, Rise: 2, Weight: weight}
			if err := runScript(ctx, st, check, discard(), []Tracked{tg}); err != nil {
				t.Fatal(err)
			}
			// up, fail 1 (still up), fail 2 (down), ok 1 (still down), ok 2 (up)
			upS, downS := "map[] map[]", "map[script haproxy down:true] map[]"
			if weight < 0 {
				downS = fmt.Sprintf("map[] map[script haproxy:%d]", weight)
			}
			if weight > 0 {
				upS, downS = fmt.Sprintf("map[] map[script haproxy:%d]", weight), "map[] map[]"
			}
			want := []string{upS, upS, downS, downS, upS}
			if strings.Join(seen, "|") != strings.Join(want, "|") {
				t.Fatalf("states\n%v\nwant\n%v", seen, want)
			}
		})
	}
}

func TestRunScriptRealCommand(t *testing.T) {
	tg := newTarget()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() {
		done <- RunScript(ctx, ScriptTrack{Name: "false", Command: []string{"sh", "-c", "exit 3"}, Interval: 10 * time.Millisecond}, nil, tg)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(tg.String(), "script false down") {
		if time.Now().After(deadline) {
			t.Fatalf("failing script never reported: %s", tg)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := RunScript(ctx, ScriptTrack{Name: "x"}, nil, tg); err == nil {
		t.Fatal("accepted a script without a command")
	}
}

func TestInstanceWeights(t *testing.T) {
	r := newRig(t, Config{Priority: 100})
	r.in.SetWeight("script a", -30)
	r.in.SetWeight("interface eth1", 10)
	if p := r.in.Status().Priority; p != 80 {
		t.Fatalf("priority %d, want 80", p)
	}
	r.in.SetWeight("script a", -200)
	if p := r.in.Status().Priority; p != 1 {
		t.Fatalf("priority %d, want clamped 1", p)
	}
	r.in.SetWeight("script a", 0)
	r.in.SetWeight("interface eth1", 200)
	if p := r.in.Status().Priority; p != 254 {
		t.Fatalf("priority %d, want clamped 254", p)
	}
	r.in.SetPriority(50)
	if p := r.in.Status().Priority; p != 250 {
		t.Fatalf("priority %d, want 250", p)
	}
}

// TestSyncGroupFollows: one director's group; a member that becomes master
// on its own pulls the other along; a member that steps down pushes the
// other down; forced moves do not bounce back.
func TestSyncGroupFollows(t *testing.T) {
	clk := newFakeClock()
	ext := newRigOn(t, Config{Name: "ext", VRID: 1, Priority: 100}, clk, (*bus)(nil).port(self))
	gw := newRigOn(t, Config{Name: "gw", VRID: 2, Priority: 100}, clk, (*bus)(nil).port(self))
	// Members must join before they run; these rigs already started, which
	// only matters for their first events.
	NewSyncGroup("nat", ext.in, gw.in)
	ext.events()
	gw.events()
	// gw keeps hearing a master; ext hears nothing and takes over.
	for range 4 {
		gw.from(peerH, 200)
		clk.Advance(time.Second)
	}
	ext.want(Master)
	gw.want(Master)
	ev := gw.events()
	if len(ev) != 1 || !strings.HasPrefix(ev[0].Reason, "sync group nat") {
		t.Fatalf("gw events %+v", ev)
	}
	// ext hears a higher priority and steps down: gw follows.
	ext.from(peerH, 200)
	ext.want(Backup)
	gw.want(Backup)
	clk.Advance(100 * time.Millisecond)
	ext.want(Backup)
	gw.want(Backup)
}

// TestSyncGroupFault: two directors with two instances each; a fault of
// one member moves the whole group to the other director and back.
func TestSyncGroupFault(t *testing.T) {
	clk := newFakeClock()
	b := &bus{clk: clk}
	type node struct{ ext, gw *rig }
	mk := func(addr string, prio uint8) node {
		n := node{
			ext: newRigOn(t, Config{Name: "ext", VRID: 1, Priority: prio, Interval: 100 * time.Millisecond}, clk, b.port(addr)),
			gw:  newRigOn(t, Config{Name: "gw", VRID: 2, Priority: prio, Interval: 100 * time.Millisecond}, clk, b.port(addr)),
		}
		NewSyncGroup("nat", n.ext.in, n.gw.in)
		return n
	}
	n1, n2 := mk("10.99.0.1", 200), mk("10.99.0.2", 100)
	clk.Advance(time.Second)
	want := func(s1, s2 State) {
		t.Helper()
		for _, r := range []*rig{n1.ext, n1.gw} {
			r.want(s1)
		}
		for _, r := range []*rig{n2.ext, n2.gw} {
			r.want(s2)
		}
	}
	want(Master, Backup)
	n1.ext.in.SetFault("interface eth1", true)
	want(Fault, Backup)
	clk.Advance(100 * time.Millisecond) // the priority-0 adverts: skew only
	want(Fault, Master)
	if f := n1.gw.in.Status().Faults; len(f) != 1 || f[0] != "sync group nat" {
		t.Fatalf("gw faults %v", f)
	}
	n1.ext.in.SetFault("interface eth1", false)
	want(Backup, Master)
	clk.Advance(time.Second)
	want(Master, Backup)
}
