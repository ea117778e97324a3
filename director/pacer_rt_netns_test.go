package director_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// TestNetnsPacerRTPriority: [site] pacer_rt_priority runs the advert
// pacer's thread in SCHED_RR at that priority (built as make build ships
// it, with cgo: the cgo tier); a pure-Go build has no pacer, and the
// daemon refuses to start rather than run without what the site asked.
func TestNetnsPacerRTPriority(t *testing.T) {
	testenv.NeedNetns(t)
	bin := buildVigil(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.key"), []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	lab := netlab.New(t)
	site := filepath.Join(dir, "site.toml")
	text := strings.Replace(fmt.Sprintf(vipOnlySite, lab.Prefix(), dir, 1), "[site]\n", "[site]\npacer_rt_priority = 7\n", 1)
	if err := os.WriteFile(site, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	h1 := lab.AddHost("vs1", "10.99.0.1/24")
	d1 := startDaemon(t, h1, bin, site, dir)

	if os.Getenv("VIGIL_TEST_CGO") != "1" {
		d1.wait(t, 10*time.Second)
		b, _ := os.ReadFile(d1.log)
		if d1.cmd.ProcessState.Success() || !strings.Contains(string(b), "pacer") {
			t.Fatalf("a build without the pacer started with pacer_rt_priority set (exit %v):\n%s", d1.cmd.ProcessState, b)
		}
		t.Logf("pure-Go build refused pacer_rt_priority: %s", lastLine(string(b)))
		return
	}
	eventually(t, 10*time.Second, "vs1 master (alone)", func() bool { return instanceState(t, d1) == "master" })
	pid := d1.cmd.Process.Pid
	var policy, prio int
	eventually(t, 5*time.Second, "a vigil-pacer thread in SCHED_RR at priority 7", func() bool {
		comms, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/comm", pid))
		for _, c := range comms {
			if b, err := os.ReadFile(c); err != nil || strings.TrimSpace(string(b)) != "vigil-pacer" {
				continue
			}
			stat, err := os.ReadFile(filepath.Join(filepath.Dir(c), "stat"))
			if err != nil {
				continue
			}
			// Fields after the command: rt_priority is field 40, policy 41.
			f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
			prio, _ = strconv.Atoi(f[40-3])
			policy, _ = strconv.Atoi(f[41-3])
			return policy == 2 && prio == 7
		}
		return false
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
