package cluster

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKey(t *testing.T) {
	raw32 := bytes.Repeat([]byte{0xA5}, 32)
	raw32nl := append(bytes.Repeat([]byte{0x5A}, 31), '\n') // 32 raw bytes ending in a newline byte
	pass := sha256.Sum256([]byte("correct horse battery staple"))
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    []byte
		wantErr string
	}{
		{"raw 16", bytes.Repeat([]byte{1}, 16), 0o600, bytes.Repeat([]byte{1}, 16), ""},
		{"raw 24", bytes.Repeat([]byte{2}, 24), 0o400, bytes.Repeat([]byte{2}, 24), ""},
		{"raw 32", raw32, 0o600, raw32, ""},
		{"raw 32 whose last byte is a newline", raw32nl, 0o600, raw32nl, ""},
		{"typed 32 with newline", []byte("0123456789abcdef0123456789abcdef\n"), 0o600, []byte("0123456789abcdef0123456789abcdef"), ""},
		{"passphrase", []byte("correct horse battery staple"), 0o600, pass[:], ""},
		{"passphrase with newline", []byte("correct horse battery staple\n"), 0o600, pass[:], ""},
		{"passphrase with CRLF", []byte("correct horse battery staple\r\n"), 0o600, pass[:], ""},
		{"empty", nil, 0o600, nil, "key is 0 bytes"},
		{"newline only", []byte("\n"), 0o600, nil, "key is 0 bytes"},
		{"short", []byte("hunter2\n"), 0o600, nil, "key is 7 bytes"},
		{"group readable", raw32, 0o640, nil, "lets group or others read it"},
		{"world readable", raw32, 0o604, nil, "mode 0604"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(p, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			got, err := LoadKey(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
					t.Fatalf("err = %v, want one naming %s and containing %q", err, p, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("key = %x, want %x", got, tc.want)
			}
		})
	}
}

func TestLoadKeyMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope")
	if _, err := LoadKey(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v", err)
	}
	if _, err := LoadKey(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: err = %v", err)
	}
}

// The passphrase hash is sha256 of the passphrase, not MetalLB's
// sha256.New().Sum(secret) (the secret followed by sha256("")).
func TestPassphraseNotMetalLBBug(t *testing.T) {
	k, err := keyFromBytes([]byte("a passphrase of some length"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(k, []byte("a passphrase")) || len(k) != 32 {
		t.Fatalf("key %x looks like the passphrase itself", k)
	}
}

func TestConfigValidate(t *testing.T) {
	key := writeKey(t, testKey)
	good := Config{Site: "www", NodeName: "vs1", BindAddr: mustAddr("127.0.0.1"), KeyFile: key}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"good", func(*Config) {}, ""},
		{"insecure without key", func(c *Config) { c.KeyFile, c.Insecure = "", true }, ""},
		{"no key no insecure", func(c *Config) { c.KeyFile = "" }, "insecure = true"},
		{"key and insecure", func(c *Config) { c.Insecure = true }, "both a key file and insecure"},
		{"missing key file", func(c *Config) { c.KeyFile = key + ".missing" }, "no such file"},
		{"no site", func(c *Config) { c.Site = "" }, "site name is empty"},
		{"no node", func(c *Config) { c.NodeName = "" }, "node name"},
		{"no bind", func(c *Config) { c.BindAddr = mustAddr("").Unmap() }, "bind address"},
		{"bad port", func(c *Config) { c.Port = 70000 }, "port 70000"},
		{"extra key", func(c *Config) { c.ExtraKeyFiles = []string{key} }, ""},
		{"bad extra key", func(c *Config) { c.ExtraKeyFiles = []string{key + ".missing"} }, ".missing"},
		{"extra key with insecure", func(c *Config) { c.KeyFile, c.Insecure, c.ExtraKeyFiles = "", true, []string{key} }, "extra key files given with insecure"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			_, err := c.validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	// New refuses bad configs before binding anything.
	if _, err := New(Config{Site: "www", NodeName: "vs1", BindAddr: mustAddr("127.0.0.1")}); err == nil {
		t.Fatal("New without a key or insecure succeeded")
	}
}

func TestLabel(t *testing.T) {
	if Label("www") == Label("mail") || Label("www") != "vigil/www" {
		t.Fatalf("labels %q %q", Label("www"), Label("mail"))
	}
	long := strings.Repeat("x", 300)
	if l := Label(long); len(l) > 255 || l == Label(long+"y") {
		t.Fatalf("long label %q", l)
	}
}
