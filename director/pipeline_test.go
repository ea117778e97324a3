package director

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/healthcheck"
	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/ipvs"
)

// siteHead is the part of a test site the pipeline ignores.
const siteHead = `
[site]
name = "pipe"
reconcile_interval = "5s"

[[director]]
name = "vs1"
address = "10.99.0.1"
interface = "eth0"

[[instance]]
name = "www"
vrid = 51
advert_interval = "1s"
vips = ["10.99.0.100/24"]
`

// wwwVS is a virtual server whose checks run every 10 ms and flip at
// the first result.
const wwwVS = `
[[virtual_server]]
name = "www"
address = "10.99.0.100:80"
scheduler = "wrr"
check = { type = "tcp", interval = "%[1]s", timeout = "%[1]s", rise = 1, fall = 1, initial_state = "%[2]s" }
real_servers = [
  { address = "10.99.0.3:80", weight = 3 },
  { address = "10.99.0.4:80", weight = 1 },
]
`

func parseSite(t *testing.T, body string) *config.Site {
	t.Helper()
	s, err := config.Parse("site.toml", []byte(siteHead+body))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeChecks answers every check of a target from a verdict the test
// sets: up unless told otherwise.
type fakeChecks struct {
	mu   sync.Mutex
	down map[string]bool // target -> down
}

func (f *fakeChecks) set(target string, up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down == nil {
		f.down = map[string]bool{}
	}
	f.down[target] = !up
}

func (f *fakeChecks) newChecker(s healthcheck.Spec) (healthcheck.Checker, error) {
	return fakeChecker{f, s.Target.String()}, nil
}

type fakeChecker struct {
	f      *fakeChecks
	target string
}

func (c fakeChecker) Check(context.Context, time.Time) healthcheck.Result {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if c.f.down[c.target] {
		return healthcheck.Result{Up: false, Reason: "fake: down", Weight: healthcheck.NoWeight}
	}
	return healthcheck.Result{Up: true, Reason: "fake: up", Weight: healthcheck.NoWeight}
}

// pipeRig is a running pipeline over the in-memory IPVS backend, with
// the repair and slow-start timers on a fake clock (passes happen only
// on changes unless the test advances it) and fake checks on the real
// scheduler.
type pipeRig struct {
	p       *pipeline
	mem     *ipvs.Memory
	clk     *clock.Fake
	checks  *fakeChecks
	changes atomic.Int64 // OnChange calls
	failing atomic.Bool  // every IPVS write fails
	writes  chan string  // every IPVS write attempted, "op key"
}

func startPipeline(t *testing.T, site *config.Site, checks *fakeChecks) *pipeRig {
	t.Helper()
	r := &pipeRig{mem: ipvs.NewMemory(), clk: clock.NewFake(time.Unix(1_700_000_000, 0)), checks: checks,
		writes: make(chan string, 1000)}
	r.mem.FailWrite = func(op string, k ipvs.ServiceKey) error {
		select {
		case r.writes <- op + " " + k.String():
		default:
		}
		if r.failing.Load() {
			return errors.New("injected failure")
		}
		return nil
	}
	p, err := newPipeline(site, r.mem, pipelineOptions{
		Clock:    r.clk,
		Checks:   healthcheck.Options{NewChecker: checks.newChecker, Spread: -1},
		OnChange: func() { r.changes.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("pipeline run did not return after cancel")
		}
	})
	return r
}

// table is the backend's table as "service: dest=weight ...", one line
// per service, sorted.
func (r *pipeRig) table(t *testing.T) string {
	t.Helper()
	tb, err := ipvs.ReadTable(context.Background(), r.mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range tb.Services {
		var ds []string
		for _, d := range s.Destinations {
			ds = append(ds, fmt.Sprintf("%s=%d", netip.AddrPortFrom(d.Addr, d.Port), d.Weight))
		}
		slices.Sort(ds)
		lines = append(lines, s.Key.String()+": "+strings.Join(ds, " "))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// waitTable waits until the backend holds want.
func (r *pipeRig) waitTable(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := r.table(t)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("IPVS table:\n%s\nwant:\n%s", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits until no pass has run for 100 ms (the checks' initial
// verdicts each ask for one) and returns the number of passes.
func (r *pipeRig) settle(t *testing.T) uint64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	last := r.p.status().Reconcile.Passes
	for stable := time.Now(); time.Since(stable) < 100*time.Millisecond; {
		if time.Now().After(deadline) {
			t.Fatal("the pipeline does not settle")
		}
		time.Sleep(5 * time.Millisecond)
		if n := r.p.status().Reconcile.Passes; n != last {
			last, stable = n, time.Now()
		}
	}
	return last
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPipelineHealthChangeProgramsTable(t *testing.T) {
	checks := &fakeChecks{}
	r := startPipeline(t, parseSite(t, fmt.Sprintf(wwwVS, "10ms", "down")), checks)
	// Both start down (initial_state) and come up at their first check.
	r.waitTable(t, "tcp 10.99.0.100:80: 10.99.0.3:80=3 10.99.0.4:80=1")
	st := r.p.status()
	up := st.Digest

	before := r.changes.Load()
	checks.set("10.99.0.4:80", false)
	r.waitTable(t, "tcp 10.99.0.100:80: 10.99.0.3:80=3")
	waitFor(t, "the status to follow", func() bool { return r.p.status().Digest != up })
	st = r.p.status()
	if h := healthView(st.Health); !h["www/10.99.0.3:80"] || h["www/10.99.0.4:80"] {
		t.Errorf("health view %v, want rs .3 up and .4 down", h)
	}
	if health, digest := r.p.view(); digest != st.Digest || health["www/10.99.0.4:80"] {
		t.Errorf("published view (%v, %.12s) differs from status (%.12s)", health, digest, st.Digest)
	}
	if r.changes.Load() == before {
		t.Error("no OnChange after a verdict and a new table: the cluster would not hear of it")
	}
	if st.Reconcile.Passes < 2 || st.Reconcile.Deletes == 0 || st.Reconcile.Errors != 0 {
		t.Errorf("reconcile status %+v, want at least 2 passes, a delete, no error", st.Reconcile)
	}

	checks.set("10.99.0.4:80", true)
	r.waitTable(t, "tcp 10.99.0.100:80: 10.99.0.3:80=3 10.99.0.4:80=1")
	waitFor(t, "the digest of the full table again", func() bool { return r.p.status().Digest == up })
}

func TestPipelineSetSiteRemovesVirtualServer(t *testing.T) {
	const mark = `
[[virtual_server]]
name = "mark"
fwmark = 7
scheduler = "rr"
check = { type = "none" }
real_servers = [{ address = "10.99.0.5:0" }]
`
	checks := &fakeChecks{}
	www := fmt.Sprintf(wwwVS, "10ms", "up")
	r := startPipeline(t, parseSite(t, www+mark), checks)
	r.waitTable(t, "fwmark 7 (inet): 10.99.0.5:0=1\ntcp 10.99.0.100:80: 10.99.0.3:80=3 10.99.0.4:80=1")

	if err := r.p.setSite(parseSite(t, www)); err != nil {
		t.Fatal(err)
	}
	r.waitTable(t, "tcp 10.99.0.100:80: 10.99.0.3:80=3 10.99.0.4:80=1")
	st := r.p.status()
	if _, ok := st.Keys["mark"]; ok {
		t.Error("status still knows virtual server mark")
	}
	for ref := range st.Health {
		if ref.VirtualServer == "mark" {
			t.Errorf("health view still holds %v", ref)
		}
	}
}

// A reload that changes a check (here its interval) keeps the health the
// old check reached: the server is not pulled while the new check starts
// from its configured initial state.
func TestPipelineSetSiteKeepsHealthOfChangedCheck(t *testing.T) {
	checks := &fakeChecks{}
	r := startPipeline(t, parseSite(t, fmt.Sprintf(wwwVS, "10ms", "down")), checks)
	r.waitTable(t, "tcp 10.99.0.100:80: 10.99.0.3:80=3 10.99.0.4:80=1")
	for len(r.writes) > 0 {
		<-r.writes
	}
	// The new check waits a long time for its first run: only the
	// health carried over keeps the servers.
	if err := r.p.setSite(parseSite(t, fmt.Sprintf(wwwVS, "1h", "down"))); err != nil {
		t.Fatal(err)
	}
	passes := r.p.status().Reconcile.Passes
	waitFor(t, "a pass after the reload", func() bool { return r.p.status().Reconcile.Passes > passes })
	time.Sleep(50 * time.Millisecond) // the new checks' initial verdicts, had they been down
	if got := r.table(t); got != "tcp 10.99.0.100:80: 10.99.0.3:80=3 10.99.0.4:80=1" {
		t.Fatalf("table after a reload that only changed the check interval:\n%s", got)
	}
	select {
	case w := <-r.writes:
		t.Fatalf("IPVS written after a reload that changed only the check interval: %s", w)
	default:
	}
	for _, c := range r.p.status().Checks {
		if c.Spec.Interval != time.Hour || !c.Up {
			t.Errorf("check %s: interval %v up %v, want the new 1h check, up", c.Key, c.Spec.Interval, c.Up)
		}
	}
}

func TestPipelineQuorumLostAndRegained(t *testing.T) {
	const vs = `
[[virtual_server]]
name = "www"
address = "10.99.0.100:80"
quorum = 2
sorry_server = "10.99.0.9:80"
check = { type = "tcp", interval = "10ms", timeout = "10ms", rise = 1, fall = 1, initial_state = "up" }
real_servers = [{ address = "10.99.0.3:80" }, { address = "10.99.0.4:80" }]
`
	checks := &fakeChecks{}
	r := startPipeline(t, parseSite(t, vs), checks)
	both := "tcp 10.99.0.100:80: 10.99.0.3:80=1 10.99.0.4:80=1"
	r.waitTable(t, both)
	if lost := r.p.status().QuorumLost; len(lost) != 0 {
		t.Fatalf("quorum lost %v with both servers up", lost)
	}

	checks.set("10.99.0.3:80", false)
	r.waitTable(t, "tcp 10.99.0.100:80: 10.99.0.9:80=1")
	if lost := r.p.status().QuorumLost; !slices.Equal(lost, []string{"www"}) {
		t.Fatalf("quorum lost %v, want [www]", lost)
	}

	checks.set("10.99.0.3:80", true)
	r.waitTable(t, both)
	if lost := r.p.status().QuorumLost; len(lost) != 0 {
		t.Fatalf("quorum lost %v after both servers came back", lost)
	}
}

// A pass that fails keeps the digest of the last table applied (what the
// peers compare) and says why in the status, while the new health view is
// published all the same; the repair pass an interval later applies the
// table once the backend works again.
func TestPipelineBackendErrorKeepsLastGoodDigest(t *testing.T) {
	checks := &fakeChecks{}
	r := startPipeline(t, parseSite(t, fmt.Sprintf(wwwVS, "10ms", "up")), checks)
	r.waitTable(t, "tcp 10.99.0.100:80: 10.99.0.3:80=3 10.99.0.4:80=1")
	waitFor(t, "a digest", func() bool { return r.p.status().Digest != "" })
	good := r.p.status().Digest

	r.failing.Store(true)
	before := r.changes.Load()
	checks.set("10.99.0.4:80", false)
	waitFor(t, "a failed pass", func() bool { return r.p.status().Reconcile.Errors > 0 })
	if health, _ := r.p.view(); health["www/10.99.0.4:80"] || r.changes.Load() == before {
		t.Errorf("health %v published %d times: want .4 down, published", health, r.changes.Load()-before)
	}
	st := r.p.status()
	if !strings.Contains(st.Reconcile.LastError, "injected failure") {
		t.Errorf("last error %q, want the backend's", st.Reconcile.LastError)
	}
	if st.Digest != good {
		t.Errorf("digest moved to %.12s after a failed pass, want the last good %.12s", st.Digest, good)
	}
	if _, digest := r.p.view(); digest != good {
		t.Errorf("published digest %.12s, want the last good %.12s", digest, good)
	}
	if got := r.table(t); got != "tcp 10.99.0.100:80: 10.99.0.3:80=3 10.99.0.4:80=1" {
		t.Fatalf("table changed although every write failed:\n%s", got)
	}

	r.failing.Store(false)
	r.clk.Advance(5 * time.Second) // reconcile_interval: the repair pass
	r.waitTable(t, "tcp 10.99.0.100:80: 10.99.0.3:80=3")
	waitFor(t, "a new digest", func() bool { d := r.p.status().Digest; return d != good && d != "" })
}

// The repair pass puts back what someone changed by hand, an interval
// after the last pass, with no health change to prompt it.
func TestPipelineRepairPassRestoresHandChanges(t *testing.T) {
	checks := &fakeChecks{}
	r := startPipeline(t, parseSite(t, fmt.Sprintf(wwwVS, "1h", "up")), checks)
	full := "tcp 10.99.0.100:80: 10.99.0.3:80=3 10.99.0.4:80=1"
	r.waitTable(t, full)
	passes := r.settle(t)
	if err := r.mem.DeleteService(context.Background(), ipvs.AddrKey(ipvs.TCP, netip.MustParseAddrPort("10.99.0.100:80"))); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(4 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if got := r.p.status().Reconcile.Passes; got != passes {
		t.Fatalf("%d passes before the interval was up, want %d", got, passes)
	}
	r.clk.Advance(time.Second)
	r.waitTable(t, full)

	// A reload's reconcile_interval applies from the next pass.
	site := parseSite(t, fmt.Sprintf(wwwVS, "1h", "up"))
	site.Settings.ReconcileInterval.Duration = time.Second
	if err := r.p.setSite(site); err != nil {
		t.Fatal(err)
	}
	passes = r.settle(t)
	if err := r.mem.DeleteService(context.Background(), ipvs.AddrKey(ipvs.TCP, netip.MustParseAddrPort("10.99.0.100:80"))); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(time.Second)
	r.waitTable(t, full)
	if got := r.p.status().Reconcile.Passes; got <= passes {
		t.Fatalf("%d passes, want more than %d", got, passes)
	}
}

func TestPipelineStatusNamesChecks(t *testing.T) {
	const vs = `
[[virtual_server]]
name = "www"
address = "10.99.0.100:80"
check = { type = "tcp", interval = "1h", initial_state = "up" }
real_servers = [{ address = "10.99.0.3:80" }, { address = "10.99.0.4:80", check = { type = "none" } }]
`
	site := parseSite(t, vs)
	p, err := newPipeline(site, nil, pipelineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.programs() {
		t.Error("a pipeline without a backend programs IPVS")
	}
	if _, ok, err := p.table(context.Background()); ok || err != nil {
		t.Errorf("table of a VIP-only pipeline: ok %v, %v", ok, err)
	}
	st := p.status()
	rs3 := ipvs.ServerRef{VirtualServer: "www", Server: netip.MustParseAddrPort("10.99.0.3:80")}
	rs4 := ipvs.ServerRef{VirtualServer: "www", Server: netip.MustParseAddrPort("10.99.0.4:80")}
	if _, ok := st.CheckOf[rs3]; !ok || len(st.Checks) != 1 || st.Checks[0].Key != st.CheckOf[rs3] {
		t.Errorf("check of .3: %q among %d checks", st.CheckOf[rs3], len(st.Checks))
	}
	if k, ok := st.CheckOf[rs4]; ok {
		t.Errorf(".4 has no check but status names %q", k)
	}
	want := ipvs.Health{rs3: {Up: true}, rs4: {Up: true}}
	if !maps.Equal(st.Health, want) {
		t.Errorf("seeded health %v, want %v", st.Health, want)
	}
}
