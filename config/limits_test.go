package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// within runs f and fails the test when f has not returned after d. What
// these tests guard against is hangs and runaway work, and a failing test
// says more than a hung one. Bounds are generous: the machine may be busy.
func within(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("still running after %v", d)
		return nil
	}
}

// oneError asserts that err is Errors holding exactly one error, at the
// position » marks in the text marked() was given, whose message has msg.
func oneError(t *testing.T, err error, line, col int, msg string) Error {
	t.Helper()
	errs := mustErrors(t, err)
	if len(errs) != 1 {
		t.Fatalf("want 1 error, got %d: %.500v", len(errs), err)
	}
	e := errs[0]
	if e.Line != line || e.Col != col || !strings.Contains(e.Msg, msg) || e.Fix == "" {
		t.Fatalf("got %d:%d %q (fix %q), want %d:%d %q and a fix", e.Line, e.Col, e.Msg, e.Fix, line, col, msg)
	}
	return e
}

// TestDeepNestingRejected: nesting is refused before the TOML decoder sees
// it. The decoder recurses once per array or inline table (4 MB of "["
// overflowed its stack, which is fatal in Go) and does work quadratic in a
// key's length (inline tables 4,000 deep took 4 s and 730 MB).
func TestDeepNestingRejected(t *testing.T) {
	const n = 100_000
	rep := strings.Repeat
	// x is level 1; each "[", "{", key part and header part adds one.
	cases := []struct{ name, text string }{
		{"arrays", "x = " + rep("[", maxDepth-1) + "»[" + rep("[", n-maxDepth) + rep("]", n) + "\n"},
		{"4 MB of arrays", "x = " + rep("[", maxDepth-1) + "»[" + rep("[", 2<<20-maxDepth) + rep("]", 2<<20) + "\n"},
		{"arrays over lines", "x = [\n" + rep("[\n", maxDepth-2) + "»[\n" + rep("[\n", n) + rep("]", n+maxDepth) + "\n"},
		{"inline tables", "x = " + deepTables(n) + "\n"},
		{"dotted key", rep("a.", maxDepth) + "»a" + rep(".a", n) + " = 1\n"},
		{"table header", "[" + rep("a.", maxDepth) + "»a" + rep(".a", n) + "]\nb = 1\n"},
		{"array of tables header", "[[" + rep("a.", maxDepth) + "»a" + rep(".a", n) + "]]\nb = 1\n"},
		{"keys under a deep header", "[" + rep("a.", maxDepth-1) + "a]\n»b = 1\n"},
		{"inside a site", base + "[[virtual_server]]\nreal_servers = [ { check = { expect_status = " + rep("[", maxDepth-7) + "»[" + rep("[", n) + rep("]", n+maxDepth-6) + " } } ]\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text, line, col := marked(t, c.text)
			err := within(t, 10*time.Second, func() error {
				_, err := Parse("deep.toml", []byte(text))
				return err
			})
			oneError(t, err, line, col, fmt.Sprintf("nested more than %d levels deep", maxDepth))
		})
	}
}

// deepTables is "{a = {a = ... 1}}" nested n deep, with » before the
// token that goes past maxDepth: after x (level 1), each "{" and each "a"
// adds one.
func deepTables(n int) string {
	var b strings.Builder
	level := 1
	for range n {
		for _, tok := range []string{"{", "a = "} {
			if level++; level == maxDepth+1 {
				b.WriteString("»")
			}
			b.WriteString(tok)
		}
	}
	return b.String() + "1" + strings.Repeat("}", n)
}

// TestNestingAtTheLimit: nesting up to the limit is the decoder's business,
// and brackets in strings and comments are not nesting.
func TestNestingAtTheLimit(t *testing.T) {
	rep := strings.Repeat
	brackets := rep("[{", 10*maxDepth)
	cases := []struct{ name, text string }{
		{"arrays", "x = " + rep("[", maxDepth-1) + rep("]", maxDepth-1) + "\n"},
		{"dotted key", rep("a.", maxDepth-1) + "a = 1\n"},
		{"brackets in strings and comments", fmt.Sprintf("a = \"%s\\\"%s\"\nb = '%s'\nc = \"\"\"\n%s\\\"\"\"%s\n\"\"\"\nd = '''%s\n'''\n# %s\ne = [ # %s\n'%s', \"%s\" ] # %s\n",
			brackets, brackets, brackets, brackets, brackets, brackets, brackets, brackets, brackets, brackets, brackets)},
		{"brackets in quoted keys", fmt.Sprintf("\"%s\" = 1\n[t.'%s'.\"%s\"]\n", brackets, brackets, brackets)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("ok.toml", []byte(c.text))
			for _, e := range mustErrors(t, err) {
				if strings.Contains(e.Msg, "nested") || strings.Contains(e.Msg, "syntax") {
					t.Fatalf("%d:%d: %s", e.Line, e.Col, e.Msg)
				}
			}
		})
	}
}

// padded is the base site padded with comment lines to exactly n bytes.
func padded(n int) []byte {
	b := bytes.NewBufferString(base)
	line := "# " + strings.Repeat("padding ", 12) + "\n"
	for b.Len()+len(line) <= n {
		b.WriteString(line)
	}
	b.WriteString("#" + strings.Repeat("x", n-b.Len()-1))
	return b.Bytes()
}

// lineCol is where byte off of data is, the way errors count: 1-based
// lines, columns in runes.
func lineCol(data []byte, off int) (int, int) {
	start := bytes.LastIndexByte(data[:off], '\n') + 1
	return bytes.Count(data[:off], []byte("\n")) + 1, len([]rune(string(data[start:off]))) + 1
}

func TestSizeLimit(t *testing.T) {
	dir := t.TempDir()
	at, over := filepath.Join(dir, "at.toml"), filepath.Join(dir, "over.toml")
	if err := os.WriteFile(at, padded(maxSize), 0o644); err != nil {
		t.Fatal(err)
	}
	big := padded(maxSize + 1)
	if err := os.WriteFile(over, big, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(at); err != nil {
		t.Fatalf("a valid site of exactly %d bytes: %.500v", maxSize, err)
	}
	// A sparse file of zeros, far over the limit: only the first maxSize+1
	// bytes may be read.
	huge := filepath.Join(dir, "huge.toml")
	if f, err := os.Create(huge); err != nil || f.Truncate(8<<30) != nil || f.Close() != nil {
		t.Fatalf("sparse file: %v", err)
	}
	line, col := lineCol(big, maxSize)
	msg := fmt.Sprintf("larger than %d MiB", maxSize>>20)
	for _, c := range []struct {
		name      string
		load      func() error
		line, col int
	}{
		{"Load", func() error { _, err := Load(over); return err }, line, col},
		{"Parse", func() error { _, err := Parse(over, big); return err }, line, col},
		{"sparse 8 GiB", func() error { _, err := Load(huge); return err }, 1, maxSize + 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := within(t, 20*time.Second, c.load)
			if e := oneError(t, err, c.line, c.col, msg); e.File != over && e.File != huge {
				t.Errorf("error names %q", e.File)
			}
		})
	}
	// The size a big site needs: 2,000 virtual servers, 20,000 real servers.
	if n := len(bigSite(2000, 10)); 4*n > maxSize {
		t.Errorf("a 2,000/20,000 site takes %d bytes, over a quarter of the limit", n)
	}
}

// TestLoadRefusesNonRegular: a FIFO would hang the read, a device could be
// read until memory runs out; neither is a site file.
func TestLoadRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// If Load blocks in open, a writer releases it so the test can end.
	t.Cleanup(func() {
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	sock := filepath.Join(dir, "s.toml")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	zeroLink := filepath.Join(dir, "zero.toml")
	if err := os.Symlink("/dev/zero", zeroLink); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, path, kind string }{
		{"named pipe", fifo, "a named pipe"},
		{"/dev/zero", "/dev/zero", "a character device"},
		{"/dev/null", "/dev/null", "a character device"},
		{"symlink to /dev/zero", zeroLink, "a character device"},
		{"directory", dir, "a directory"},
		{"unix socket", sock, "a socket"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := os.Stat(c.path); err != nil {
				t.Skipf("no %s here: %v", c.path, err)
			}
			err := within(t, 5*time.Second, func() error { _, err := Load(c.path); return err })
			var errs Errors
			if err == nil || errors.As(err, &errs) {
				t.Fatalf("want a read error, got %.300v", err)
			}
			want := c.path + " is " + c.kind + ", not a regular file"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("got %q, want it to say %q", err, want)
			}
		})
	}
	t.Run("symlink to a site", func(t *testing.T) {
		link := filepath.Join(dir, "site.toml")
		abs, _ := filepath.Abs("../examples/www-telnet.toml")
		if err := os.Symlink(abs, link); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(link); err != nil {
			t.Fatal(err)
		}
	})
}

// TestManyUnknownKeys: 10 MB of unknown keys once took 40 s and 1.3 GB and
// printed 700,000 lines (one suggestion, message and position per key, and
// a column counted from the start of the line for every key, quadratic on
// one long line). The first maxErrors in file order are listed; the rest
// are counted.
func TestManyUnknownKeys(t *testing.T) {
	cases := []struct{ name, head, key, tail string }{
		{"a key a line", "[site]\nname = \"www\"\n", "k%07d = 1\n", ""},
		{"one long line", "site = { name = \"www\"", ", k%07d = 1", " }\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString(c.head)
			keys := 0
			for ; b.Len() < 10<<20; keys++ {
				fmt.Fprintf(&b, c.key, keys)
			}
			b.WriteString(c.tail)
			start := time.Now()
			err := within(t, 20*time.Second, func() error { _, err := Parse("unknown.toml", []byte(b.String())); return err })
			t.Logf("%d keys, %d bytes: %v", keys, b.Len(), time.Since(start))
			errs := mustErrors(t, err)
			if len(errs) != maxErrors || errs.Total() < keys {
				t.Fatalf("listed %d of %d errors, want %d of at least %d", len(errs), errs.Total(), maxErrors, keys)
			}
			next := 0 // the unknown keys listed are the first ones, in order
			for i, e := range errs {
				if i > 0 && (e.Line < errs[i-1].Line || e.Line == errs[i-1].Line && e.Col < errs[i-1].Col) {
					t.Errorf("not in file order: %v after %v", e, errs[i-1])
				}
				if strings.HasPrefix(e.Msg, "unknown key") {
					if want := fmt.Sprintf("unknown key \"k%07d\"", next); !strings.HasPrefix(e.Msg, want) {
						t.Errorf("listed %q, want %s", e.Msg, want)
					}
					next++
				}
			}
			lines := strings.Split(err.Error(), "\n")
			want := fmt.Sprintf("... and %d more errors", errs.Total()-maxErrors)
			if len(lines) != maxErrors+1 || lines[maxErrors] != want {
				t.Errorf("Error() has %d lines ending %q, want %d ending %q", len(lines), lines[len(lines)-1], maxErrors+1, want)
			}
		})
	}
}

// TestErrorsCap: Error() lists at most maxErrors, however the list was made.
func TestErrorsCap(t *testing.T) {
	var es Errors
	for i := range 3 * maxErrors {
		es = append(es, Error{File: "f", Line: i + 1, Col: 1, Msg: "m"})
	}
	lines := strings.Split(es.Error(), "\n")
	if len(lines) != maxErrors+1 || lines[maxErrors] != fmt.Sprintf("... and %d more errors", 2*maxErrors) {
		t.Errorf("got %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	if es.Total() != 3*maxErrors || es[:1].Error() != "f:1:1: m" || es[:1].Total() != 1 {
		t.Errorf("Total %d, one error %q", es.Total(), es[:1].Error())
	}
}
