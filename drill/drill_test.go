package drill

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/director"
	"github.com/vigil-lb/vigil/internal/clock"
)

// testSite has two directors; vs1 runs the drill.
func testSite() *config.Site {
	return &config.Site{File: "site.toml", Directors: []config.Director{{Name: "vs1"}, {Name: "vs2"}}}
}

// goodStatus is vs1 master of www with vs2 a healthy backup: a drill
// could run.
func goodStatus(site *config.Site) director.Status {
	health := func() map[string]bool { return map[string]bool{"web/rs1": true, "web/rs2": false} }
	return director.Status{
		Node: "vs1", Digest: site.Digest(), Health: health(), IPVSDigest: "ipvs-1",
		Instances: []director.InstanceStatus{{Name: "www", State: "master", MasterAddr: "10.99.0.1"}},
		Peers: []director.PeerStatus{{
			Name: "vs2", Alive: true, Digest: site.Digest(), Health: health(), IPVSDigest: "ipvs-1",
			Instances:      map[string]string{"www": "backup"},
			InstanceDetail: map[string]director.PeerInstance{"www": {State: "backup"}},
		}},
	}
}

// fakeDirector is vs1 with vs2 as its peer, on a clock. After a handover,
// vs2 becomes master peerAfter later (never if negative), dating it with
// its own clock, skew behind ours; after a resume, vs1 is master again
// backAfter later (never if negative).
type fakeDirector struct {
	clk       clock.Clock
	base      director.Status
	peerAfter time.Duration
	skew      time.Duration
	backAfter time.Duration
	// Errors the calls return.
	statusErr, handoverErr, resumeErr error
	// onHandover and onResume run at those calls (tests use them to
	// break the service).
	onHandover, onResume func()

	mu                  sync.Mutex
	handedOver, resumed time.Time
	calls               []string // handover and resume calls, with their instance
}

func (f *fakeDirector) Status(context.Context) (director.Status, error) {
	if f.statusErr != nil {
		return director.Status{}, f.statusErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clk.Now()
	st := f.base
	st.Instances = append([]director.InstanceStatus(nil), f.base.Instances...)
	p := f.base.Peers
	if len(p) > 0 {
		p = append([]director.PeerStatus(nil), p...)
		p[0].InstanceDetail = map[string]director.PeerInstance{}
		for k, v := range f.base.Peers[0].InstanceDetail {
			p[0].InstanceDetail[k] = v
		}
	}
	st.Peers = p
	if f.handedOver.IsZero() {
		return st, nil
	}
	st.Instances[0].State = "backup"
	if at := f.handedOver.Add(f.peerAfter); f.peerAfter >= 0 && !now.Before(at) {
		since := at.Add(-f.skew)
		st.Peers[0].InstanceDetail["www"] = director.PeerInstance{State: "master", Since: since,
			VIPsAdded: since.Add(time.Millisecond), FirstGARP: since.Add(2 * time.Millisecond)}
	}
	if at := f.resumed.Add(f.backAfter); !f.resumed.IsZero() && f.backAfter >= 0 && !now.Before(at) {
		st.Instances[0].State = "master"
		st.Peers[0].InstanceDetail["www"] = director.PeerInstance{State: "backup", Since: at}
	}
	return st, nil
}

func (f *fakeDirector) Handover(_ context.Context, inst string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "handover "+inst)
	if f.handoverErr != nil {
		return f.handoverErr
	}
	f.handedOver = f.clk.Now()
	if f.onHandover != nil {
		f.onHandover()
	}
	return nil
}

func (f *fakeDirector) Resume(_ context.Context, inst string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "resume "+inst)
	if f.resumeErr != nil {
		return f.resumeErr
	}
	f.resumed = f.clk.Now()
	if f.onResume != nil {
		f.onResume()
	}
	return nil
}

func (f *fakeDirector) callList() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ", ")
}

var start = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// runFake runs a drill on a fake clock that moves, a millisecond at a
// time, only while the drill waits on it: the timeline is exact.
func runFake(t *testing.T, clk *clock.Fake, d Director, o Options) (Report, error) {
	t.Helper()
	o.Clock = clk
	if o.Site == nil {
		o.Site = testSite()
	}
	type result struct {
		rep Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := Run(context.Background(), d, o)
		done <- result{rep, err}
	}()
	for {
		select {
		case r := <-done:
			return r.rep, r.err
		default:
		}
		if clk.Now().Sub(start) > 10*time.Minute {
			t.Fatal("drill still running after 10 virtual minutes")
		}
		if clk.Pending() > 0 {
			clk.Advance(time.Millisecond)
		} else {
			runtime.Gosched()
		}
	}
}

func newFake(clk clock.Clock) *fakeDirector {
	return &fakeDirector{clk: clk, base: goodStatus(testSite()), peerAfter: -1, backAfter: -1}
}

func TestRunPreflight(t *testing.T) {
	for _, tc := range []struct {
		name          string
		change        func(*director.Status, *fakeDirector, *Options)
		wantFailure   string   // "" for a preflight that passes
		wantPreflight []string // substrings, one per problem, in order
		wantInstance  string
	}{
		{name: "all fine", wantInstance: "www"},
		{name: "status unreadable",
			change: func(_ *director.Status, f *fakeDirector, _ *Options) {
				f.statusErr = errors.New("no vigil daemon at /x.sock")
			},
			wantFailure: "read status: no vigil daemon at /x.sock"},
		{name: "state the drill does not know",
			change:      func(s *director.Status, _ *fakeDirector, _ *Options) { s.Instances[0].State = "leader" },
			wantFailure: `status of vs1, instance www: unknown VRRP state "leader"`},
		{name: "named instance absent",
			change:      func(_ *director.Status, _ *fakeDirector, o *Options) { o.Instance = "mail" },
			wantFailure: `no instance "mail" on vs1`},
		{name: "master of nothing",
			change:      func(s *director.Status, _ *fakeDirector, _ *Options) { s.Instances[0].State = "backup" },
			wantFailure: "vs1 is master of no instance: run the drill on the master"},
		{name: "named instance not master here",
			change: func(s *director.Status, _ *fakeDirector, o *Options) {
				o.Instance = "www"
				s.Instances[0].State, s.Instances[0].MasterAddr = "backup", "10.99.0.2"
			},
			wantFailure: "vs1 is backup of www, not master: run the drill on the master (10.99.0.2)"},
		{name: "the first instance this director is master of",
			change: func(s *director.Status, _ *fakeDirector, _ *Options) {
				s.Instances = append([]director.InstanceStatus{{Name: "mail", State: "backup"}}, s.Instances...)
				s.Instances = append(s.Instances, director.InstanceStatus{Name: "ftp", State: "master"})
			},
			wantInstance: "www"},
		{name: "daemon runs another site file",
			change:        func(s *director.Status, _ *fakeDirector, _ *Options) { s.Digest = "0123456789abcdefff" },
			wantPreflight: []string{"the daemon runs digest 0123456789ab but site.toml has ", "director vs2 runs another site file (digest "},
			wantFailure:   "preflight found 2 problem(s); fix them or use --force"},
		{name: "daemon warning",
			change:        func(s *director.Status, _ *fakeDirector, _ *Options) { s.Warnings = []string{"dual master"} },
			wantPreflight: []string{"daemon warns: dual master"},
			wantFailure:   "preflight found 1 problem(s); fix them or use --force"},
		{name: "no peer on the channel",
			change:        func(s *director.Status, _ *fakeDirector, _ *Options) { s.Peers = nil },
			wantPreflight: []string{"director vs2 is not present on the cluster channel", "no director is backup of www: nobody would take over"},
			wantFailure:   "preflight found 2 problem(s); fix them or use --force"},
		{name: "peer not alive",
			change:        func(s *director.Status, _ *fakeDirector, _ *Options) { s.Peers[0].Alive = false },
			wantPreflight: []string{"director vs2 is not present on the cluster channel", "no director is backup of www"},
			wantFailure:   "preflight found 2 problem(s)"},
		{name: "a director of the site missing",
			change: func(s *director.Status, _ *fakeDirector, o *Options) {
				o.Site = testSite()
				o.Site.Directors = append(o.Site.Directors, config.Director{Name: "vs3"})
				s.Digest, s.Peers[0].Digest = o.Site.Digest(), o.Site.Digest()
			},
			wantPreflight: []string{"director vs3 is not present on the cluster channel"},
			wantFailure:   "preflight found 1 problem(s)"},
		{name: "peer sees other health",
			change: func(s *director.Status, _ *fakeDirector, _ *Options) {
				s.Peers[0].Health = map[string]bool{"web/rs1": false, "web/rs2": false, "web/rs3": true}
			},
			wantPreflight: []string{"director vs2 sees other real-server health: web/rs1 ours=true theirs=false; web/rs3 unknown here"},
			wantFailure:   "preflight found 1 problem(s)"},
		{name: "peer has another IPVS table",
			change:        func(s *director.Status, _ *fakeDirector, _ *Options) { s.Peers[0].IPVSDigest = "ipvs-2" },
			wantPreflight: []string{"director vs2 has another IPVS table (digest ipvs-2, ours ipvs-1)"},
			wantFailure:   "preflight found 1 problem(s)"},
		{name: "peer not backup",
			change:        func(s *director.Status, _ *fakeDirector, _ *Options) { s.Peers[0].Instances["www"] = "fault" },
			wantPreflight: []string{"no director is backup of www: nobody would take over"},
			wantFailure:   "preflight found 1 problem(s)"},
		{name: "force: problems listed, not refused",
			change: func(s *director.Status, _ *fakeDirector, o *Options) {
				s.Peers[0].IPVSDigest = "ipvs-2"
				o.Force = true
			},
			wantPreflight: []string{"director vs2 has another IPVS table"},
			wantInstance:  "www"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(start)
			f := newFake(clk)
			o := Options{CheckOnly: true, Site: testSite()}
			if tc.change != nil {
				tc.change(&f.base, f, &o)
			}
			rep, err := runFake(t, clk, f, o)
			if tc.wantFailure == "" {
				if err != nil || !rep.OK || rep.Failure != "" {
					t.Fatalf("check: %v, report %+v; want OK", err, rep)
				}
				if rep.Instance != tc.wantInstance || rep.From != "vs1" {
					t.Errorf("instance %q from %q, want %q from vs1", rep.Instance, rep.From, tc.wantInstance)
				}
			} else {
				if err == nil || rep.OK || !strings.HasPrefix(rep.Failure, tc.wantFailure) || rep.Failure != err.Error() {
					t.Fatalf("check: %v, failure %q; want a failure starting %q", err, rep.Failure, tc.wantFailure)
				}
			}
			if len(rep.Preflight) != len(tc.wantPreflight) {
				t.Fatalf("preflight %q, want %d problems like %q", rep.Preflight, len(tc.wantPreflight), tc.wantPreflight)
			}
			for i, w := range tc.wantPreflight {
				if !strings.Contains(rep.Preflight[i], w) {
					t.Errorf("problem %d is %q, want it to say %q", i, rep.Preflight[i], w)
				}
			}
			if calls := f.callList(); calls != "" || len(rep.Timeline) != 0 {
				t.Errorf("a check called %q, timeline %v; it must only read the status", calls, rep.Timeline)
			}
		})
	}
}

// TestRunRefusesBeforeHandover: without --check, a refused preflight or
// a probe that cannot measure anything stops the drill before the
// handover.
func TestRunRefusesBeforeHandover(t *testing.T) {
	for _, tc := range []struct {
		name        string
		o           Options
		peers       bool
		wantFailure string
	}{
		{"preflight problem", Options{}, false, "preflight found 2 problem(s); fix them or use --force"},
		{"bad probe target", Options{Probes: []string{"udp://10.99.0.101:53"}}, true, `probe "udp://10.99.0.101:53": want http://, https:// or tcp://HOST:PORT`},
		{"probe that never answers", Options{Probes: []string{"tcp://" + closedPort(t)}}, true, "does not answer before the drill: nothing to measure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(start)
			f := newFake(clk)
			f.peerAfter = 0
			if !tc.peers {
				f.base.Peers = nil
			}
			rep, err := runFake(t, clk, f, tc.o)
			if err == nil || !strings.Contains(rep.Failure, tc.wantFailure) {
				t.Fatalf("drill: %v; want a failure with %q", err, tc.wantFailure)
			}
			if calls := f.callList(); calls != "" || rep.Held {
				t.Errorf("calls %q, held %v: the drill must stop before the handover", calls, rep.Held)
			}
		})
	}
}

// TestRunHandover: the new master may appear at any time before the
// timeout (no fixed gap); the timeline is on the peer's clock, sorted.
func TestRunHandover(t *testing.T) {
	for _, tc := range []struct {
		name      string
		peerAfter time.Duration
		skew      time.Duration
		want      []Event
	}{
		{"at once", 0, 0, []Event{{0, "vs1 resigned www with a priority-0 advert"}, {0, "vs2 master"}, {1, "vs2 added the VIPs"}, {2, "vs2 sent the first GARP/NA"}}},
		{"after 700 ms", 700 * time.Millisecond, 0, []Event{{0, "vs1 resigned www with a priority-0 advert"}, {700, "vs2 master"}, {701, "vs2 added the VIPs"}, {702, "vs2 sent the first GARP/NA"}}},
		{"after 25 s, a make-before-break wait", 25 * time.Second, 0, []Event{{0, "vs1 resigned www with a priority-0 advert"}, {25000, "vs2 master"}, {25001, "vs2 added the VIPs"}, {25002, "vs2 sent the first GARP/NA"}}},
		{"peer clock 900 ms behind", 100 * time.Millisecond, 900 * time.Millisecond, []Event{{-800, "vs2 master"}, {-799, "vs2 added the VIPs"}, {-798, "vs2 sent the first GARP/NA"}, {0, "vs1 resigned www with a priority-0 advert"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(start)
			f := newFake(clk)
			f.peerAfter, f.skew = tc.peerAfter, tc.skew
			rep, err := runFake(t, clk, f, Options{})
			if err != nil || !rep.OK {
				t.Fatalf("drill: %v\n%+v", err, rep)
			}
			if rep.From != "vs1" || rep.To != "vs2" || rep.Instance != "www" || !rep.Held || rep.Back != nil {
				t.Errorf("report %+v; want www from vs1 to vs2, held, not handed back", rep)
			}
			if fmt.Sprint(rep.Timeline) != fmt.Sprint(tc.want) {
				t.Errorf("timeline\n got %v\nwant %v", rep.Timeline, tc.want)
			}
			if calls := f.callList(); calls != "handover www" {
				t.Errorf("calls %q, want only the handover", calls)
			}
		})
	}
}

// TestRunNoNewMaster: no other director becomes master (or only one
// whose mastership predates the step-down): the drill fails at the
// timeout and hands back, so the instance does not stay without master.
func TestRunNoNewMaster(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stale bool
	}{{"nobody takes over", false}, {"a stale master is not the new one", true}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(start)
			f := newFake(clk)
			if tc.stale {
				f.base.Peers[0].InstanceDetail["www"] = director.PeerInstance{State: "master", Since: start.Add(-time.Hour), FirstGARP: start.Add(-time.Hour)}
			}
			rep, err := runFake(t, clk, f, Options{Timeout: 30 * time.Second})
			want := "no other director became master of www within 30s (handed back)"
			if err == nil || rep.OK || rep.Failure != want {
				t.Fatalf("drill: %v, failure %q; want %q", err, rep.Failure, want)
			}
			if took := clk.Now().Sub(start); took < 30*time.Second || took > 31*time.Second {
				t.Errorf("gave up after %v, timeout 30s", took)
			}
			if calls := f.callList(); calls != "handover www, resume www" {
				t.Errorf("calls %q, want the handover then the hand back", calls)
			}
			if rep.Held || rep.To != "" {
				t.Errorf("held %v, to %q: handed back, nobody took over", rep.Held, rep.To)
			}
		})
	}
}

func TestRunBack(t *testing.T) {
	for _, tc := range []struct {
		name        string
		backAfter   time.Duration
		resumeErr   error
		handoverErr error
		wantFailure string
		wantCalls   string
		wantHeld    bool
	}{
		{name: "master again 300 ms after the resume", backAfter: 300 * time.Millisecond, wantCalls: "handover www, resume www"},
		{name: "never master again", backAfter: -1, wantCalls: "handover www, resume www",
			wantFailure: "vs1 did not become master again within 30s"},
		{name: "resume refused: still held", backAfter: 0, resumeErr: errors.New("socket gone"), wantCalls: "handover www, resume www",
			wantFailure: "hand back: socket gone", wantHeld: true},
		{name: "handover refused", handoverErr: errors.New("not master"), wantCalls: "handover www",
			wantFailure: "handover: not master"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(start)
			f := newFake(clk)
			f.peerAfter, f.backAfter, f.resumeErr, f.handoverErr = 100*time.Millisecond, tc.backAfter, tc.resumeErr, tc.handoverErr
			rep, err := runFake(t, clk, f, Options{Back: true})
			if calls := f.callList(); calls != tc.wantCalls {
				t.Errorf("calls %q, want %q", calls, tc.wantCalls)
			}
			if rep.Held != tc.wantHeld {
				t.Errorf("held %v, want %v", rep.Held, tc.wantHeld)
			}
			if tc.wantFailure != "" {
				if err == nil || rep.Failure != tc.wantFailure {
					t.Fatalf("drill: %v, failure %q; want %q", err, rep.Failure, tc.wantFailure)
				}
				if rep.Back != nil {
					t.Errorf("back %+v after a failed hand back", rep.Back)
				}
				return
			}
			if err != nil || !rep.OK {
				t.Fatalf("drill: %v\n%+v", err, rep)
			}
			// vs2 master at 100 ms, the probes settle for 500 ms, the
			// resume at 600 ms, vs1 master at 900 ms.
			if rep.Back == nil || rep.Back.TookMS != 300 {
				t.Errorf("back %+v, want took_ms 300", rep.Back)
			}
			want := "[{0 vs1 resigned www with a priority-0 advert} {100 vs2 master} {101 vs2 added the VIPs} {102 vs2 sent the first GARP/NA} {600 vs1 resumed its priority (hand back)} {900 vs1 master again}]"
			if got := fmt.Sprint(rep.Timeline); got != want {
				t.Errorf("timeline\n got %s\nwant %s", got, want)
			}
		})
	}
}

// failingServer answers "rs1" on 127.0.0.1, except that fail(n) makes
// it answer the next n requests with 503.
func failingServer(t *testing.T) (url string, fail func(n int64)) {
	t.Helper()
	var left atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if left.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "rs1\n")
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func(n int64) { left.Store(n) }
}

// TestRunMeasuresOutage probes a real HTTP server on 127.0.0.1 that fails
// a number of requests after the handover (and after the resume): the
// report shows the interruption, a --max-outage below it fails the
// drill, and the hand-back's failures are added to the takeover's.
// Failures are counted in requests, not time, so a loaded machine does
// not change what the server does.
func TestRunMeasuresOutage(t *testing.T) {
	for _, tc := range []struct {
		name         string
		failHandover int64
		failResume   int64
		maxOutage    time.Duration
		wantFailed   func(int) bool
	}{
		{"an interruption", 20, 0, 0, func(n int) bool { return n >= 1 && n <= 20 }},
		{"handed back: both interruptions counted", 20, 20, 0, func(n int) bool { return n > 20 && n <= 40 }},
		{"over the limit", 20, 0, time.Millisecond, func(n int) bool { return n >= 1 && n <= 20 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, fail := failingServer(t)
			f := newFake(clock.System())
			f.peerAfter, f.backAfter = 0, 0
			f.onHandover = func() { fail(tc.failHandover) }
			f.onResume = func() { fail(tc.failResume) }
			o := Options{Site: testSite(), Probes: []string{url}, ProbeEvery: 5 * time.Millisecond, MaxOutage: tc.maxOutage, Back: tc.failResume > 0}
			rep, err := Run(context.Background(), f, o)
			if len(rep.Probes) != 1 {
				t.Fatalf("drill: %v, probes %+v; want one", err, rep.Probes)
			}
			p := rep.Probes[0]
			if p.Target != url || !tc.wantFailed(p.Failed) || p.Sent <= p.Failed || p.Answered != "rs1" || p.LastFailed != "HTTP 503" || p.OutageMS <= 0 {
				t.Errorf("probe %+v: want failures (HTTP 503), an interruption, then answers of rs1", p)
			}
			if !strings.Contains(fmt.Sprint(rep.Timeline), "first answer after the step-down: "+url) {
				t.Errorf("timeline %v lacks the first answer", rep.Timeline)
			}
			if tc.maxOutage > 0 {
				want := fmt.Sprintf("probe %s saw an interruption of %.0f ms (limit 1ms)", url, p.OutageMS)
				if err == nil || rep.Failure != want {
					t.Fatalf("drill: %v; want failure %q", err, want)
				}
				return
			}
			if err != nil || !rep.OK {
				t.Fatalf("drill: %v", err)
			}
		})
	}
}

// TestRunWaitsForProbes: after the new master is in place the drill
// waits, up to the timeout, for every probe to answer again before it
// measures; a service that never comes back keeps it waiting that long.
func TestRunWaitsForProbes(t *testing.T) {
	url, fail := failingServer(t)
	f := newFake(clock.System())
	f.peerAfter = 0
	f.onHandover = func() { fail(1 << 40) }
	begin := time.Now()
	rep, err := Run(context.Background(), f, Options{Site: testSite(), Probes: []string{url}, ProbeEvery: 5 * time.Millisecond, Timeout: 800 * time.Millisecond})
	if took := time.Since(begin); took < 800*time.Millisecond+settle {
		t.Errorf("drill done after %v: it did not wait the 800ms timeout for the probe to answer", took)
	}
	// Not a failure in itself: --max-outage says how long is too long.
	if err != nil || len(rep.Probes) != 1 || rep.Probes[0].Failed == 0 || rep.Probes[0].OutageMS < 800 {
		t.Errorf("drill: %v, probes %+v; want a measured interruption of at least 800 ms", err, rep.Probes)
	}
}

func TestAddBack(t *testing.T) {
	for _, tc := range []struct {
		name      string
		a, b      ProbeReport
		wantOut   float64
		wantSent  int
		wantFails int
	}{
		{"takeover longer", ProbeReport{Sent: 10, Failed: 2, OutageMS: 30}, ProbeReport{Sent: 5, Failed: 1, OutageMS: 10}, 30, 15, 3},
		{"hand-back longer", ProbeReport{Sent: 10, Failed: 2, OutageMS: 30}, ProbeReport{Sent: 5, Failed: 4, OutageMS: 50}, 50, 15, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.a.addBack(tc.b)
			if tc.a.OutageMS != tc.wantOut || tc.a.Sent != tc.wantSent || tc.a.Failed != tc.wantFails {
				t.Errorf("got %+v, want outage %v, %d sent, %d failed", tc.a, tc.wantOut, tc.wantSent, tc.wantFails)
			}
		})
	}
}
