package config

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// BurntSushi/toml gives decoded values no positions (and undecoded keys
// none either), so positions come from this scanner. It runs only on text
// the TOML parser has already accepted, so it can be lenient; it must still
// never panic or loop on anything.
//
// A path names a key or value: table and key names, with array indices as
// decimal segments, e.g. virtual_server/1/real_servers/0/address.

type pos struct{ line, col int }

type path []string

func (p path) key() string { return strings.Join(p, "\x00") }

func (p path) child(s string) path {
	q := make(path, len(p), len(p)+1)
	copy(q, p)
	return append(q, s)
}

func (p path) index(i int) path { return p.child(strconv.Itoa(i)) }

// positions maps paths to where their key and their value start.
type positions struct {
	keys map[string]pos
	vals map[string]pos
}

// keyAt is where the key of p is written, or the closest thing to it. The
// keys of p's prefixes are slices of p's key, not new strings: this runs
// for every error, and a file can hold a million.
func (ps *positions) keyAt(p path) pos {
	k := p.key()
	for n, end := len(p), len(k); n > 0; n-- {
		if q, ok := ps.keys[k[:end]]; ok {
			return q
		}
		if q, ok := ps.vals[k[:end]]; ok {
			return q
		}
		end -= len(p[n-1]) + 1
	}
	return pos{1, 1}
}

// valAt is where the value of p is written, or the closest thing to it.
func (ps *positions) valAt(p path) pos {
	if q, ok := ps.vals[p.key()]; ok {
		return q
	}
	return ps.keyAt(p)
}

// The scanner builds path keys (path.key form) as strings directly: it
// runs over every key of a large site on each reload.
type scanner struct {
	src string
	i   int
	// posOf counts on from where it was last asked: the scan asks in file
	// order, and counting each column from its line's start was quadratic
	// on a long line (1 MB of keys on one line took 34 s).
	lastOff int
	lastPos pos
	ps      *positions
	aot     map[string]int // array-of-tables path key -> elements seen
}

func childKey(k, seg string) string {
	if k == "" {
		return seg
	}
	return k + "\x00" + seg
}

func scanPositions(src string) *positions {
	s := &scanner{
		src:     src,
		lastPos: pos{1, 1},
		ps:      &positions{keys: map[string]pos{}, vals: map[string]pos{}},
		aot:     map[string]int{},
	}
	s.document()
	return s.ps
}

// posOf is the line and column (in runes) of byte off.
func (s *scanner) posOf(off int) pos {
	off = min(off, len(s.src))
	if off < s.lastOff { // not expected; correct all the same
		s.lastOff, s.lastPos = 0, pos{1, 1}
	}
	p, i := s.lastPos, s.lastOff
	for i < off {
		if s.src[i] == '\n' {
			p.line, p.col = p.line+1, 1
			i++
			continue
		}
		_, n := utf8.DecodeRuneInString(s.src[i:])
		i += n
		p.col++
	}
	s.lastOff, s.lastPos = i, p
	return p
}

func (s *scanner) peek() byte {
	if s.i < len(s.src) {
		return s.src[s.i]
	}
	return 0
}

func (s *scanner) skipSpace() {
	for s.i < len(s.src) && (s.src[s.i] == ' ' || s.src[s.i] == '\t') {
		s.i++
	}
}

// skipBlank skips spaces, newlines and comments.
func (s *scanner) skipBlank() {
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		case '#':
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

func (s *scanner) skipLine() {
	for s.i < len(s.src) && s.src[s.i] != '\n' {
		s.i++
	}
}

func (s *scanner) setKey(k string, off int) {
	if _, ok := s.ps.keys[k]; !ok {
		s.ps.keys[k] = s.posOf(off)
	}
}

func (s *scanner) document() {
	var table string
	for {
		s.skipBlank()
		if s.i >= len(s.src) {
			return
		}
		start := s.i
		if s.peek() == '[' {
			s.i++
			array := s.peek() == '['
			if array {
				s.i++
			}
			table = s.header(array)
			s.skipLine()
		} else {
			s.keyval(table)
			s.skipBlank()
		}
		if s.i == start { // no progress: give up rather than loop
			s.i++
		}
	}
}

// resolve turns written segments into a path, descending into the last
// element of each array of tables on the way.
func (s *scanner) resolve(segs []string) string {
	p := ""
	for _, seg := range segs {
		p = childKey(p, seg)
		if n, ok := s.aot[p]; ok && n > 0 {
			p = childKey(p, strconv.Itoa(n-1))
		}
	}
	return p
}

func (s *scanner) header(array bool) string {
	s.skipSpace()
	segs, offs := s.keys()
	if len(segs) == 0 {
		return ""
	}
	for j := range segs[:len(segs)-1] {
		s.setKey(s.resolve(segs[:j+1]), offs[j])
	}
	last := len(segs) - 1
	p := childKey(s.resolve(segs[:last]), segs[last])
	s.setKey(p, offs[last])
	if !array {
		return p
	}
	n := s.aot[p]
	s.aot[p] = n + 1
	el := childKey(p, strconv.Itoa(n))
	s.setKey(el, offs[last])
	return el
}

// keys reads a dotted key and returns its segments and their offsets.
func (s *scanner) keys() (segs []string, offs []int) {
	for {
		s.skipSpace()
		off := s.i
		k, ok := s.simpleKey()
		if !ok {
			return segs, offs
		}
		segs, offs = append(segs, k), append(offs, off)
		s.skipSpace()
		if s.peek() != '.' {
			return segs, offs
		}
		s.i++
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func (s *scanner) simpleKey() (string, bool) {
	switch s.peek() {
	case '"':
		start := s.i
		s.i++
		for s.i < len(s.src) && s.src[s.i] != '"' && s.src[s.i] != '\n' {
			if s.src[s.i] == '\\' {
				s.i++
			}
			s.i++
		}
		if s.i >= len(s.src) || s.src[s.i] != '"' {
			return "", false
		}
		s.i++
		raw := s.src[start:s.i]
		if k, err := strconv.Unquote(raw); err == nil {
			return k, true
		}
		return raw[1 : len(raw)-1], true
	case '\'':
		s.i++
		start := s.i
		for s.i < len(s.src) && s.src[s.i] != '\'' && s.src[s.i] != '\n' {
			s.i++
		}
		if s.i >= len(s.src) || s.src[s.i] != '\'' {
			return "", false
		}
		k := s.src[start:s.i]
		s.i++
		return k, true
	}
	start := s.i
	for s.i < len(s.src) && isBare(s.src[s.i]) {
		s.i++
	}
	return s.src[start:s.i], s.i > start
}

// keyval reads "key = value" inside table (or an inline table at table).
func (s *scanner) keyval(table string) {
	segs, offs := s.keys()
	if len(segs) == 0 {
		return
	}
	p := table
	for j, seg := range segs {
		p = childKey(p, seg)
		s.setKey(p, offs[j])
	}
	s.skipSpace()
	if s.peek() != '=' {
		return
	}
	s.i++
	s.skipSpace()
	s.value(p)
}

func (s *scanner) value(p string) {
	s.ps.vals[p] = s.posOf(s.i)
	switch c := s.peek(); c {
	case '"', '\'':
		s.str(c)
	case '[':
		s.i++
		for n := 0; ; n++ {
			s.skipBlank()
			if s.i >= len(s.src) || s.peek() == ']' {
				break
			}
			before := s.i
			s.value(childKey(p, strconv.Itoa(n)))
			s.skipBlank()
			if s.peek() == ',' {
				s.i++
			} else if s.peek() != ']' || s.i == before {
				break
			}
		}
		if s.peek() == ']' {
			s.i++
		}
	case '{':
		s.i++
		for {
			s.skipBlank()
			if s.i >= len(s.src) || s.peek() == '}' {
				break
			}
			before := s.i
			s.keyval(p)
			s.skipBlank()
			if s.peek() == ',' {
				s.i++
			} else if s.peek() != '}' || s.i == before {
				break
			}
		}
		if s.peek() == '}' {
			s.i++
		}
	default:
		for s.i < len(s.src) && !strings.ContainsRune(",]}#\n", rune(s.src[s.i])) {
			s.i++
		}
	}
}

// str skips a basic or literal string, single- or multi-line.
func (s *scanner) str(q byte) {
	triple := strings.HasPrefix(s.src[s.i:], strings.Repeat(string(q), 3))
	if triple {
		s.i += 3
		for s.i < len(s.src) {
			if q == '"' && s.src[s.i] == '\\' {
				s.i += 2
				continue
			}
			if strings.HasPrefix(s.src[s.i:], strings.Repeat(string(q), 3)) {
				s.i += 3
				// up to two more quotes belong to the content
				for k := 0; k < 2 && s.peek() == q; k++ {
					s.i++
				}
				return
			}
			s.i++
		}
		return
	}
	s.i++
	for s.i < len(s.src) && s.src[s.i] != q && s.src[s.i] != '\n' {
		if q == '"' && s.src[s.i] == '\\' {
			s.i++
		}
		s.i++
	}
	if s.peek() == q {
		s.i++
	}
}
