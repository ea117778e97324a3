package director

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/failover"
)

// runNotify runs the commands claimerConfig makes of in for one
// transition into MASTER at priority 150.
func runNotify(t *testing.T, in *config.Instance) {
	t.Helper()
	cc := claimerConfig(in, &config.Director{Name: "vs1"})
	n, err := failover.NewNotifier(failover.NotifyConfig{Commands: cc.Notify, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(failover.Transition{Instance: in.Name, From: failover.StateBackup, To: failover.StateMaster, Priority: 150})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := n.Stats(); st.Failed != 0 {
		t.Fatalf("notify failed: %+v", st)
	}
}

// keepalived's notify arguments are $1..$4 of the script, whichever form
// the command is written in; notify_master and friends get none.
func TestNotifyCommandFormsGetKeepalivedArguments(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := filepath.Join(dir, "notify.sh")
	body := "#!/bin/sh\necho \"$1 $2 $3 $4|$#\" >> " + out + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  func(*config.Instance)
		want string
	}{
		{"string", func(i *config.Instance) { i.Notify = config.Command{Shell: script} }, "INSTANCE www MASTER 150|4\n"},
		{"string with shell syntax", func(i *config.Instance) {
			i.Notify = config.Command{Shell: "VAR=x " + script + " 2>&1"}
		}, "INSTANCE www MASTER 150|4\n"},
		{"string ending in a newline", func(i *config.Instance) { i.Notify = config.Command{Shell: script + "\n"} }, "INSTANCE www MASTER 150|4\n"},
		{"list", func(i *config.Instance) { i.Notify = config.Command{Argv: []string{script}} }, "INSTANCE www MASTER 150|4\n"},
		{"list through sh -c keeps $0", func(i *config.Instance) {
			i.Notify = config.Command{Argv: []string{"/bin/sh", "-c", "echo \"$0 $1 $2 $3|$#\" >> " + out}}
		}, "INSTANCE www MASTER 150|3\n"},
		{"notify_master string", func(i *config.Instance) { i.NotifyMaster = config.Command{Shell: script + " up"} }, "up   |1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(out)
			in := &config.Instance{Name: "www"}
			tc.set(in)
			runNotify(t, in)
			if b, _ := os.ReadFile(out); string(b) != tc.want {
				t.Fatalf("script saw %q, want %q", b, tc.want)
			}
		})
	}
}
