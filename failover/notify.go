package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// State is an instance state as notify commands see it (keepalived's
// names).
type State string

// The states an instance goes through.
const (
	StateInit   State = "INIT"
	StateBackup State = "BACKUP"
	StateMaster State = "MASTER"
	StateFault  State = "FAULT"
	StateStop   State = "STOP"
)

// Transition is one state change of an instance.
type Transition struct {
	Instance string
	// Kind is "INSTANCE" (default) or "GROUP", keepalived's first notify
	// argument.
	Kind     string
	From, To State
	Priority int
	Reason   string // why, for logs and VIGIL_REASON
	// VIPs of the instance, for VIGIL_VIPS (a Claimer fills them in):
	// scripts that move addresses through a cloud API need them.
	VIPs []netip.Prefix
}

// NotifyCommand is a program run on transitions, without a shell, with
// VIGIL_KIND, VIGIL_INSTANCE, VIGIL_STATE, VIGIL_OLD_STATE,
// VIGIL_PRIORITY, VIGIL_REASON and VIGIL_VIPS (space-separated prefixes)
// added to the daemon's environment. As in keepalived, a command for
// every transition (`notify`) gets the notify arguments after Argv
//
//	INSTANCE <name> <state> <priority>
//
// while one limited to some states (`notify_master` and friends) runs
// with Argv alone: "systemctl start haproxy" must stay just that.
type NotifyCommand struct {
	Argv []string
	// States limits the command to transitions into these states;
	// empty: every transition, with the notify arguments appended.
	States []State
}

// DefaultNotifyTimeout bounds one notify command.
const DefaultNotifyTimeout = 30 * time.Second

// SupersededGrace is how long a command may still run once Close was
// called while a later transition waits behind it (see Close).
const SupersededGrace = 2 * time.Second

// errSuperseded ends a command cut short by Close.
var errSuperseded = errors.New("superseded at stop by a later transition")

// NotifyConfig configures a Notifier.
type NotifyConfig struct {
	Commands []NotifyCommand
	// Timeout per command; 0: DefaultNotifyTimeout. On expiry the
	// command's whole process group is killed.
	Timeout time.Duration
	// QueueLen bounds the transitions waiting; 0: 64. When full the
	// oldest waiting one is dropped (and counted): the latest state
	// matters most.
	QueueLen int
	Logger   *slog.Logger
}

// NotifyStats counts what a Notifier did.
type NotifyStats struct {
	Waiting   int    // transitions queued, not yet run
	Runs      uint64 // commands started
	Failed    uint64 // could not start, or exited non-zero (timeouts included)
	TimedOut  uint64
	Dropped   uint64 // transitions dropped from a full queue
	LastError string
}

// Notifier runs notify commands one at a time in the order of the
// transitions, in a goroutine of its own: Notify never waits for them.
type Notifier struct {
	cfg     NotifyConfig
	log     *slog.Logger
	ctx     context.Context // ends when Close gives up waiting
	cancel  context.CancelFunc
	wake    chan struct{}
	closing chan struct{} // closed by Close
	done    chan struct{}

	mu     sync.Mutex
	queue  []Transition
	closed bool
	stats  NotifyStats
}

// NewNotifier checks cfg and starts the Notifier's worker.
func NewNotifier(cfg NotifyConfig) (*Notifier, error) {
	var err error
	if cfg.Timeout, err = checkNotify(cfg.Commands, cfg.Timeout); err != nil {
		return nil, err
	}
	cfg.Commands = slices.Clone(cfg.Commands)
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 64
	}
	n := &Notifier{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{})}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	go n.work()
	return n, nil
}

// checkNotify validates commands and fills in the default timeout.
func checkNotify(cmds []NotifyCommand, timeout time.Duration) (time.Duration, error) {
	for i, c := range cmds {
		if len(c.Argv) == 0 || c.Argv[0] == "" {
			return 0, fmt.Errorf("notify command %d: empty", i+1)
		}
	}
	if timeout < 0 {
		return 0, fmt.Errorf("notify timeout %s: negative", timeout)
	}
	if timeout == 0 {
		timeout = DefaultNotifyTimeout
	}
	return timeout, nil
}

// SetCommands replaces the commands and their timeout (a reload); the
// transitions already queued run with the new ones.
func (n *Notifier) SetCommands(cmds []NotifyCommand, timeout time.Duration) error {
	timeout, err := checkNotify(cmds, timeout)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.cfg.Commands, n.cfg.Timeout = slices.Clone(cmds), timeout
	n.mu.Unlock()
	return nil
}

// Notify queues t for the commands and returns at once. It reports false
// when the Notifier is closed.
func (n *Notifier) Notify(t Transition) bool {
	if t.Kind == "" {
		t.Kind = "INSTANCE"
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return false
	}
	if len(n.queue) >= n.cfg.QueueLen {
		old := n.queue[0]
		n.queue = n.queue[1:]
		n.stats.Dropped++
		n.log.Error("notify queue full; dropped the oldest transition", "instance", old.Instance, "state", old.To)
	}
	n.queue = append(n.queue, t)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	return true
}

// Close stops taking transitions and waits until the queued ones have
// run or ctx ends; then the running command's process group is killed
// and the rest dropped.
//
// While Close waits, a command whose transition a later one waits behind
// (the STOP of a graceful stop behind a hanging MASTER script) runs at
// most SupersededGrace more, then its process group is killed: the final
// state's commands must run, with their whole timeout, within a stop
// budget no longer than that timeout. They run after the superseded one
// is dead, not beside it, so their effects are not overtaken by a stale
// script (a "start haproxy" finishing after the "stop haproxy").
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	first := !n.closed
	n.closed = true
	n.mu.Unlock()
	if first {
		close(n.closing)
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
	select {
	case <-n.done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-n.done
		return fmt.Errorf("notify commands still queued at close: %w", ctx.Err())
	}
}

// Stats returns the counters.
func (n *Notifier) Stats() NotifyStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.stats
	s.Waiting = len(n.queue)
	return s
}

func (n *Notifier) work() {
	defer close(n.done)
	for {
		n.mu.Lock()
		if n.ctx.Err() != nil {
			n.stats.Dropped += uint64(len(n.queue))
			n.queue = nil
		}
		if len(n.queue) == 0 {
			closed := n.closed
			n.mu.Unlock()
			if closed {
				return
			}
			<-n.wake
			continue
		}
		t := n.queue[0]
		n.queue = n.queue[1:]
		cmds, timeout := n.cfg.Commands, n.cfg.Timeout
		n.mu.Unlock()
		for _, c := range cmds {
			if len(c.States) == 0 || slices.Contains(c.States, t.To) {
				n.run(c, t, timeout)
			}
		}
	}
}

// runContext is the context of one command with the given timeout: it
// ends when Close gives up (n.ctx), or SupersededGrace after Close while
// a later transition waits.
func (n *Notifier) runContext(timeout time.Duration) (context.Context, func()) {
	base, cancelBase := context.WithCancelCause(n.ctx)
	ctx, cancel := context.WithTimeout(base, timeout)
	if timeout <= SupersededGrace {
		return ctx, func() { cancel(); cancelBase(nil) }
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-n.closing:
		}
		if !n.laterWaiting() {
			return // the final transition: it keeps its timeout
		}
		grace := time.NewTimer(SupersededGrace)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
			cancelBase(errSuperseded)
		}
	}()
	return ctx, func() { close(done); cancel(); cancelBase(nil) }
}

// laterWaiting reports whether a transition is queued behind the one
// running. After Close the queue only shrinks, and only between runs.
func (n *Notifier) laterWaiting() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue) > 0
}

// run runs one command for t and logs its output and outcome.
func (n *Notifier) run(c NotifyCommand, t Transition, timeout time.Duration) {
	ctx, cancel := n.runContext(timeout)
	defer cancel()
	args := slices.Clone(c.Argv[1:])
	if len(c.States) == 0 {
		args = append(args, t.Kind, t.Instance, string(t.To), strconv.Itoa(t.Priority))
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], args...)
	cmd.Env = append(os.Environ(),
		"VIGIL_KIND="+t.Kind,
		"VIGIL_INSTANCE="+t.Instance,
		"VIGIL_STATE="+string(t.To),
		"VIGIL_OLD_STATE="+string(t.From),
		"VIGIL_PRIORITY="+strconv.Itoa(t.Priority),
		"VIGIL_REASON="+t.Reason,
		"VIGIL_VIPS="+joinPrefixes(t.VIPs),
	)
	cmd.Dir = "/"
	// A process group of its own, so a timeout kills the script and
	// everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A daemonised grandchild holding our output pipe must not keep
	// Wait (and the queue) waiting.
	cmd.WaitDelay = time.Second
	out := &lineLog{log: n.log, attrs: []any{"instance", t.Instance, "state", string(t.To), "cmd", c.Argv[0]}}
	cmd.Stdout, cmd.Stderr = out, out

	n.mu.Lock()
	n.stats.Runs++
	n.mu.Unlock()
	start := time.Now()
	err := cmd.Run()
	out.flush()
	took := time.Since(start)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	superseded := errors.Is(context.Cause(ctx), errSuperseded)
	if err == nil {
		n.log.Info("notify command done", "instance", t.Instance, "state", string(t.To), "cmd", c.Argv[0], "took", took)
		return
	}
	switch {
	case timedOut:
		err = fmt.Errorf("killed after %s timeout: %w", timeout, err)
	case superseded:
		err = fmt.Errorf("killed %s after the stop began, %w: %w", SupersededGrace, errSuperseded, err)
	}
	err = fmt.Errorf("notify %s for %s %s: %w", c.Argv[0], t.Instance, t.To, err)
	n.mu.Lock()
	n.stats.Failed++
	if timedOut {
		n.stats.TimedOut++
	}
	n.stats.LastError = err.Error()
	n.mu.Unlock()
	n.log.Error("notify command failed", "instance", t.Instance, "state", string(t.To), "cmd", c.Argv[0], "took", took, "error", err)
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

// lineLog logs a command's output line by line, up to a limit, so a
// chatty script cannot flood the log.
type lineLog struct {
	log   *slog.Logger
	attrs []any
	mu    sync.Mutex // stdout and stderr are copied by two goroutines
	buf   []byte
	lines int
}

const (
	maxLogLines = 100
	maxLineLen  = 1024
)

func (w *lineLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLineLen {
				i = maxLineLen
			} else {
				break
			}
		}
		w.emit(w.buf[:i])
		if i < len(w.buf) && w.buf[i] == '\n' {
			i++
		}
		w.buf = w.buf[i:]
	}
	return len(p), nil
}

func (w *lineLog) emit(line []byte) {
	w.lines++
	switch {
	case w.lines <= maxLogLines:
		w.log.Info("notify output", slices.Concat(w.attrs, []any{"line", string(line)})...)
	case w.lines == maxLogLines+1:
		w.log.Warn("notify output truncated", w.attrs...)
	}
}

func (w *lineLog) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}
