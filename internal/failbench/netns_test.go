package failbench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/testenv"
)

// TestNetnsKeepalivedFailover runs the whole harness once per failure kind
// against keepalived at 100 ms adverts: the lab, responders, agent,
// failover, recovery and the usage window all have to work for it to pass.
// It checks that figures were measured, never how fast they are.
func TestNetnsKeepalivedFailover(t *testing.T) {
	testenv.NeedNetns(t, "keepalived")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Config{
		RigConfig: RigConfig{Self: self, WorkDir: t.TempDir(), Port: 8080, Every: 5 * time.Millisecond,
			Timeout: 250 * time.Millisecond, Version: 3, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Impls:           []Impl{Keepalived{}},
		Adverts:         []time.Duration{100 * time.Millisecond},
		Kinds:           []string{Crash, Stop},
		Runs:            1,
		ResourceAdverts: []time.Duration{100 * time.Millisecond},
		ResourceWindow:  time.Second,
	}
	rep := Bench(ctx, cfg)
	if len(rep.Cases) != 2 {
		t.Fatalf("%d cases, want 2", len(rep.Cases))
	}
	for _, c := range rep.Cases {
		if c.Err != "" || len(c.Runs) != 1 {
			t.Fatalf("%s %s: err %q, %d runs", c.Kind, c.Advert, c.Err, len(c.Runs))
		}
		r := c.Runs[0]
		if r.Err != "" {
			t.Fatalf("%s run: %s", c.Kind, r.Err)
		}
		if r.Outage <= 0 || r.LastAdvert <= 0 || r.Takeover <= 0 || r.Announce <= 0 || r.PreemptTime <= 0 {
			t.Errorf("%s run: a figure was not measured: %+v", c.Kind, r)
		}
		// The new master cannot answer before it has announced itself.
		if r.LastAdvert < r.Takeover {
			t.Errorf("%s run: answer before the new master's first advert: %+v", c.Kind, r)
		}
		if c.Kind == Stop && r.VIPLeft {
			t.Errorf("keepalived left the VIP behind on stop")
		}
	}
	if len(rep.Usage) != 2 {
		t.Fatalf("usage rows %+v", rep.Usage)
	}
	for _, u := range rep.Usage {
		if u.Err != "" || u.RSSKB <= 0 || u.Procs < 1 {
			t.Errorf("usage %s: %+v", u.Role, u)
		}
	}
}
