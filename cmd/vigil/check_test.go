package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func hostnameIs(name string) func() (string, error) {
	return func() (string, error) { return name, nil }
}

func noHostname() (string, error) { return "", errors.New("no hostname") }

func check(t *testing.T, host func() (string, error), args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runCheck(args, &out, &errb, host)
	return code, out.String(), errb.String()
}

func TestCheckExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.toml")
	if len(files) < 4 {
		t.Fatalf("found %d examples, want at least 4", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			code, out, errs := check(t, noHostname, "-c", f)
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, errs)
			}
			for _, want := range []string{"is valid (digest ", "failover time", "Master_Down_Interval", "role master", "role backup", "virtual server", "real server", "check ", "connections: "} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestCheckFiveMistakes(t *testing.T) {
	code, _, errs := check(t, noHostname, "-c", "../../config/testdata/five-mistakes.toml")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	pos := regexp.MustCompile(`^\.\./\.\./config/testdata/five-mistakes\.toml:\d+:\d+: `)
	n := 0
	for _, l := range lines {
		if pos.MatchString(l) {
			n++
		}
	}
	if n != 5 || !strings.HasSuffix(errs, "5 errors\n") {
		t.Errorf("want 5 positioned errors and a count, got:\n%s", errs)
	}
}

func TestCheckNodes(t *testing.T) {
	const site = "../../examples/www-telnet.toml"
	cases := []struct {
		name       string
		host       func() (string, error)
		args       []string
		code       int
		want, deny []string
	}{
		{"node backup", noHostname, []string{"--node", "vs2"}, 0,
			[]string{"director vs2", "role backup, priority 100 (master: vs1 with 150)", "failover time if vs1 fails: 3.609s (vs2 takes over)"}, []string{"director vs1", "every director"}},
		{"node master", noHostname, []string{"-node", "vs1"}, 0,
			[]string{"director vs1", "role master, priority 150", "Master_Down_Interval here 3.414s"}, []string{"director vs2"}},
		{"hostname picks director", hostnameIs("vs2.example.com"), nil, 0,
			[]string{"director vs2"}, []string{"director vs1", "every director"}},
		{"unknown hostname shows all", hostnameIs("laptop"), nil, 0,
			[]string{"director vs1", "director vs2", "every director"}, nil},
		{"unknown node", noHostname, []string{"--node", "vs3"}, 1, nil, nil},
		{"quiet", noHostname, []string{"-q"}, 0, nil, []string{"director"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := check(t, c.host, append([]string{"-c", site}, c.args...)...)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.code, errs)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, d := range c.deny {
				if strings.Contains(out, d) {
					t.Errorf("output has %q:\n%s", d, out)
				}
			}
			if c.code == 1 && !strings.Contains(errs, `no director named "vs3"`) {
				t.Errorf("stderr = %q", errs)
			}
		})
	}
}

func TestCheckUnreadable(t *testing.T) {
	code, _, errs := check(t, noHostname, "-c", filepath.Join(t.TempDir(), "nope.toml"))
	if code != 2 || !strings.Contains(errs, "no such file") {
		t.Errorf("exit %d, stderr %q; want 2 and the reason", code, errs)
	}
	if code, _, _ := check(t, noHostname, "-c", "../../examples/www-telnet.toml", "extra"); code != 2 {
		t.Errorf("stray argument: exit %d, want 2", code)
	}
}

func TestCheckRegistered(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"check", "-q", "-c", "../../examples/www-telnet.toml"}, &out, &errb); code != 0 {
		t.Fatalf("vigil check: exit %d: %s", code, errb.String())
	}
}

// TestCheckCapsErrors: a file with hundreds of problems lists the first
// ones and counts the rest, so neither a terminal nor a log gets a line per
// problem (10 MB of unknown keys once printed 700,000 lines).
func TestCheckCapsErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("[site]\nname = \"www\"\n")
	for i := range 500 {
		fmt.Fprintf(&b, "k%03d = 1\n", i)
	}
	file := filepath.Join(t.TempDir(), "many.toml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := check(t, noHostname, "-c", file)
	lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
	if code != 1 || len(lines) != 22 {
		t.Fatalf("exit %d, %d lines, want 1 and 22 (20 errors, a count of the rest, the total):\n%.2000s", code, len(lines), errs)
	}
	pos := regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:\d+:\d+: `)
	for _, l := range lines[:20] {
		if !pos.MatchString(l) {
			t.Errorf("not a positioned error: %q", l)
		}
	}
	var more, total int
	if _, err := fmt.Sscanf(lines[20], "... and %d more errors", &more); err != nil {
		t.Fatalf("line 21 %q: %v", lines[20], err)
	}
	if _, err := fmt.Sscanf(lines[21], "vigil check: "+file+": %d errors", &total); err != nil || total != more+20 || total < 500 {
		t.Errorf("count lines %q, %q: want the total, at least 500, and 20 fewer more (%v)", lines[20], lines[21], err)
	}
}

// TestCheckSaysWhetherConnectionsSurvive: vigil check says, per site,
// whether established connections survive a failover, and why not.
func TestCheckSaysWhetherConnectionsSurvive(t *testing.T) {
	seed, err := os.ReadFile("../../examples/www-telnet.toml")
	if err != nil {
		t.Fatal(err)
	}
	off := strings.Replace(string(seed), "[ipvs_sync]", "[ipvs_sync]\nenabled = false", 1)
	path := filepath.Join(t.TempDir(), "off.toml")
	if err := os.WriteFile(path, []byte(off), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ site, want string }{
		{"../../examples/www-telnet.toml", "connections: established connections survive a failover: IPVS connection sync on eth0"},
		{path, "connections: a failover resets established connections: [ipvs_sync] enabled = false"},
		{"../../examples/ipv6.toml", "connections: "},
	} {
		code, out, errs := check(t, noHostname, "-c", c.site)
		if code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("vigil check -c %s: exit %d, want output with %q:\n%s%s", c.site, code, c.want, out, errs)
		}
	}
}
