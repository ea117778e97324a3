package director

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
