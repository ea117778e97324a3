package cluster

import "testing"

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	steps := []struct {
		epoch, seq uint64
		want       bool
	}{
		{10, 5, true},   // first seen
		{10, 5, false},  // replay
		{10, 6, true},   // next
		{10, 4, true},   // late but inside the window, not seen
		{10, 4, false},  // replay of the late one
		{10, 100, true}, // jump
		{10, 37, true},  // 63 behind: inside
		{10, 36, false}, // 64 behind: outside the window
		{10, 6, false},  // far behind
		{9, 200, false}, // earlier epoch (the sender's previous run)
		{11, 1, true},   // sender restarted
		{11, 1, false},
		{10, 101, false}, // old epoch again
		{11, 1000, true},
		{11, 1000 - 63, true},
	}
	for i, s := range steps {
		if got := w.accept(s.epoch, s.seq); got != s.want {
			t.Fatalf("step %d accept(%d, %d) = %v, want %v", i, s.epoch, s.seq, got, s.want)
		}
	}
}
