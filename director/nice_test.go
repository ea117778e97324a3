package director

import (
	"os"
	"strings"
	"testing"
)

// threadNices reads the niceness of every thread (field 19 of stat).
func threadNices(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/task/" + e.Name() + "/stat")
		if err != nil {
			continue
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
