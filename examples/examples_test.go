package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vigil-lb/vigil/config"
)

func siteFiles(t *testing.T) []string {
	files, err := filepath.Glob("*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no site files here: %v", err)
	}
	return files
}

// TestExamplesAreValid loads every site file and checks that each
// director gets a sane election: one master per instance and a failover
// time within what the advert interval allows.
func TestExamplesAreValid(t *testing.T) {
	for _, f := range siteFiles(t) {
		t.Run(f, func(t *testing.T) {
			s, err := config.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			for i := range s.Instances {
				in := &s.Instances[i]
				masters := 0
				for j := range s.Directors {
					if s.Role(in, &s.Directors[j]) == "master" {
						masters++
					}
				}
				if masters != 1 {
					t.Errorf("instance %s: %d masters", in.Name, masters)
				}
				ft, next := s.FailoverTime(in)
				adv := in.AdvertInterval.Duration
				if len(s.Directors) > 1 && (next == nil || ft <= 3*adv || ft >= 4*adv) {
					t.Errorf("instance %s: failover %v via %v, want 3..4 x %v", in.Name, ft, next, adv)
				}
			}
		})
	}
}

// TestVigilCheck builds the vigil binary and runs `vigil check` on every
// site file, as a user would.
func TestVigilCheck(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	bin := filepath.Join(t.TempDir(), "vigil")
	build := exec.Command(goBin, "build", "-o", bin, "github.com/vigil-lb/vigil/cmd/vigil")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build vigil: %v\n%s", err, out)
	}
	for _, f := range siteFiles(t) {
		out, err := exec.Command(bin, "check", "-c", f).CombinedOutput()
		if err != nil {
			t.Errorf("vigil check -c %s: %v\n%s", f, err, out)
			continue
		}
		if !strings.Contains(string(out), "failover time") {
			t.Errorf("vigil check -c %s prints no failover time:\n%s", f, out)
		}
	}
}
