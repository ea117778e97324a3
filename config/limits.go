package config

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"unicode/utf8"
)

// Limits on a site file, checked before the TOML decoder sees the text. The
// decoder recurses once per array or inline table (4 MB of "[" overflowed
// its stack, which is fatal in Go), and its work and memory grow with the
// size of the file times the length of its keys (inline tables 4,000 deep
// took 4 s and 730 MB). A real site is far inside both limits.
const (
	// maxSize is 16 MiB: a site of 2,000 virtual servers and 20,000 real
	// servers takes 1 MiB written compactly, 4 MiB with a table per real
	// server. Decoding costs up to 150 times the file in memory (16 MiB of
	// small inline tables: 18 s, 2.5 GB), so the limit is not higher.
	maxSize = 16 << 20

	// maxDepth bounds nesting: each table-header part, dotted-key part,
	// array and inline table is a level. A site needs 8 at most:
	// [[virtual_server]] real_servers = [ { check = { expect_status = [
	// At 16, 16 MiB of tables nested to the limit costs 27 s and 3.1 GB,
	// near the flat worst case; at 32 it cost 38 s and 4.5 GB.
	maxDepth = 16

	// maxErrors is how many errors a failed Parse lists; the rest are only
	// counted. A file with thousands of problems is not a site file gone a
	// little wrong, and the first screenful is what gets fixed first.
	maxErrors = 20
)

// readRegular reads at most limit bytes of the regular file at path (a
// symlink to one is fine). O_NONBLOCK keeps open from waiting for a writer
// when path is a FIFO; the fstat then refuses FIFOs, devices and
// directories before anything is read. The limit still holds when the
// fstat misleads (a /proc file is "regular" with size 0).
func readRegular(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		// A socket cannot be opened at all; say what it is.
		if fi, serr := os.Stat(path); serr == nil && !fi.Mode().IsRegular() {
			return nil, notRegular(path, fi.Mode())
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	// Sized from the fstat (bounded by the limit) rather than grown by
	// doubling: the text is copied once more for the decoder anyway.
	b := bytes.NewBuffer(make([]byte, 0, min(max(fi.Size(), 0)+bytes.MinRead, limit)))
	_, err = b.ReadFrom(io.LimitReader(f, limit))
	return b.Bytes(), err
}

func notRegular(path string, m fs.FileMode) error {
	kind := "a special file"
	switch {
	case m&fs.ModeNamedPipe != 0:
		kind = "a named pipe"
	case m&fs.ModeCharDevice != 0:
		kind = "a character device"
	case m&fs.ModeDevice != 0:
		kind = "a block device"
	case m&fs.ModeSocket != 0:
		kind = "a socket"
	case m.IsDir():
		kind = "a directory"
	}
	return fmt.Errorf("%s is %s, not a regular file; give the path of the site file itself", path, kind)
}

// checkLimits returns the error for text over the size or nesting limit, or
// nil.
func checkLimits(filename, text string) *Error {
	if len(text) > maxSize {
		at := posAt(text, maxSize)
		return &Error{File: filename, Line: at.line, Col: at.col,
			Msg: fmt.Sprintf("the file is larger than %d MiB, the limit for a site file", maxSize>>20),
			Fix: "a site of 2,000 virtual servers and 20,000 real servers takes at most 4 MiB: is this the site file?"}
	}
	if off, over := nestingOver(text, maxDepth); over {
		at := posAt(text, off)
		return &Error{File: filename, Line: at.line, Col: at.col,
			Msg: fmt.Sprintf("nested more than %d levels deep (table-header parts, dotted-key parts, arrays and inline tables)", maxDepth),
			Fix: "a site needs at most 8 levels: look for brackets or dots that run away"}
	}
	return nil
}

// posAt is where byte off of src is: 1-based line, column in runes (as the
// position scanner counts).
func posAt(src string, off int) pos {
	line, start := 1, 0
	for i := 0; i < off; i++ {
		if src[i] == '\n' {
			line, start = line+1, i+1
		}
	}
	return pos{line: line, col: utf8.RuneCountInString(src[start:off]) + 1}
}

// nestingOver returns the offset of the first key part, array or inline
// table that is more than limit levels deep in src. It follows just enough
// of TOML to know keys from values and to skip strings and comments, so a
// bracket in a string or comment does not count. It runs before the TOML
// parser, on any text: where the text is not TOML it resynchronizes at the
// next line and leaves the error to the parser, which stops there (so it
// never sees deeper nesting that this scan missed). It takes time linear in
// src and never recurses.
func nestingOver(src string, limit int) (int, bool) {
	s := &nestScan{src: src, limit: limit}
	for s.i < len(s.src) {
		if off, over := s.step(); over {
			return off, true
		}
	}
	return 0, false
}

// What the scan expects next.
const (
	wantKey   = iota // at the start of a line, or in an inline table
	wantValue        // after "=", or in an array
	wantEnd          // after a value or table header: "," or a closing bracket
)

type nestScan struct {
	src   string
	i     int
	limit int
	want  int
	base  int         // level of the current table header's last part
	level int         // level of the value being read
	open  []nestFrame // arrays and inline tables open at i
}

type nestFrame struct {
	table bool // inline table; else array
	level int  // level of what is inside
}

func (s *nestScan) top() *nestFrame {
	if len(s.open) == 0 {
		return nil
	}
	return &s.open[len(s.open)-1]
}

// step consumes at least one byte.
func (s *nestScan) step() (int, bool) {
	switch c := s.src[s.i]; {
	case c == ' ' || c == '\t' || c == '\r':
		s.i++
	case c == '\n':
		s.i++
		if len(s.open) == 0 { // arrays span lines; keys and values do not
			s.want = wantKey
		}
	case c == '#':
		for s.i < len(s.src) && s.src[s.i] != '\n' {
			s.i++
		}
	case s.want == wantKey:
		return s.key()
	case s.want == wantValue:
		return s.value()
	default:
		s.end()
	}
	return 0, false
}

// key reads a table header, or a dotted key and its "=".
func (s *nestScan) key() (int, bool) {
	top := s.top()
	switch c := s.src[s.i]; {
	case top == nil && c == '[':
		return s.header()
	case top != nil && top.table && c == '}': // {} or a trailing comma
		s.i++
		s.open = s.open[:len(s.open)-1]
		s.want = wantEnd
		return 0, false
	}
	level := s.base
	if top != nil {
		level = top.level
	}
	level, off, over := s.dottedKey(level)
	if over {
		return off, true
	}
	if s.i == off { // not a key: the parser will say so
		s.i++
		return 0, false
	}
	for s.i < len(s.src) && (s.src[s.i] == ' ' || s.src[s.i] == '\t') {
		s.i++
	}
	s.want = wantEnd
	if s.i < len(s.src) && s.src[s.i] == '=' {
		s.i++
		s.want, s.level = wantValue, level
	}
	return 0, false
}

// header reads "[a.b]" or "[[a.b]]" up to its last part.
func (s *nestScan) header() (int, bool) {
	s.i++
	if s.i < len(s.src) && s.src[s.i] == '[' {
		s.i++
	}
	level, off, over := s.dottedKey(0)
	if over {
		return off, true
	}
	s.base, s.want = level, wantEnd // the closing brackets are skipped as ends
	return 0, false
}

// dottedKey reads the parts of a dotted key, the first at level+1. It
// returns the level of the last part, and the offset of the first part or
// of the part past the limit.
func (s *nestScan) dottedKey(level int) (int, int, bool) {
	first := -1
	for {
		for s.i < len(s.src) && (s.src[s.i] == ' ' || s.src[s.i] == '\t') {
			s.i++
		}
		start := s.i
		if first < 0 {
			first = start
		}
		switch {
		case s.i < len(s.src) && (s.src[s.i] == '"' || s.src[s.i] == '\''):
			s.str()
		default:
			for s.i < len(s.src) && isBare(s.src[s.i]) {
				s.i++
			}
		}
		if s.i == start { // no part here: the parser will say so
			return level, first, false
		}
		if level++; level > s.limit {
			return level, start, true
		}
		for s.i < len(s.src) && (s.src[s.i] == ' ' || s.src[s.i] == '\t') {
			s.i++
		}
		if s.i >= len(s.src) || s.src[s.i] != '.' {
			return level, first, false
		}
		s.i++
	}
}

// value reads a string or scalar, or opens an array or inline table.
func (s *nestScan) value() (int, bool) {
	switch c := s.src[s.i]; c {
	case '"', '\'':
		s.str()
		s.want = wantEnd
	case '[', '{':
		if s.level+1 > s.limit {
			return s.i, true
		}
		s.i++
		s.level++
		s.open = append(s.open, nestFrame{table: c == '{', level: s.level})
		if c == '{' {
			s.want = wantKey
		}
	case ']': // [] or a trailing comma
		s.end()
	default: // a number, boolean or date: up to a delimiter
		start := s.i
		for s.i < len(s.src) && !isDelim(s.src[s.i]) {
			s.i++
		}
		if s.i == start {
			s.i++
		}
		s.want = wantEnd
	}
	return 0, false
}

func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '#', ',', '[', ']', '{', '}', '"', '\'':
		return true
	}
	return false
}

// end reads what may follow a value: a comma or a closing bracket. Anything
// else is skipped: it is the parser's error.
func (s *nestScan) end() {
	c, top := s.src[s.i], s.top()
	s.i++
	switch {
	case top == nil:
	case c == ',' && top.table:
		s.want = wantKey
	case c == ',':
		s.want, s.level = wantValue, top.level
	case c == ']' && !top.table, c == '}' && top.table:
		s.open = s.open[:len(s.open)-1]
		s.want = wantEnd
	}
}

// str skips a basic or literal string, single- or multi-line, as TOML
// reads it: a single-line string ends at its quote or the end of the line;
// a multi-line one at three quotes (and up to two more, which belong to
// it); only basic strings have escapes.
func (s *nestScan) str() {
	q := s.src[s.i]
	if s.i+2 < len(s.src) && s.src[s.i+1] == q && s.src[s.i+2] == q {
		s.i += 3
		for s.i < len(s.src) {
			switch {
			case q == '"' && s.src[s.i] == '\\':
				s.i += 2
			case s.i+2 < len(s.src) && s.src[s.i] == q && s.src[s.i+1] == q && s.src[s.i+2] == q:
				s.i += 3
				for k := 0; k < 2 && s.i < len(s.src) && s.src[s.i] == q; k++ {
					s.i++
				}
				return
			default:
				s.i++
			}
		}
		s.i = len(s.src)
		return
	}
	s.i++
	for s.i < len(s.src) && s.src[s.i] != q && s.src[s.i] != '\n' {
		if q == '"' && s.src[s.i] == '\\' && s.i+1 < len(s.src) && s.src[s.i+1] != '\n' {
			s.i++
		}
		s.i++
	}
	if s.i < len(s.src) && s.src[s.i] == q {
		s.i++
	}
}
