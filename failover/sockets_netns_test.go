package failover_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/failover"
	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// exhaustFDs lowers RLIMIT_NOFILE to just above what is open and fills
// the rest, so the next socket(2) or open(2) fails with EMFILE. The
// returned func gives everything back.
func exhaustFDs(t *testing.T) (restore func()) {
	t.Helper()
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := orig
	low.Cur = uint64(len(ents) + 32)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var fill []*os.File
	restore = func() {
		for _, f := range fill {
			f.Close()
		}
		fill = nil
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Error(err)
		}
	}
	for {
		f, err := os.Open(os.DevNull)
		if errors.Is(err, syscall.EMFILE) {
			return restore
		}
		if err != nil {
			restore()
			t.Fatal(err)
		}
		fill = append(fill, f)
	}
}

// TestNetnsTakeoverNeedsNoNewFD: the sockets for gratuitous ARP and
// unsolicited NA are opened with the Claimer and reused, so a takeover
// while the process has no file descriptor left still puts both on the
// wire. They used to be opened at the first round, which failed with
// "too many open files" and sent nothing.
func TestNetnsTakeoverNeedsNoNewFD(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	vs1 := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	client := lab.AddHost("client", "10.99.0.3/24", "fd99::3/64")
	waitDAD(t, vs1)
	v4, v6 := netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("fd99::100")
	capt := startCapture(t, client, v4, v6)
	c := newClaimer(t, vs1, failover.ClaimerConfig{
		VIPs:     []failover.VIP{mustVIP("10.99.0.100/24", "eth0", ""), mustVIP("fd99::100/128", "eth0", "")},
		Announce: failover.AnnounceConfig{Repeat: 0},
	})

	restore := exhaustFDs(t)
	err := c.BecomeMaster(context.Background())
	st := c.Status().Announce
	restore()
	if err != nil {
		t.Fatalf("become master without a free fd: %v", err)
	}
	if st.Errors != 0 || st.Sent != 3 {
		t.Fatalf("announce stats without a free fd: %+v, want 2 ARP and 1 NA sent without error", st)
	}
	waitUntil(t, "the ARP and NA on the wire", 5*time.Second, func() bool { a, n := capt.counts(); return a >= 2 && n >= 1 })
}

// waitDAD waits until h's IPv6 addresses are no longer tentative, so the
// advertisement has a source address.
func waitDAD(t *testing.T, h *netlab.Host) {
	t.Helper()
	waitUntil(t, "IPv6 DAD on "+h.Name, 5*time.Second, func() bool {
		out, err := h.Run("ip", "-6", "addr", "show", "dev", "eth0", "tentative")
		return err == nil && out == ""
	})
}
