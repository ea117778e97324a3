package director_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

const gossipSite = `
[site]
name = "gossip-%[1]s"

[[director]]
name = "vs1"
address = "10.99.0.1"
interface = "eth0"
priority = 150

[[director]]
name = "vs2"
address = "10.99.0.2"
interface = "eth0"
priority = 100

[cluster]
port = 7946
secret_key_file = "%[2]s/cluster.key"

[[instance]]
name = "www"
vrid = 51
advert_interval = "100ms"
transport = "gossip"
vips = ["10.99.0.101/24"]
garp = { repeat = %[3]d }
`

// blockVRRP makes h drop IP protocol 112 and multicast both ways and
// counts what it dropped, as a cloud network would.
func blockVRRP(t *testing.T, h *netlab.Host) {
	t.Helper()
	rules := `table inet vigiltest {
  chain in { type filter hook input priority 0; ip protocol 112 counter drop; ip6 nexthdr 112 counter drop; ip daddr 224.0.0.0/4 counter drop; }
  chain out { type filter hook output priority 0; ip protocol 112 counter drop; ip6 nexthdr 112 counter drop; ip daddr 224.0.0.0/4 counter drop; }
}
`
	f := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	h.MustRun(t, "nft", "-f", f)
}

// droppedVRRP sums the packets h's protocol-112 rules dropped.
func droppedVRRP(t *testing.T, h *netlab.Host) int {
	out := h.MustRun(t, "nft", "list", "table", "inet", "vigiltest")
	n := 0
	for _, m := range regexp.MustCompile(`(?:protocol|nexthdr) 112 counter packets (\d+)`).FindAllStringSubmatch(out, -1) {
		var v int
		fmt.Sscan(m[1], &v)
		n += v
	}
	return n
}

// TestNetnsDirectorGossip runs the election over the cluster channel
// where VRRP cannot pass (nftables drops IP protocol 112 and multicast):
// the backup takes over within Master_Down_Interval plus a margin when the
// master dies, and the firewall counters prove no VRRP packet was even
// sent. A site file changed on one director raises drift on both.
func TestNetnsDirectorGossip(t *testing.T) {
	testenv.NeedNetns(t, "nft")
	bin := buildVigil(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.key"), []byte("a pass phrase of some length\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lab := netlab.New(t)
	write := func(path string, repeat int) {
		if err := os.WriteFile(path, []byte(fmt.Sprintf(gossipSite, lab.Prefix(), dir, repeat)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	site1, site2 := filepath.Join(dir, "site1.toml"), filepath.Join(dir, "site2.toml")
	write(site1, 2)
	write(site2, 2)
	h1 := lab.AddHost("vs1", "10.99.0.1/24")
	h2 := lab.AddHost("vs2", "10.99.0.2/24")
	blockVRRP(t, h1)
	blockVRRP(t, h2)
	d1 := startDaemon(t, h1, bin, site1, dir)
	d2 := startDaemon(t, h2, bin, site2, dir)
	defer func() {
		if t.Failed() {
			logs(t, d1, d2)
		}
	}()
	eventually(t, 15*time.Second, "vs1 master, vs2 backup over gossip", func() bool {
		return instanceState(t, d1) == "master" && hasVIP(h1) && instanceState(t, d2) == "backup" && !hasVIP(h2)
	})
	// Stable for a while: with VRRP blocked, only gossip keeps vs2 backup.
	time.Sleep(time.Second)
	if instanceState(t, d2) != "backup" {
		t.Fatalf("vs2 left backup with vs1 alive: %s", instanceState(t, d2))
	}

	// Drift: vs2 runs a changed file.
	write(site2, 3)
	d2.signal(syscall.SIGHUP)
	for _, d := range []*daemon{d1, d2} {
		eventually(t, 10*time.Second, d.name+" reports drift", func() bool {
			st, err := d.status(t)
			return err == nil && strings.Contains(strings.Join(st.Warnings, "\n"), "config drift")
		})
	}
	write(site2, 2)
	d2.signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "drift cleared on vs1", func() bool {
		st, err := d1.status(t)
		return err == nil && !strings.Contains(strings.Join(st.Warnings, "\n"), "config drift")
	})

	// The master dies: link cut and process killed.
	start := time.Now()
	lab.Cut(h1)
	d1.signal(syscall.SIGKILL)
	took := eventually(t, 10*time.Second, "vs2 master over gossip", func() bool {
		return instanceState(t, d2) == "master" && hasVIP(h2)
	})
	t.Logf("vs2 master %v after the crash (Master_Down_Interval 361ms)", took)
	if os.Getenv("VIGIL_TEST_LOGS") != "" {
		logs(t, d2)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("takeover took %v, want about 361ms (+ margin)", time.Since(start))
	}
	if n1, n2 := droppedVRRP(t, h1), droppedVRRP(t, h2); n1 != 0 || n2 != 0 {
		t.Errorf("the VRRP wire was used: %d and %d protocol-112 packets dropped", n1, n2)
	}
	st, _ := d2.status(t)
	if st.Instances[0].AdvertsRecv == 0 {
		t.Error("vs2 received no adverts over gossip")
	}
}
