package director

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseMetrics parses text-format output with the reference parser, so
// the tests check what Prometheus would read, not our own idea of it.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return fams
}

// sampleKey names one sample as name{k="v",...}, label names sorted and
// values Go-quoted, so that samples compare whatever the output order.
func sampleKey(name string, labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	var b strings.Builder
	b.WriteString(name + "{")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// flatten turns parsed families into sampleKey -> value.
func flatten(t *testing.T, fams map[string]*dto.MetricFamily) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			var v float64
			switch f.GetType() {
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			default:
				t.Fatalf("%s: unexpected type %v", name, f.GetType())
			}
			k := sampleKey(name, labels)
			if _, dup := out[k]; dup {
				t.Errorf("duplicate sample %s", k)
			}
			out[k] = v
		}
	}
	return out
}

// writeFamilies writes fams to w as the handler does.
func writeFamilies(w io.Writer, fams []*family) error {
	b, err := appendFamilies(nil, fams)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// scrape runs the handler for one request.
func scrape(t *testing.T, st Status, method string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	metricsHandler(func() Status { return st }).ServeHTTP(rec, httptest.NewRequest(method, "/metrics", nil))
	return rec
}

// weird holds every character the text format must escape in a label value.
const weird = "a\"b\\c\nd"

// wantFamilies is every family with its type and help: the names, types
// and help strings the metrics had under client_golang.
var wantFamilies = map[string]struct{ typ, help string }{
	"vigil_instance_state":                {"GAUGE", "1 for the instance's current state"},
	"vigil_instance_priority":             {"GAUGE", "effective VRRP priority"},
	"vigil_instance_transitions_total":    {"COUNTER", "state transitions"},
	"vigil_adverts_sent_total":            {"COUNTER", "adverts sent"},
	"vigil_adverts_received_total":        {"COUNTER", "valid adverts received"},
	"vigil_adverts_invalid_total":         {"COUNTER", "adverts dropped, by reason"},
	"vigil_vips_held":                     {"GAUGE", "VIPs this director holds"},
	"vigil_invariant_repairs_total":       {"COUNTER", "times the VIPs were out of step with the election and were repaired"},
	"vigil_vips_evicted_total":            {"COUNTER", "VIPs removed because they were present while not master"},
	"vigil_advert_answers_skipped_total":  {"COUNTER", "adverts of other masters not answered (one answer per advert interval)"},
	"vigil_elections_running":             {"GAUGE", "VRRP elections running in this process (one per instance)"},
	"vigil_dual_master_transients_total":  {"COUNTER", "overlaps of master claims too short to be a dual master (preemptions)"},
	"vigil_real_server_up":                {"GAUGE", "1 when the real server's check says up"},
	"vigil_real_server_ipvs_weight":       {"GAUGE", "weight in the kernel, -1 if absent"},
	"vigil_check_latency_seconds":         {"GAUGE", "latency of the last check"},
	"vigil_real_server_connections_total": {"COUNTER", "IPVS connections scheduled to the real server"},
	"vigil_reconcile_writes_total":        {"COUNTER", "IPVS writes by kind"},
	"vigil_reconcile_errors_total":        {"COUNTER", "IPVS reconcile errors"},
	"vigil_peer_alive":                    {"GAUGE", "1 when the peer is alive on the cluster channel"},
	"vigil_peer_config_drift":             {"GAUGE", "1 when the peer's config digest differs from ours"},
}

func TestMetricsFollowStatus(t *testing.T) {
	full := Status{
		Instances: []InstanceStatus{
			{Name: "www", State: "master", Priority: 150, Transitions: 3, AdvertsSent: 7, AdvertsRecv: 5,
				Invalid:  map[string]uint64{"ttl": 1, "checksum": 2},
				VIPsHeld: []string{"10.0.0.1/24", "10.0.0.2/24"}, Repairs: 2, VIPsEvicted: 1, AnswersSkipped: 9},
			{Name: weird, State: "backup", Priority: 100},
		},
		VirtualServers: []VSStatus{{Name: "www", RealServers: []RSStatus{
			{Address: "10.0.0.3:80", Health: "up", IPVSWeight: 1, Latency: 1500 * time.Microsecond, Conns: 1 << 40},
			{Address: "10.0.0.4:80", Health: "down", IPVSWeight: -1},
		}}},
		Peers:     []PeerStatus{{Name: "vs2", Alive: true, Drift: true}, {Name: weird}},
		Reconcile: ReconcileStatus{Creates: 3, Updates: 4, Deletes: 5, Errors: 1},
		Elections: 2, DualMasterTransients: 4,
	}
	type s = map[string]string
	tests := []struct {
		name   string
		status Status
		want   map[string]float64 // every sample, by sampleKey; no others
	}{{
		name:   "full",
		status: full,
		want: map[string]float64{
			sampleKey("vigil_instance_state", s{"instance": "www", "state": "init"}):             0,
			sampleKey("vigil_instance_state", s{"instance": "www", "state": "backup"}):           0,
			sampleKey("vigil_instance_state", s{"instance": "www", "state": "master"}):           1,
			sampleKey("vigil_instance_state", s{"instance": "www", "state": "fault"}):            0,
			sampleKey("vigil_instance_priority", s{"instance": "www"}):                           150,
			sampleKey("vigil_instance_transitions_total", s{"instance": "www"}):                  3,
			sampleKey("vigil_adverts_sent_total", s{"instance": "www"}):                          7,
			sampleKey("vigil_adverts_received_total", s{"instance": "www"}):                      5,
			sampleKey("vigil_adverts_invalid_total", s{"instance": "www", "reason": "checksum"}): 2,
			sampleKey("vigil_adverts_invalid_total", s{"instance": "www", "reason": "ttl"}):      1,
			sampleKey("vigil_vips_held", s{"instance": "www"}):                                   2,
			sampleKey("vigil_invariant_repairs_total", s{"instance": "www"}):                     2,
			sampleKey("vigil_vips_evicted_total", s{"instance": "www"}):                          1,
			sampleKey("vigil_advert_answers_skipped_total", s{"instance": "www"}):                9,
			sampleKey("vigil_elections_running", s{}):                                            2,
			sampleKey("vigil_dual_master_transients_total", s{}):                                 4,

			sampleKey("vigil_instance_state", s{"instance": weird, "state": "init"}):   0,
			sampleKey("vigil_instance_state", s{"instance": weird, "state": "backup"}): 1,
			sampleKey("vigil_instance_state", s{"instance": weird, "state": "master"}): 0,
			sampleKey("vigil_instance_state", s{"instance": weird, "state": "fault"}):  0,
			sampleKey("vigil_instance_priority", s{"instance": weird}):                 100,
			sampleKey("vigil_instance_transitions_total", s{"instance": weird}):        0,
			sampleKey("vigil_adverts_sent_total", s{"instance": weird}):                0,
			sampleKey("vigil_adverts_received_total", s{"instance": weird}):            0,
			sampleKey("vigil_vips_held", s{"instance": weird}):                         0,
			sampleKey("vigil_invariant_repairs_total", s{"instance": weird}):           0,
			sampleKey("vigil_vips_evicted_total", s{"instance": weird}):                0,
			sampleKey("vigil_advert_answers_skipped_total", s{"instance": weird}):      0,

			sampleKey("vigil_real_server_up", s{"virtual_server": "www", "real_server": "10.0.0.3:80"}):                1,
			sampleKey("vigil_real_server_ipvs_weight", s{"virtual_server": "www", "real_server": "10.0.0.3:80"}):       1,
			sampleKey("vigil_check_latency_seconds", s{"virtual_server": "www", "real_server": "10.0.0.3:80"}):         0.0015,
			sampleKey("vigil_real_server_connections_total", s{"virtual_server": "www", "real_server": "10.0.0.3:80"}): 1 << 40,
			sampleKey("vigil_real_server_up", s{"virtual_server": "www", "real_server": "10.0.0.4:80"}):                0,
			sampleKey("vigil_real_server_ipvs_weight", s{"virtual_server": "www", "real_server": "10.0.0.4:80"}):       -1,
			sampleKey("vigil_check_latency_seconds", s{"virtual_server": "www", "real_server": "10.0.0.4:80"}):         0,
			sampleKey("vigil_real_server_connections_total", s{"virtual_server": "www", "real_server": "10.0.0.4:80"}): 0,

			sampleKey("vigil_reconcile_writes_total", s{"kind": "create"}): 3,
			sampleKey("vigil_reconcile_writes_total", s{"kind": "update"}): 4,
			sampleKey("vigil_reconcile_writes_total", s{"kind": "delete"}): 5,
			sampleKey("vigil_reconcile_errors_total", s{}):                 1,

			sampleKey("vigil_peer_alive", s{"peer": "vs2"}):        1,
			sampleKey("vigil_peer_config_drift", s{"peer": "vs2"}): 1,
			sampleKey("vigil_peer_alive", s{"peer": weird}):        0,
			sampleKey("vigil_peer_config_drift", s{"peer": weird}): 0,
		},
	}, {
		// Nothing configured yet: still a valid scrape, with the
		// reconciler's counters and no empty families.
		name:   "empty",
		status: Status{},
		want: map[string]float64{
			sampleKey("vigil_elections_running", s{}):                      0,
			sampleKey("vigil_dual_master_transients_total", s{}):           0,
			sampleKey("vigil_reconcile_writes_total", s{"kind": "create"}): 0,
			sampleKey("vigil_reconcile_writes_total", s{"kind": "update"}): 0,
			sampleKey("vigil_reconcile_writes_total", s{"kind": "delete"}): 0,
			sampleKey("vigil_reconcile_errors_total", s{}):                 0,
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := scrape(t, tc.status, http.MethodGet)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			text := rec.Body.String()
			fams := parseMetrics(t, text)
			for name, f := range fams {
				w, ok := wantFamilies[name]
				if !ok {
					t.Errorf("unexpected family %s", name)
					continue
				}
				if got := f.GetType().String(); got != w.typ {
					t.Errorf("%s: type %s, want %s", name, got, w.typ)
				}
				if got := f.GetHelp(); got != w.help {
					t.Errorf("%s: help %q, want %q", name, got, w.help)
				}
			}
			// The parser drops families without samples; count the
			// HELP lines to see none was written.
			if n := strings.Count(text, "# HELP "); n != len(fams) {
				t.Errorf("%d HELP lines for %d non-empty families", n, len(fams))
			}
			got := flatten(t, fams)
			for k, v := range tc.want {
				if g, ok := got[k]; !ok {
					t.Errorf("missing %s", k)
				} else if g != v {
					t.Errorf("%s = %v, want %v", k, g, v)
				}
			}
			for k := range got {
				if _, ok := tc.want[k]; !ok {
					t.Errorf("unexpected %s", k)
				}
			}
			if t.Failed() {
				t.Logf("scrape:\n%s", text)
			}
		})
	}
}

// TestMetricsStatusDeterministic: two scrapes of one Status are the same
// bytes, whatever order the Invalid map iterates in.
func TestMetricsStatusDeterministic(t *testing.T) {
	invalid := map[string]uint64{}
	for _, r := range []string{"ttl", "checksum", "auth", "vrid", "length", "version", "type", "addrs"} {
		invalid[r] = uint64(len(r))
	}
	st := Status{Instances: []InstanceStatus{{Name: "www", State: "master", Invalid: invalid}}}
	first := scrape(t, st, http.MethodGet).Body.String()
	for range 20 {
		if again := scrape(t, st, http.MethodGet).Body.String(); again != first {
			t.Fatalf("scrapes differ:\n%s\n---\n%s", first, again)
		}
	}
	// And the reasons come sorted.
	var reasons []string
	for _, line := range strings.Split(first, "\n") {
		if _, rest, ok := strings.Cut(line, `vigil_adverts_invalid_total{instance="www",reason="`); ok {
			r, _, _ := strings.Cut(rest, `"`)
			reasons = append(reasons, r)
		}
	}
	if len(reasons) != len(invalid) || !sort.StringsAreSorted(reasons) {
		t.Errorf("reasons %v, want all %d sorted", reasons, len(invalid))
	}
}

// TestMetricsWriteFormat pins the exact text: escaping, value spelling,
// label order, a family without labels, and an empty family left out.
func TestMetricsWriteFormat(t *testing.T) {
	fams := []*family{
		{name: "m_empty", help: "never written", typ: "gauge", labels: []string{"a"}},
		{name: "m_escape", help: "back\\slash\nnew \"line\"", typ: "counter", labels: []string{"b", "a"},
			samples: []sample{{values: []string{weird, `\n`}, v: 2}}},
		{name: "m_plain", help: "no labels", typ: "gauge", samples: []sample{{v: 0.25}}},
	}
	want := `# HELP m_escape back\\slash\nnew "line"
# TYPE m_escape counter
m_escape{b="a\"b\\c\nd",a="\\n"} 2
# HELP m_plain no labels
# TYPE m_plain gauge
m_plain 0.25
`
	var b strings.Builder
	if err := writeFamilies(&b, fams); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}

	// A sample whose label values do not match the names is refused.
	bad := []*family{{name: "m", help: "h", typ: "gauge", labels: []string{"a"}, samples: []sample{{v: 1}}}}
	if err := writeFamilies(io.Discard, bad); err == nil {
		t.Error("mismatched label values written")
	}
}

func TestMetricsValueFormat(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"},
		{1, "1"},
		{-1, "-1"},
		{150, "150"},
		{0.0015, "0.0015"},
		{1 << 40, "1.099511627776e+12"},
		{math.MaxUint64, "1.8446744073709552e+19"},
		{1.5e-7, "1.5e-07"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
		{math.NaN(), "NaN"},
	} {
		if got := string(appendFloat(nil, tc.v)); got != tc.want {
			t.Errorf("appendFloat(%v) = %q, want %q", tc.v, got, tc.want)
		}
		// And the reference parser reads it back.
		var b strings.Builder
		f := []*family{{name: "m", help: "h", typ: "gauge", samples: []sample{{v: tc.v}}}}
		if err := writeFamilies(&b, f); err != nil {
			t.Fatal(err)
		}
		got := parseMetrics(t, b.String())["m"].GetMetric()[0].GetGauge().GetValue()
		if got != tc.v && !(math.IsNaN(got) && math.IsNaN(tc.v)) {
			t.Errorf("%v read back as %v", tc.v, got)
		}
	}
}

// TestMetricsEscapeRoundTrip: whatever a label value or help string holds,
// the reference parser reads back exactly that.
func TestMetricsEscapeRoundTrip(t *testing.T) {
	for _, v := range []string{
		"", "plain", `"`, `\`, "\n", weird, `\n`, `\"`, `x\`, "\\\n\"", "tab\there", "ünïcødé", "a}b{c=d,e",
	} {
		var b strings.Builder
		f := []*family{{name: "m", help: v, typ: "counter", labels: []string{"l"}, samples: []sample{{values: []string{v}, v: 1}}}}
		if err := writeFamilies(&b, f); err != nil {
			t.Fatal(err)
		}
		m := parseMetrics(t, b.String())["m"]
		if got := m.GetMetric()[0].GetLabel()[0].GetValue(); got != v {
			t.Errorf("label %q read back as %q from\n%s", v, got, b.String())
		}
		if got := m.GetHelp(); got != v {
			t.Errorf("help %q read back as %q from\n%s", v, got, b.String())
		}
	}
}

func TestMetricsMethods(t *testing.T) {
	srv := httptest.NewServer(metricsHandler(func() Status { return Status{} }))
	defer srv.Close()
	for _, tc := range []struct {
		method   string
		code     int
		wantBody bool
	}{
		{http.MethodGet, http.StatusOK, true},
		{http.MethodHead, http.StatusOK, false},
		{http.MethodPost, http.StatusMethodNotAllowed, true},
		{http.MethodPut, http.StatusMethodNotAllowed, true},
		{http.MethodDelete, http.StatusMethodNotAllowed, true},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s: status %d, want %d", tc.method, resp.StatusCode, tc.code)
		}
		if (len(body) > 0) != tc.wantBody {
			t.Errorf("%s: body %q", tc.method, body)
		}
		if tc.code == http.StatusMethodNotAllowed {
			if a := resp.Header.Get("Allow"); a != "GET, HEAD" {
				t.Errorf("%s: Allow %q", tc.method, a)
			}
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", tc.method, ct)
		}
		if tc.method == http.MethodHead && resp.ContentLength <= 0 {
			t.Errorf("HEAD: Content-Length %d, want the GET body's", resp.ContentLength)
		}
	}
}

// TestMetricsListenError: a busy address is reported, wrapped, at once.
func TestMetricsListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = serveMetrics(ctx, ln.Addr().String(), func() Status { return Status{} })
	if err == nil || !strings.Contains(err.Error(), "metrics listen on "+ln.Addr().String()) {
		t.Fatalf("err = %v, want the listen error", err)
	}
}
