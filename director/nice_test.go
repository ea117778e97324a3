package director

import (
	"strings"
	"testing"

	"github.com/vigil-lb/vigil/internal/testenv"
)

// threadNices reads the niceness of every thread (field 19 of stat).
func threadNices(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, tid := range testenv.Threads(t) {
		b, ok := testenv.ThreadFile(tid, "stat")
		if !ok {
			continue // the thread ended meanwhile
		}
		rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
		out = append(out, strings.Fields(rest)[16])
	}
	return out
}

func TestSetNiceEveryThread(t *testing.T) {
	// Raising niceness needs no privilege and only slows this test binary.
	if err := setNice(3); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // a thread started afterwards inherits it
		defer close(done)
		for _, n := range threadNices(t) {
			if n != "3" {
				t.Errorf("thread niceness %s, want 3", n)
			}
		}
	}()
	<-done
}
