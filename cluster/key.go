package cluster

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
)

// minKeyFileLen is the shortest key file accepted: a 16-byte raw key, or a
// passphrase at least that long.
const minKeyFileLen = 16

// LoadKey reads an AES key for the cluster channel from path.
//
// The file must be readable by its owner only (no group or other
// permission bits). Its content is, in this order:
//
//   - exactly 16, 24 or 32 bytes: a raw AES-128/192/256 key;
//   - otherwise, after removing one trailing newline ("\n" or "\r\n"):
//     exactly 16, 24 or 32 bytes: that raw key (a key typed with echo);
//   - otherwise a passphrase of at least 16 bytes, turned into an AES-256
//     key with SHA-256 (sha256.Sum256 of the passphrase).
//
// Every director of a site reads the same file the same way, so any of the
// forms gives the same key everywhere.
func LoadKey(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("cluster key file: no path given")
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cluster key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("cluster key file %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("cluster key file %s: mode %04o lets group or others read it; run chmod 600 %s", path, perm, path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster key file: %w", err)
	}
	key, err := keyFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("cluster key file %s: %w", path, err)
	}
	return key, nil
}

// keyFromBytes turns the content of a key file into an AES key (see LoadKey).
func keyFromBytes(raw []byte) ([]byte, error) {
	if isAESKeyLen(len(raw)) {
		return bytes.Clone(raw), nil
	}
	trimmed := raw
	switch {
	case bytes.HasSuffix(trimmed, []byte("\r\n")):
		trimmed = trimmed[:len(trimmed)-2]
	case bytes.HasSuffix(trimmed, []byte("\n")):
		trimmed = trimmed[:len(trimmed)-1]
	}
	if isAESKeyLen(len(trimmed)) {
		return bytes.Clone(trimmed), nil
	}
	if len(trimmed) < minKeyFileLen {
		return nil, fmt.Errorf("key is %d bytes; want a raw key of 16, 24 or 32 bytes or a passphrase of at least %d bytes", len(trimmed), minKeyFileLen)
	}
	// Hash the passphrase itself: sha256.New().Sum(secret) would append
	// the hash of nothing to the secret instead (MetalLB's bug).
	sum := sha256.Sum256(trimmed)
	return sum[:], nil
}

func isAESKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }
