package director_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// TestNetnsDrill runs `vigil drill --back` against two real daemons on a
// VIP-only site whose directors also serve HTTP on the VIP, probing from
// a client namespace: the preflight passes, vs2 takes over after the
// priority-0 advert, the client's interruption is measured and bounded,
// vs1 takes the VIP back.
func TestNetnsDrill(t *testing.T) {
	testenv.NeedNetns(t)
	bin := buildVigil(t)
	labsrv := filepath.Join(t.TempDir(), "labsrv")
	if out, err := exec.Command("go", "build", "-o", labsrv, "../examples/lab/labsrv").CombinedOutput(); err != nil {
		t.Fatalf("build labsrv: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.key"), []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	lab := netlab.New(t)
	site := filepath.Join(dir, "site.toml")
	if err := os.WriteFile(site, []byte(fmt.Sprintf(vipOnlySite, lab.Prefix(), dir, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	h1 := lab.AddHost("vs1", "10.99.0.1/24")
	h2 := lab.AddHost("vs2", "10.99.0.2/24")
	client := lab.AddHost("client", "10.99.0.10/24")
	for _, h := range []*netlab.Host{h1, h2} {
		srv := h.Command(context.Background(), labsrv, "serve", "-name", h.Name, "-http", ":80", "-line", "")
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
	}
	d1 := startDaemon(t, h1, bin, site, dir)
	d2 := startDaemon(t, h2, bin, site, dir)
	defer func() {
		if t.Failed() {
			logs(t, d1, d2)
		}
	}()
	eventually(t, 10*time.Second, "vs1 master, vs2 backup, both on the cluster channel", func() bool {
		s, err := d1.status(t)
		return err == nil && instanceState(t, d1) == "master" && instanceState(t, d2) == "backup" &&
			len(s.Peers) == 1 && s.Peers[0].Alive && s.Peers[0].Instances["www"] == "backup"
	})

	out, err := client.Run(bin, "drill", "-c", site, "--socket", d1.sock, "--probe", "http://10.99.0.101/", "--back", "--json", "--max-outage", "3s")
	var rep struct {
		OK        bool
		Failure   string
		From, To  string
		Preflight []string
		Timeline  []struct {
			AtMS  float64 `json:"at_ms"`
			Event string
		}
		Probes []struct {
			Sent, Failed int
			OutageMS     float64 `json:"outage_ms"`
		}
		Back *struct {
			TookMS float64 `json:"took_ms"`
		}
	}
	if jerr := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep); jerr != nil {
		t.Fatalf("drill output: %v / %v\n%s", err, jerr, out)
	}
	t.Logf("drill: %s", out)
	if err != nil || !rep.OK {
		t.Fatalf("drill failed: %v: %s", err, rep.Failure)
	}
	if rep.From != "vs1" || rep.To != "vs2" || len(rep.Preflight) != 0 {
		t.Errorf("drill from %s to %s, preflight %v; want vs1 -> vs2, no problems", rep.From, rep.To, rep.Preflight)
	}
	var events []string
	for _, e := range rep.Timeline {
		events = append(events, e.Event)
	}
	all := strings.Join(events, "\n")
	for _, want := range []string{"resigned", "vs2 master", "added the VIPs", "first GARP", "first answer", "master again"} {
		if !strings.Contains(all, want) {
			t.Errorf("timeline lacks %q:\n%s", want, all)
		}
	}
	if len(rep.Probes) != 1 || rep.Probes[0].Sent < 10 || rep.Back == nil {
		t.Fatalf("probes %+v back %+v", rep.Probes, rep.Back)
	}
	eventually(t, 5*time.Second, "vs1 master again after the drill", func() bool {
		return instanceState(t, d1) == "master" && hasVIP(h1) && !hasVIP(h2)
	})
}
