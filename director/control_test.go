package director

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/vigil-lb/vigil/internal/testenv"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A control_socket that names a file which is not a socket (a typo such
// as the site file's path) must not be deleted: ServeControl refuses.
func TestControlSocketRefusesToRemoveNonSocket(t *testing.T) {
	dir := t.TempDir()
	for name, make := range map[string]func(string) error{
		"regular file": func(p string) error { return os.WriteFile(p, []byte("[site]\nname = \"www\"\n"), 0o644) },
		"directory":    func(p string) error { return os.Mkdir(p, 0o755) },
		"symlink":      func(p string) error { return os.Symlink("/etc/hostname", p) },
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := make(p); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Lstat(p)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := ServeControl(ctx, p, &fakeController{}, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), p) {
				t.Fatalf("ServeControl on a %s: err %v, want an error naming %s", name, err, p)
			}
			after, err := os.Lstat(p)
			if err != nil || after.Mode() != before.Mode() || after.Size() != before.Size() {
				t.Fatalf("the %s at the socket path was touched: %v", name, err)
			}
		})
	}
}

// A socket left behind by a daemon that died is replaced.
func TestControlSocketReplacesStaleSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false) // like a crash: the file stays, nobody listens
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := ServeControl(ctx, p, &fakeController{}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	if rep, err := Call(ctx, p, Request{Op: "status"}); err != nil || rep.Status == nil {
		t.Fatalf("status over the new socket: %+v, %v", rep, err)
	}
}

// echoController fails a handover the way the daemon does, quoting the
// instance name it was given.
type echoController struct{ fakeController }

func (echoController) Handover(name string) error {
	return fmt.Errorf("no instance %q on this director", name)
}

// syncLog is a log destination for the control socket's goroutines.
type syncLog = testenv.Buffer

func logLines(l *syncLog) []string {
	return strings.Split(strings.TrimSpace(l.String()), "\n")
}

// rawCall sends req as is and reads one reply; the write runs beside the
// read, since the daemon may answer before it has read everything.
func rawCall(t *testing.T, path string, req []byte) Reply {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	go conn.Write(req)
	var rep Reply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return rep
}

// Requests are untrusted input: a huge one is refused unread, and what a
// request carries reaches the log only in a short, quoted form.
func TestControlRequestSizeAndLogBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ctl.sock")
	logs := &syncLog{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := ServeControl(ctx, p, &echoController{}, slog.New(slog.NewTextHandler(logs, nil))); err != nil {
		t.Fatal(err)
	}
	long := func(n int) string { return strings.Repeat("A", n) }
	for _, tc := range []struct {
		name, req, wantErr string
		shortReply         bool // the reply is ours, not the controller's error
	}{
		{"1 MB op", `{"op":"` + long(1<<20) + `"}`, "request too large", true},
		{"1 MB of spaces", strings.Repeat(" ", 1<<20) + `{"op":"status"}`, "request too large", true},
		{"long op under the limit", `{"op":"` + long(60<<10) + `"}`, "unknown op", true},
		{"long instance under the limit", `{"op":"handover","instance":"` + long(60<<10) + `"}`, "no instance", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := rawCall(t, p, []byte(tc.req))
			if rep.OK || !strings.Contains(rep.Error, tc.wantErr) {
				t.Fatalf("reply %.200q, want an error with %q", rep.Error, tc.wantErr)
			}
			if tc.shortReply && len(rep.Error) > 1024 {
				t.Errorf("reply error is %d bytes", len(rep.Error))
			}
		})
	}
	if rep, err := Call(ctx, p, Request{Op: "status"}); err != nil || rep.Status == nil {
		t.Fatalf("a normal request after the big ones: %+v, %v", rep, err)
	}
	lines := logLines(logs)
	for _, l := range lines {
		if len(l) > 600 {
			t.Errorf("log line of %d bytes: %.200s...", len(l), l)
		}
	}
	if got := strings.Join(lines, "\n"); strings.Count(got, "request too large") != 2 || strings.Count(got, "control request failed") != 2 {
		t.Errorf("want two refusals and two failures logged:\n%s", got)
	}
}
