package healthcheck

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ExecChecker runs a command; exit 0 is up. The command gets the real
// server in VIGIL_RS_ADDRESS, VIGIL_RS_PORT and VIGIL_RS_NAME, runs in its
// own process group, and the whole group is killed at the deadline.
type ExecChecker struct {
	Command []string
	// Dynamic: exit 1 is down, 2..255 is up with weight code-2
	// (keepalived's misc_dynamic); exit 0 is up with the weight unchanged.
	Dynamic bool
	Target  netip.AddrPort
	Name    string
}

// Check runs the command once.
func (e *ExecChecker) Check(ctx context.Context, deadline time.Time) Result {
	start := time.Now()
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.Command[0], e.Command[1:]...)
	cmd.Env = append(os.Environ(),
		"VIGIL_RS_ADDRESS="+e.Target.Addr().String(),
		"VIGIL_RS_PORT="+strconv.Itoa(int(e.Target.Port())),
		"VIGIL_RS_NAME="+e.Name,
	)
	var out tailBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 100 * time.Millisecond // for a grandchild that escaped the group and holds the output
	err := cmd.Run()
	name := filepath.Base(e.Command[0])
	if ctx.Err() != nil && err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fail(start, "%s: timeout after %v", name, roundDur(deadline.Sub(start)))
		}
		return fail(start, "%s: cancelled", name)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		if isLocal(err) {
			return localFailure(start, "cannot run %s here: %v", name, err)
		}
		return fail(start, "%s: %v", name, err)
	}
	code := 0
	if ee != nil {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fail(start, "%s: killed by signal %d (%v)%s", name, int(ws.Signal()), ws.Signal(), out.suffix())
		}
		code = ee.ExitCode()
	}
	switch {
	case code == 0:
		return pass(start, "%s: exit 0%s", name, out.suffix())
	case e.Dynamic && code >= 2:
		r := pass(start, "%s: exit %d (weight %d)%s", name, code, code-2, out.suffix())
		r.Weight = code - 2
		return r
	}
	return fail(start, "%s: exit %d%s", name, code, out.suffix())
}

// tailBuffer keeps the last bytes a command printed, for the reason.
type tailBuffer struct{ b []byte }

const tailMax = 256

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = append(t.b[:0], t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

// suffix is ": <last line of output>" or "".
func (t *tailBuffer) suffix() string {
	s := strings.TrimSpace(string(bytes.ToValidUTF8(t.b, nil)))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[i+1:])
	}
	if s == "" {
		return ""
	}
	return ": " + s
}
