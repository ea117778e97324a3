package failbench

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/director"
)

func TestClientWindow(t *testing.T) {
	const ms = int64(time.Millisecond)
	ok := func(start, end int64, from string) Event {
		return Event{Kind: 'P', Start: start * ms, End: end * ms, OK: true, From: from}
	}
	bad := func(start, end int64, why string) Event {
		return Event{Kind: 'P', Start: start * ms, End: end * ms, From: why}
	}
	// The request at 100 ms, the old master let go at 200 ms, the new one
	// was settled at 1000 ms.
	for _, tc := range []struct {
		name     string
		probes   []Event
		gap      time.Duration
		from, to int64 // ms
		failed   int
		errors   map[string]int
	}{
		{name: "make-before-break: answers every 5 ms, the old then the new",
			probes: []Event{ok(85, 86, "vs1"), ok(90, 91, "vs1"), ok(95, 96, "vs1"), ok(100, 101, "vs1"), ok(105, 107, "vs1"), ok(110, 111, "vs2"), ok(115, 116, "vs2")},
			gap:    6 * time.Millisecond, from: 101, to: 107},
		{name: "break-before-make: the gap counts from the last answer before the request",
			probes: []Event{ok(95, 96, "vs1"), bad(101, 351, "timeout"), bad(106, 356, "timeout"), ok(160, 161, "vs2"), ok(165, 166, "vs2")},
			gap:    65 * time.Millisecond, from: 96, to: 161, failed: 2, errors: map[string]int{"timeout": 2}},
		{name: "a probe in flight at the request that fails counts; one that failed before does not",
			probes: []Event{bad(20, 50, "reset"), ok(96, 97, "vs1"), bad(99, 102, "reset"), ok(103, 104, "vs2")},
			gap:    7 * time.Millisecond, from: 97, to: 104, failed: 1, errors: map[string]int{"reset": 1}},
		{name: "a probe that was already hanging at the request does not count",
			probes: []Event{bad(60, 310, "timeout"), ok(94, 95, "vs1"), ok(99, 100, "vs1"), ok(104, 105, "vs2")},
			gap:    5 * time.Millisecond, from: 100, to: 105},
		{name: "a gap that starts by the release counts whole",
			probes: []Event{ok(95, 96, "vs1"), ok(195, 196, "vs1"), bad(200, 450, "timeout"), ok(400, 401, "vs2")},
			gap:    205 * time.Millisecond, from: 196, to: 401, failed: 1, errors: map[string]int{"timeout": 1}},
		{name: "a gap after the release is the new master's alone",
			probes: []Event{ok(95, 96, "vs1"), ok(150, 151, "vs2"), ok(190, 191, "vs2"), ok(205, 206, "vs2"), ok(500, 501, "vs2"), ok(505, 506, "vs2")},
			gap:    55 * time.Millisecond, from: 96, to: 151},
		{name: "failures until settled count, and the gap runs to the last of them",
			probes: []Event{ok(95, 96, "vs1"), ok(150, 151, "vs2"), ok(205, 206, "vs2"), bad(300, 550, "timeout"), ok(900, 901, "vs2"), bad(990, 1240, "timeout"), ok(1500, 1501, "vs2")},
			gap:    695 * time.Millisecond, from: 206, to: 901, failed: 2, errors: map[string]int{"timeout": 2}},
		{name: "out of order reports are sorted by their end",
			probes: []Event{ok(95, 96, "vs1"), ok(105, 130, "vs2"), ok(100, 110, "vs1")},
			gap:    20 * time.Millisecond, from: 110, to: 130},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := clientWindow(tc.probes, 100*ms, 200*ms, 1000*ms, 5*time.Millisecond)
			if w.gap != tc.gap || w.failed != tc.failed {
				t.Errorf("gap %v, failed %d; want %v, %d", w.gap, w.failed, tc.gap, tc.failed)
			}
			if w.gapFrom != tc.from*ms || w.gapTo != tc.to*ms {
				t.Errorf("gap from %d to %d ms, want %d to %d", w.gapFrom/ms, w.gapTo/ms, tc.from, tc.to)
			}
			if len(w.errors) != len(tc.errors) {
				t.Errorf("errors %v, want %v", w.errors, tc.errors)
			}
			for k, v := range tc.errors {
				if w.errors[k] != v {
					t.Errorf("errors %v, want %v", w.errors, tc.errors)
				}
			}
		})
	}
}

func TestLargestGap(t *testing.T) {
	if gap, a, b := largestGap([]Event{{Kind: 'P', Start: 1, End: 2, From: "timeout"}}, 0, 10, true); gap != 0 || a != 0 || b != 0 {
		t.Errorf("no answers: gap %v from %d to %d, want none", gap, a, b)
	}
	one := []Event{{Kind: 'P', Start: 1, End: 2, OK: true, From: "vs1"}}
	if gap, _, _ := largestGap(one, 0, 10, true); gap != 0 {
		t.Errorf("one answer: gap %v, want none", gap)
	}
	// Answers at 5, 10, 15, then 90 (after to = 20): the closing answer
	// makes the gap 75; without it (the idle window before a request, whose
	// closing answer would be the handover's) it is 5.
	ps := []Event{{Kind: 'P', End: 5, OK: true}, {Kind: 'P', End: 10, OK: true}, {Kind: 'P', End: 15, OK: true}, {Kind: 'P', End: 90, OK: true}}
	if gap, _, _ := largestGap(ps, 6, 20, true); gap != 75 {
		t.Errorf("with the closing answer: gap %v, want 75ns", gap)
	}
	if gap, _, _ := largestGap(ps, 6, 20, false); gap != 5 {
		t.Errorf("without the closing answer: gap %v, want 5ns", gap)
	}
}

func TestLastAnswerBefore(t *testing.T) {
	ps := []Event{{Kind: 'P', End: 5, OK: true, From: "vs1"}, {Kind: 'P', End: 9, OK: true, From: "vs1"},
		{Kind: 'P', End: 12, OK: true, From: "vs2"}, {Kind: 'P', End: 14, From: "vs1"}, {Kind: 'P', End: 30, OK: true, From: "vs1"}}
	for _, tc := range []struct {
		name string
		t    int64
		want int64
	}{{"vs1", 20, 9}, {"vs1", 9, 5}, {"vs1", 31, 30}, {"vs2", 12, 0}, {"vs3", 40, 0}} {
		if got := lastAnswerBefore(ps, tc.name, tc.t); got != tc.want {
			t.Errorf("last answer by %s before %d: %d, want %d", tc.name, tc.t, got, tc.want)
		}
	}
}

func TestQuietIn(t *testing.T) {
	starts := func(ts ...int64) []Event {
		var out []Event
		for _, s := range ts {
			out = append(out, Event{Kind: 'P', Start: s, End: s + 1})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		probes []Event
		a, b   int64
		want   time.Duration
	}{
		{"asking every 5 through a gap", starts(0, 5, 10, 15, 20, 25), 2, 27, 5},
		{"not asking at all", starts(0, 100), 2, 90, 88},
		{"quiet in the middle", starts(5, 10, 60, 65), 2, 70, 50},
		{"empty interval", nil, 5, 5, 0},
	} {
		if got := quietIn(tc.probes, tc.a, tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestVIPChange(t *testing.T) {
	vips := []Event{{Kind: 'V', End: 5, From: "vs1", OK: false}, {Kind: 'V', End: 12, From: "vs2", OK: true},
		{Kind: 'V', End: 15, From: "vs1", OK: false}, {Kind: 'V', End: 20, From: "vs1", OK: true}}
	for _, tc := range []struct {
		name  string
		added bool
		t0    int64
		want  int64
	}{{"vs1", false, 0, 5}, {"vs1", false, 5, 15}, {"vs2", true, 0, 12}, {"vs1", true, 0, 20}, {"vs2", false, 0, 0}, {"vs1", false, 15, 0}} {
		if got := vipChange(vips, tc.name, tc.added, tc.t0); got != tc.want {
			t.Errorf("vipChange(%s, added=%v, after %d) = %d, want %d", tc.name, tc.added, tc.t0, got, tc.want)
		}
	}
}

func TestSuccessorMissing(t *testing.T) {
	st := func(state string, peers ...director.PeerStatus) director.Status {
		return director.Status{Instances: []director.InstanceStatus{{Name: "other", State: "master"}, {Name: benchInstance, State: state}}, Peers: peers}
	}
	peer := func(alive bool, state string) director.PeerStatus {
		return director.PeerStatus{Name: "vs2", Alive: alive, Instances: map[string]string{benchInstance: state}}
	}
	for _, tc := range []struct {
		name string
		st   director.Status
		want string // "" ready, else a part of the reason
	}{
		{"ready", st("master", peer(true, "backup")), ""},
		{"not master", st("backup", peer(true, "master")), "not master"},
		{"no peers yet", st("master"), "no peer"},
		{"peer not alive", st("master", peer(false, "backup")), "alive=false"},
		{"peer state unknown", st("master", director.PeerStatus{Name: "vs2", Alive: true}), `bench=""`},
		{"peer in init", st("master", peer(true, "init")), `bench="init"`},
	} {
		got := successorMissing(tc.st)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPrintPlanned(t *testing.T) {
	ms := time.Millisecond
	run := func(gap time.Duration, failed int, req, claimed, released time.Duration) Run {
		return Run{Gap: gap, Switch: gap - ms, IdleGap: 5 * ms, WindowFailed: failed, Outage: req, Claimed: claimed, Released: released, Takeover: req, Announce: req}
	}
	rep := &Report{
		Cases: []Case{
			{Impl: "keepalived", Advert: 100 * ms, Kind: Stop, RFC: 61 * ms, Runs: []Run{run(70*ms, 13, 70*ms, 68*ms, 1*ms), run(74*ms, 14, 74*ms, 70*ms, 1*ms)}},
			{Impl: "vigil", Advert: 100 * ms, Kind: Stop, RFC: 61 * ms, Runs: []Run{run(6*ms, 0, 64*ms, 62*ms, 160*ms), run(8*ms, 1, 65*ms, 63*ms, 170*ms)}},
			{Impl: "vigil", Advert: 100 * ms, Kind: Handover, RFC: 61 * ms, Runs: []Run{run(5*ms, 0, 63*ms, 0, 150*ms), {Err: "boom"}}},
			{Impl: "vigil", Advert: 100 * ms, Kind: Crash, RFC: 361 * ms, Runs: []Run{{Outage: 300 * ms, LastAdvert: 364 * ms}}},
		},
		Notes: []string{"keepalived has no handover command: its planned step-down is SIGTERM, the stop row"},
	}
	var b strings.Builder
	rep.Print(&b)
	out := b.String()
	failover, planned, ok := strings.Cut(out, "Planned handover")
	if !ok {
		t.Fatalf("no planned-handover table:\n%s", out)
	}
	if strings.Contains(failover, " stop ") || !strings.Contains(failover, "crash vigil") {
		t.Errorf("the failover table must hold the crash rows only:\n%s", failover)
	}
	for _, want := range []string{
		"largest gap",
		// VIP on both: keepalived let go 68-69 ms before the new master took it.
		"100ms    stop     keepalived   2  27 in 2 of 2 runs      70.0 / 72.0 / 74.0        5.0  71.0 / 73.0    70.0 / 72.0 / 74.0             -68.0    61.0  72.0 / 72.0",
		"100ms    stop     vigil        2  1 in 1 of 2 runs       6.0 / 7.0 / 8.0           5.0  6.0 / 7.0      64.0 / 64.5 / 65.0            +102.5    61.0  64.5 / 64.5",
		// A claim not seen leaves "VIP on both" out.
		"100ms    handover vigil        1  0 in 0 of 1 runs       5.0 / 5.0 / 5.0           5.0  4.0 / 4.0      63.0 / 63.0 / 63.0                 -    61.0",
		"1 runs failed",
		"(keepalived has no handover command",
		"100ms      stop     vigil/keepalived stop median: largest gap 0.10 (7.0 against 72.0 ms); failed probes 1 in 2 runs against 27 in 2",
		"100ms      handover vigil/keepalived stop median: largest gap 0.07",
	} {
		if !strings.Contains(planned, want) {
			t.Errorf("output lacks %q:\n%s", want, planned)
		}
	}
	if strings.Contains(planned, "outage") && !strings.Contains(planned, "no outage") {
		t.Errorf("the planned rows speak of an outage:\n%s", planned)
	}
}
