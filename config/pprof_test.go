package config

import (
	"strings"
	"testing"
)

// pprof serves profiles on the metrics address: it is off by default and
// needs a metrics address to mean anything.
func TestPprofNeedsMetricsAddress(t *testing.T) {
	for _, tc := range []struct {
		name, site, msg string
		pprof           bool
	}{
		{"default off", "", "", false},
		{"on with a metrics address", "metrics_address = \"127.0.0.1:9477\"\npprof = true\n", "", true},
		{"on without one", "pprof = true\n", "pprof = true needs metrics_address", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(base, "[site]\nname = \"www\"\n", "[site]\nname = \"www\"\n"+tc.site, 1)
			s, err := Parse("site.toml", []byte(src))
			if tc.msg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "site.toml:") {
					t.Fatalf("err %v, want one naming site.toml and %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Settings.Pprof != tc.pprof {
				t.Fatalf("pprof %v, want %v", s.Settings.Pprof, tc.pprof)
			}
		})
	}
}
