package drill

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-lb/vigil/director"
)

// controller is a daemon's control side: a fixed status, and the
// handover/resume requests it got.
type controller struct {
	st  director.Status
	err error // what handover and resume answer

	mu   sync.Mutex
	seen []string
}

func (c *controller) Status() director.Status { return c.st }
func (c *controller) Reload() error           { return errors.New("not in a drill") }
func (c *controller) Handover(inst string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, "handover "+inst)
	return c.err
}

func (c *controller) Resume(inst string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, "resume "+inst)
	return c.err
}

// serve runs a real control socket for c; the path is short, as unix
// socket paths must be.
func serve(t *testing.T, c director.Controller) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "drill")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := director.ServeControl(ctx, path, c, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestControlSocket(t *testing.T) {
	c := &controller{st: goodStatus(testSite())}
	s := ControlSocket{Path: serve(t, c)}
	ctx := context.Background()
	st, err := s.Status(ctx)
	if err != nil || st.Node != "vs1" || len(st.Instances) != 1 || st.Instances[0].State != "master" {
		t.Fatalf("status %+v, %v; want vs1's", st, err)
	}
	if err := s.Handover(ctx, "www"); err != nil {
		t.Fatal(err)
	}
	if err := s.Resume(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.seen, ", "); got != "handover www, resume " {
		t.Errorf("daemon got %q, want a handover of www then a resume of every instance", got)
	}

	c.err = errors.New(`unknown instance "mail"`)
	if err := s.Handover(ctx, "mail"); err == nil || err.Error() != `unknown instance "mail"` {
		t.Errorf("handover refused by the daemon: error %v, want the daemon's", err)
	}

	none := ControlSocket{Path: filepath.Join(t.TempDir(), "none.sock")}
	if _, err := none.Status(ctx); err == nil || !strings.Contains(err.Error(), "no vigil daemon at") {
		t.Errorf("status without a daemon: %v", err)
	}
	if err := none.Resume(ctx, "www"); err == nil {
		t.Error("resume without a daemon succeeded")
	}
}

// TestRunOnControlSocket: a preflight check through a real control
// socket, as `vigil drill --check` makes it.
func TestRunOnControlSocket(t *testing.T) {
	c := &controller{st: goodStatus(testSite())}
	rep, err := Run(context.Background(), ControlSocket{Path: serve(t, c)}, Options{Site: testSite(), CheckOnly: true})
	if err != nil || !rep.OK || rep.Instance != "www" || len(rep.Preflight) != 0 {
		t.Fatalf("check: %v, %+v", err, rep)
	}
	if len(c.seen) != 0 {
		t.Errorf("a check sent %v", c.seen)
	}
}
