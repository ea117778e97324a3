package failover

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadRecord(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, text string
		vips       int    // parsed before any error
		err        string // "" = none
	}{
		{"two VIPs and a comment", "# c\n10.99.0.1/24 dev eth0 label eth0:1\n\nfd99::1/128 dev eth0\n", 2, ""},
		{"bad line keeps the lines before it", "10.99.0.1/24 dev eth0\n10.99.0.2/24 on eth0\n", 1, ":2: "},
		{"bad prefix", "10.99.0.300/24 dev eth0\n", 0, "10.99.0.300"},
		{"too large", strings.Repeat("#", maxRecordSize+1), 0, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vips, err := ReadRecord(write(strings.ReplaceAll(tc.name, " ", "_"), tc.text))
			if len(vips) != tc.vips || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %v, %v; want %d VIPs and error %q", vips, err, tc.vips, tc.err)
			}
		})
	}
	if vips, err := ReadRecord(filepath.Join(dir, "missing")); vips != nil || err != nil {
		t.Fatalf("missing record: %v, %v", vips, err)
	}
}
