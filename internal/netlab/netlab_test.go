package netlab_test

import (
	"strings"
	"testing"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

func TestNetnsLabPingAndCut(t *testing.T) {
	testenv.NeedNetns(t, "ping")
	lab := netlab.New(t)
	a := lab.AddHost("a", "10.99.0.1/24")
	b := lab.AddHost("b", "10.99.0.2/24", "fd99::2/64")
	if len(a.MAC) != 6 || a.MAC.String() == b.MAC.String() {
		t.Fatalf("bad MACs %v %v", a.MAC, b.MAC)
	}
	a.MustRun(t, "ping", "-c1", "-W2", "10.99.0.2")
	lab.Cut(b)
	if out, err := a.Run("ping", "-c1", "-W1", "10.99.0.2"); err == nil {
		t.Fatalf("ping crossed a cut link: %s", out)
	}
	lab.Heal(b)
	a.MustRun(t, "ping", "-c1", "-W2", "10.99.0.2")
	hd := b.Handle()
	defer hd.Close()
	link, err := hd.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if got := link.Attrs().HardwareAddr.String(); got != b.MAC.String() {
		t.Fatalf("MAC %s, handle says %s", b.MAC, got)
	}
	var seen string
	if err := b.Do(func() error {
		out, err := exec("ip", "-o", "addr", "show", "dev", "eth0")
		seen = out
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(seen, "fd99::2/64") {
		t.Fatalf("Do did not run inside b's netns: %s", seen)
	}
}
