package main

import "testing"

func TestVIPRecordPath(t *testing.T) {
	for _, tc := range []struct{ dir, node, want string }{
		{"/run/vigil", "vs1", "/run/vigil/vs1.vips"},
		{"", "vs1", ""}, // --state-dir "": no record
	} {
		if got := vipRecordPath(tc.dir, tc.node); got != tc.want {
			t.Errorf("vipRecordPath(%q, %q) = %q, want %q", tc.dir, tc.node, got, tc.want)
		}
	}
}
