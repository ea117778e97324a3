package failover

import (
	"context"
	"github.com/vigil-lb/vigil/internal/testenv"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer is a log destination safe for the notifier's goroutines.
type syncBuffer = testenv.Buffer

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func closeNotifier(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNotifyArgumentsEnvironmentAndOrder(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	all := script(t, dir, "all", `echo "all $* | $VIGIL_KIND $VIGIL_INSTANCE $VIGIL_OLD_STATE>$VIGIL_STATE $VIGIL_PRIORITY $VIGIL_REASON [$VIGIL_VIPS]" >> `+out+"\n")
	master := script(t, dir, "master", `echo "master $* | $VIGIL_STATE" >> `+out+"\n")
	n, err := NewNotifier(NotifyConfig{
		Commands: []NotifyCommand{
			{Argv: []string{all}},
			{Argv: []string{master, "--flag"}, States: []State{StateMaster}},
		},
		Logger: quietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []Transition{
		{Instance: "www", From: StateInit, To: StateBackup, Priority: 100, Reason: "start", VIPs: []netip.Prefix{vip4.Prefix, vip6.Prefix}},
		{Instance: "www", From: StateBackup, To: StateMaster, Priority: 100, Reason: "master down"},
		{Instance: "www", From: StateMaster, To: StateFault, Priority: 0, Reason: "eth0 down"},
	} {
		if !n.Notify(tr) {
			t.Fatal("Notify refused on an open notifier")
		}
	}
	closeNotifier(t, n)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "all INSTANCE www BACKUP 100 | INSTANCE www INIT>BACKUP 100 start [10.99.0.100/24 fd99::100/128]\n" +
		"all INSTANCE www MASTER 100 | INSTANCE www BACKUP>MASTER 100 master down []\n" +
		"master --flag | MASTER\n" + // like notify_master: no arguments added
		"all INSTANCE www FAULT 0 | INSTANCE www MASTER>FAULT 0 eth0 down []\n"
	if string(b) != want {
		t.Fatalf("commands wrote\n%s\nwant\n%s", b, want)
	}
	if st := n.Stats(); st.Runs != 4 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n.Notify(Transition{Instance: "www", To: StateMaster}) {
		t.Fatal("Notify accepted after Close")
	}
}

func TestNotifyTimeoutKillsProcessGroupAndQueueGoesOn(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	out := filepath.Join(dir, "out")
	// The script starts a grandchild, then hangs; the timeout must kill
	// both, and the next transition must still run.
	slow := script(t, dir, "slow", `if [ "$3" = MASTER ]; then sleep 60 & echo $! > `+pidFile+`; sleep 60; fi
echo "$3" >> `+out+"\n")
	n, err := NewNotifier(NotifyConfig{Commands: []NotifyCommand{{Argv: []string{slow}}}, Timeout: 2 * time.Second, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Transition{Instance: "www", To: StateMaster, Priority: 150})
	n.Notify(Transition{Instance: "www", To: StateBackup, Priority: 150})
	closeNotifier(t, n)
	b, _ := os.ReadFile(out)
	if string(b) != "BACKUP\n" {
		t.Fatalf("output %q, want only the BACKUP run after the MASTER one was killed", b)
	}
	st := n.Stats()
	if st.TimedOut != 1 || st.Failed != 1 || st.Runs != 2 || !strings.Contains(st.LastError, "timeout") {
		t.Fatalf("stats %+v", st)
	}
	waitGone(t, pidFile, "the grandchild to die with its process group")
}

// waitGone waits until the process whose pid is in pidFile no longer runs:
// reaped by init, or a zombie.
func waitGone(t *testing.T, pidFile, what string) {
	t.Helper()
	pb, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pb)))
	waitFor(t, what, 5*time.Second, func() bool {
		if err := syscall.Kill(pid, 0); err != nil {
			return true
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err != nil || strings.Contains(string(stat), ") Z ")
	})
}

func TestNotifyNeverBlocksAndDropsOldestWhenFull(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "go")
	out := filepath.Join(dir, "out")
	wait := script(t, dir, "wait", `while [ ! -e `+gate+` ]; do sleep 0.05; done
echo "$4" >> `+out+"\n")
	n, err := NewNotifier(NotifyConfig{Commands: []NotifyCommand{{Argv: []string{wait}}}, QueueLen: 2, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Transition{Instance: "i", To: StateMaster, Priority: 1})
	waitFor(t, "the first command to start", 10*time.Second, func() bool { return n.Stats().Runs == 1 })
	// The worker is stuck on the first command; these return at once.
	for p := 2; p <= 4; p++ {
		if !n.Notify(Transition{Instance: "i", To: StateBackup, Priority: p}) {
			t.Fatal("Notify refused")
		}
	}
	if st := n.Stats(); st.Waiting != 2 || st.Dropped != 1 {
		t.Fatalf("stats %+v, want 2 waiting and the oldest dropped", st)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	closeNotifier(t, n)
	b, _ := os.ReadFile(out)
	if string(b) != "1\n3\n4\n" {
		t.Fatalf("ran for priorities %q, want 1, 3, 4", b)
	}
}

func TestNotifyOutputGoesToLog(t *testing.T) {
	dir := t.TempDir()
	noisy := script(t, dir, "noisy", "echo hello from $2\necho oops >&2\nprintf 'no newline'\nexit 3\n")
	var logs syncBuffer
	n, err := NewNotifier(NotifyConfig{Commands: []NotifyCommand{{Argv: []string{noisy}}}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Transition{Instance: "www", To: StateMaster})
	closeNotifier(t, n)
	got := logs.String()
	for _, want := range []string{`line="hello from www"`, "line=oops", `line="no newline"`, "notify command failed", "exit status 3"} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	if st := n.Stats(); st.Failed != 1 || st.TimedOut != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNotifyCloseGivesUp(t *testing.T) {
	dir := t.TempDir()
	hang := script(t, dir, "hang", "sleep 60\n")
	n, err := NewNotifier(NotifyConfig{Commands: []NotifyCommand{{Argv: []string{hang}}}, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Transition{Instance: "a", To: StateMaster})
	n.Notify(Transition{Instance: "a", To: StateBackup})
	waitFor(t, "the first command to start", 10*time.Second, func() bool { return n.Stats().Runs == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); err == nil {
		t.Fatal("Close with a hung command and an expired context returned nil")
	}
	if st := n.Stats(); st.Runs != 1 || st.Dropped != 1 || st.Waiting != 0 {
		t.Fatalf("stats %+v, want the hung run killed and the queued one dropped", st)
	}
}

func TestNotifyConfigErrors(t *testing.T) {
	for _, cfg := range []NotifyConfig{
		{Commands: []NotifyCommand{{}}},
		{Commands: []NotifyCommand{{Argv: []string{""}}}},
		{Timeout: -time.Second},
	} {
		if _, err := NewNotifier(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestNotifyMissingProgram(t *testing.T) {
	n, err := NewNotifier(NotifyConfig{Commands: []NotifyCommand{{Argv: []string{"/nonexistent/vigil-notify"}}}, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Transition{Instance: "a", To: StateMaster})
	closeNotifier(t, n)
	if st := n.Stats(); st.Failed != 1 || !strings.Contains(st.LastError, "vigil-notify") {
		t.Fatalf("stats %+v", st)
	}
}

func TestNotifySetCommands(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	one := script(t, dir, "one", "echo one $3 >> "+out+"\n")
	two := script(t, dir, "two", "echo two $3 >> "+out+"\n")
	n, err := NewNotifier(NotifyConfig{Commands: []NotifyCommand{{Argv: []string{one}}}, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Transition{Instance: "a", To: StateMaster})
	waitFor(t, "the first command", 10*time.Second, func() bool { b, _ := os.ReadFile(out); return len(b) > 0 })
	if err := n.SetCommands([]NotifyCommand{{}}, 0); err == nil {
		t.Fatal("empty command accepted")
	}
	if err := n.SetCommands([]NotifyCommand{{Argv: []string{two}}}, time.Second); err != nil {
		t.Fatal(err)
	}
	n.Notify(Transition{Instance: "a", To: StateBackup})
	closeNotifier(t, n)
	if b, _ := os.ReadFile(out); string(b) != "one MASTER\ntwo BACKUP\n" {
		t.Fatalf("ran %q", b)
	}
}
