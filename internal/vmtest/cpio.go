package vmtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// cpioWriter writes a newc ("070701") archive, the format the kernel
// unpacks as an initramfs. Parent directories are emitted before their
// entries because the kernel's unpacker does not create them.
type cpioWriter struct {
	w    *bufio.Writer
	n    int64 // bytes written, for padding
	ino  uint32
	dirs map[string]bool
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), ino: 1, dirs: map[string]bool{"": true, ".": true, "/": true}}
}

const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
)

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return err
}

func (c *cpioWriter) pad(align int64) error {
	if r := c.n % align; r != 0 {
		return c.write(make([]byte, align-r))
	}
	return nil
}

// header writes one entry header and its name; name is relative ("bin/sh").
func (c *cpioWriter) header(name string, mode uint32, size int64) error {
	if size > 0xffffffff {
		return fmt.Errorf("cpio: %s is too large (%d bytes)", name, size)
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	if err := c.write([]byte(h)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	return c.pad(4)
}

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// mkdirAll emits every missing directory of p (p itself included).
func (c *cpioWriter) mkdirAll(p string) error {
	p = clean(p)
	if c.dirs[p] {
		return nil
	}
	if err := c.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	c.dirs[p] = true
	return c.header(p, modeDir|0o755, 0)
}

// File adds a regular file with the given permission bits.
func (c *cpioWriter) File(name string, perm os.FileMode, size int64, r io.Reader) error {
	name = clean(name)
	if err := c.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := c.header(name, modeRegular|uint32(perm.Perm()), size); err != nil {
		return err
	}
	n, err := io.CopyN(c.w, r, size)
	c.n += n
	if err != nil {
		return fmt.Errorf("cpio: copy %s: %w", name, err)
	}
	return c.pad(4)
}

// Bytes adds a regular file from memory.
func (c *cpioWriter) Bytes(name string, perm os.FileMode, data []byte) error {
	return c.File(name, perm, int64(len(data)), strings.NewReader(string(data)))
}

// HostFile adds the host file src (symlinks followed) as name.
func (c *cpioWriter) HostFile(name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("cpio: %s is not a regular file", src)
	}
	return c.File(name, st.Mode(), st.Size(), f)
}

// Symlink adds name -> target.
func (c *cpioWriter) Symlink(name, target string) error {
	name = clean(name)
	if err := c.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := c.header(name, modeSymlink|0o777, int64(len(target))); err != nil {
		return err
	}
	if err := c.write([]byte(target)); err != nil {
		return err
	}
	return c.pad(4)
}

// Dir adds an (empty) directory.
func (c *cpioWriter) Dir(name string) error { return c.mkdirAll(name) }

// Close writes the trailer and pads to 512 bytes so that another archive
// can be appended (the kernel unpacks concatenated archives in order).
func (c *cpioWriter) Close() error {
	if err := c.header("TRAILER!!!", 0, 0); err != nil {
		return err
	}
	if err := c.pad(512); err != nil {
		return err
	}
	return c.w.Flush()
}
