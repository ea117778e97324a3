package ipvs

import (
	"context"
	"errors"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"

	"github.com/vigil-lb/vigil/internal/testenv"
)

// TestGuestHandleRecreatedAfterTimeout: a call that outlives CallTimeout
// returns DeadlineExceeded, the handle is replaced, and the next call works
// on the new one (a lost netlink reply would otherwise hang moby/ipvs).
func TestGuestHandleRecreatedAfterTimeout(t *testing.T) {
	testenv.NeedGuest(t)
	k, err := NewKernel(KernelOptions{CallTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx := context.Background()
	old := k.h
	release := make(chan struct{})
	err = k.do(ctx, "stuck call", func(h *mobyipvs.Handle) error {
		<-release // stands in for a reply that never comes
		return nil
	})
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stuck call: %v, want DeadlineExceeded", err)
	}
	if k.h != nil {
		t.Fatal("handle kept after a timeout")
	}
	if _, err := k.Services(ctx); err != nil {
		t.Fatalf("call after the timeout: %v", err)
	}
	if k.h == nil || k.h == old {
		t.Fatal("no new handle after the timeout")
	}
	// A cancelled context also ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k.Services(cctx); err == nil {
		t.Log("call with a cancelled context completed before noticing (allowed)")
	}
}
