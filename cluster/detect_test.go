package cluster

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

func describe(evs []Event) string {
	var parts []string
	for _, e := range evs {
		switch e.Kind {
		case Drift, DriftCleared:
			parts = append(parts, fmt.Sprintf("%s %s %s/%s", e.Kind, e.Peer.Name, e.LocalDigest, e.PeerDigest))
		case DualMaster:
			parts = append(parts, fmt.Sprintf("%s %s %s", e.Kind, e.Instance, strings.Join(e.Masters, ",")))
		default:
			parts = append(parts, fmt.Sprintf("%s %s", e.Kind, e.Instance))
		}
	}
	return strings.Join(parts, "; ")
}

func TestDriftDetector(t *testing.T) {
	t0 := time.Unix(1000, 0)
	vs2 := Peer{Name: "vs2"}
	vs3 := Peer{Name: "vs3"}
	steps := []struct {
		local string
		peers []peerDigest
		want  string
		nrep  int
	}{
		{"d1", []peerDigest{{vs2, ""}}, "", 0},                  // peer state unknown: no verdict
		{"d1", []peerDigest{{vs2, "d1"}}, "", 0},                // equal
		{"d1", []peerDigest{{vs2, "d2"}}, "drift vs2 d1/d2", 1}, // differs
		{"d1", []peerDigest{{vs2, "d2"}}, "", 1},                // same pair: once per change
		{"d3", []peerDigest{{vs2, "d2"}}, "drift vs2 d3/d2", 1}, // local changed: a new warning
		{"d3", []peerDigest{{vs2, "d2"}, {vs3, "d3"}}, "", 1},   // a third, equal
		{"d2", []peerDigest{{vs2, "d2"}, {vs3, "d3"}}, "drift-cleared vs2 d2/d2; drift vs3 d2/d3", 1},
		{"d2", nil, "", 0}, // vs3 gone: report dropped silently
		{"", []peerDigest{{vs2, "d9"}}, "", 0},
	}
	var d driftDetector
	for i, s := range steps {
		evs := d.update(t0.Add(time.Duration(i)*time.Second), s.local, s.peers)
		if got := describe(evs); got != s.want {
			t.Fatalf("step %d: events %q, want %q", i, got, s.want)
		}
		if n := len(d.list()); n != s.nrep {
			t.Fatalf("step %d: %d reports, want %d", i, n, s.nrep)
		}
	}
}

func TestDualMasterDetector(t *testing.T) {
	t0 := time.Unix(1000, 0)
	def := time.Second
	m := func(nodes ...string) []masterClaim {
		var cs []masterClaim
		for _, n := range nodes {
			iv := time.Duration(0)
			if i := strings.IndexByte(n, '@'); i > 0 {
				iv, _ = time.ParseDuration(n[i+1:])
				n = n[:i]
			}
			cs = append(cs, masterClaim{Node: n, Interval: iv})
		}
		return cs
	}
	steps := []struct {
		at     time.Duration
		claims map[string][]masterClaim
		want   string
	}{
		// 1s adverts: the threshold is two intervals.
		{0, map[string][]masterClaim{"www": m("vs1")}, ""},
		{100 * time.Millisecond, map[string][]masterClaim{"www": m("vs1", "vs2")}, ""},  // overlap starts
		{2100 * time.Millisecond, map[string][]masterClaim{"www": m("vs1", "vs2")}, ""}, // exactly two intervals: not yet
		{2101 * time.Millisecond, map[string][]masterClaim{"www": m("vs2", "vs1")}, "dual-master www vs1,vs2"},
		{3 * time.Second, map[string][]masterClaim{"www": m("vs1", "vs2")}, ""}, // raised once
		{4 * time.Second, map[string][]masterClaim{"www": m("vs2")}, "dual-master-cleared www"},
		// A handover overlap shorter than the threshold raises nothing.
		{5 * time.Second, map[string][]masterClaim{"www": m("vs1", "vs2")}, ""},
		{6500 * time.Millisecond, map[string][]masterClaim{"www": m("vs1")}, ""},
		{7 * time.Second, map[string][]masterClaim{"www": m("vs1")}, ""},
		// The threshold follows the largest interval among the claimants.
		{8 * time.Second, map[string][]masterClaim{"db": m("vs1@3s", "vs2")}, ""},
		{14 * time.Second, map[string][]masterClaim{"db": m("vs1@3s", "vs2")}, ""},
		{14001 * time.Millisecond, map[string][]masterClaim{"db": m("vs1@3s", "vs2")}, "dual-master db vs1,vs2"},
		{15 * time.Second, nil, "dual-master-cleared db"},
		// Fast adverts: never under the floor (a restarted director's view
		// of its peers is stale for a moment after a preemption).
		{20 * time.Second, map[string][]masterClaim{"fast": m("vs1@10ms", "vs2@10ms")}, ""},
		{20500 * time.Millisecond, map[string][]masterClaim{"fast": m("vs1@10ms", "vs2@10ms")}, ""},
		{20600 * time.Millisecond, map[string][]masterClaim{"fast": m("vs1@10ms")}, ""},
		{22 * time.Second, map[string][]masterClaim{"fast": m("vs1@10ms", "vs2@10ms")}, ""},
		{23001 * time.Millisecond, map[string][]masterClaim{"fast": m("vs1@10ms", "vs2@10ms")}, "dual-master fast vs1,vs2"},
		{24 * time.Second, nil, "dual-master-cleared fast"},
	}
	var d dualMasterDetector
	for i, s := range steps {
		evs := d.update(t0.Add(s.at), s.claims, def)
		if got := describe(evs); got != s.want {
			t.Fatalf("step %d (t=%v): events %q, want %q", i, s.at, got, s.want)
		}
	}
	if r := d.list(); len(r) != 0 {
		t.Fatalf("reports left: %+v", r)
	}
	// The two short overlaps (the handover at 5s and the fast one at
	// 20s) were counted, not alarmed.
	if d.transients != 2 {
		t.Fatalf("transients = %d, want 2", d.transients)
	}
}

func TestMemberlistLogClassification(t *testing.T) {
	var auth, label atomic.Uint64
	buf := &logBuffer{}
	clk := clock.NewFake(time.Unix(0, 0))
	w := &mlLog{log: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), auth: &auth, label: &label,
		clock: clk, last: map[rejectKind]time.Time{}, quiet: map[rejectKind]int{}}
	lines := []string{
		"[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=127.0.0.1:1234\n",
		"[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=127.0.0.1:1234\n",
		"[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=127.0.0.1:1\n",
		"[ERR] memberlist: discarding packet with unacceptable label \"vigil/mail\": from=127.0.0.1:1\n",
		"[ERR] memberlist: discarding stream with unacceptable label \"vigil/mail\": from=127.0.0.1:1\n",
		"[DEBUG] memberlist: Stream connection from=127.0.0.1:5\n",
		"[WARN] memberlist: Was able to connect to vs2 over TCP but UDP probes failed\n",
	}
	for _, l := range lines {
		w.Write([]byte(l))
	}
	if auth.Load() != 3 || label.Load() != 2 {
		t.Fatalf("auth=%d label=%d, want 3 and 2", auth.Load(), label.Load())
	}
	out := buf.String()
	// Rejections are rate-limited: one warning per kind in the window.
	if n := strings.Count(out, "failed authentication"); n != 1 {
		t.Fatalf("%d authentication warnings, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "level=DEBUG msg=\"Stream connection") || !strings.Contains(out, "level=WARN msg=\"Was able to connect") {
		t.Fatalf("levels not mapped:\n%s", out)
	}
	clk.Advance(rejectLogEvery + time.Second)
	w.Write([]byte(lines[0]))
	if !strings.Contains(buf.String(), "suppressed=2") {
		t.Fatalf("suppressed count not reported:\n%s", buf.String())
	}
}

// evalLoop sleeps until nextDeadline: it must name the earliest pending
// claim's threshold and nothing once every claim is raised or gone.
func TestDualMasterNextDeadline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var d dualMasterDetector
	if _, ok := d.nextDeadline(); ok {
		t.Fatal("deadline with no claims")
	}
	two := []masterClaim{{Node: "vs1"}, {Node: "vs2"}}
	slow := []masterClaim{{Node: "vs1", Interval: 3 * time.Second}, {Node: "vs2"}}
	d.update(t0, map[string][]masterClaim{"www": two, "db": slow}, time.Second)
	if next, ok := d.nextDeadline(); !ok || !next.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("next = %v %v, want www's threshold %v", next, ok, t0.Add(2*time.Second))
	}
	d.update(t0.Add(2100*time.Millisecond), map[string][]masterClaim{"www": two, "db": slow}, time.Second) // www raised
	if next, ok := d.nextDeadline(); !ok || !next.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("next = %v %v, want db's threshold %v", next, ok, t0.Add(6*time.Second))
	}
	d.update(t0.Add(3*time.Second), map[string][]masterClaim{"www": two}, time.Second) // db gone, www raised
	if next, ok := d.nextDeadline(); ok {
		t.Fatalf("next = %v with only a raised claim left", next)
	}
}
