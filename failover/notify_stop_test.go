package failover

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A graceful stop queues the STOP transition behind a notify command that
// hangs, then closes the Notifier with a budget no longer than the notify
// timeout (the daemon's defaults: 10s each). The hanging command, already
// superseded, must be killed with its process group soon enough that the
// final notify still runs, and Close must return well within the budget.
func TestNotifyStopRunsFinalCommandAfterHangingOne(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	started := filepath.Join(dir, "started")
	pidFile := filepath.Join(dir, "pid")
	notify := script(t, dir, "notify", `case "$3" in
MASTER) sleep 600 & echo $! > `+pidFile+`; : > `+started+`; wait ;;
*) echo "$3" >> `+out+` ;;
esac
`)
	const timeout = 10 * time.Second
	n, err := NewNotifier(NotifyConfig{Commands: []NotifyCommand{{Argv: []string{notify}}}, Timeout: timeout, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	// The stop's budget starts before the hanging command, as in the
	// daemon: waiting out that command's timeout leaves nothing for the
	// final one.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n.Notify(Transition{Instance: "www", From: StateBackup, To: StateMaster, Priority: 150})
	waitFor(t, "the MASTER command to hang", 5*time.Second, func() bool { _, err := os.Stat(started); return err == nil })
	n.Notify(Transition{Instance: "www", From: StateMaster, To: StateStop, Reason: "stopped"})
	start := time.Now()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v (the final notify was dropped)", err)
	}
	took := time.Since(start)
	if b, _ := os.ReadFile(out); string(b) != "STOP\n" {
		t.Fatalf("final notify wrote %q, want STOP", b)
	}
	if took > SupersededGrace+5*time.Second {
		t.Errorf("Close took %v: the superseded command was not cut short", took)
	}
	st := n.Stats()
	if st.Runs != 2 || st.Failed != 1 || st.TimedOut != 0 || !strings.Contains(st.LastError, "superseded") {
		t.Errorf("stats %+v, want the MASTER run killed as superseded and the STOP run done", st)
	}
	waitGone(t, pidFile, "the hanging command's child to die with its group")
}

// The last transition is not superseded: its command keeps its whole
// timeout at Close, even when it runs longer than the grace.
func TestNotifyCloseKeepsFinalCommandsTimeout(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	slow := script(t, dir, "slow", "sleep 3\necho \"$3\" >> "+out+"\n")
	n, err := NewNotifier(NotifyConfig{Commands: []NotifyCommand{{Argv: []string{slow}}}, Timeout: 20 * time.Second, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Transition{Instance: "www", To: StateStop})
	waitFor(t, "the command to start", 5*time.Second, func() bool { return n.Stats().Runs == 1 })
	closeNotifier(t, n)
	if b, _ := os.ReadFile(out); string(b) != "STOP\n" {
		t.Fatalf("final notify wrote %q, want STOP (killed early?); stats %+v", b, n.Stats())
	}
}
