package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a site file, with where it is and how to fix it.
type Error struct {
	File      string
	Line, Col int    // 1-based; 0 when the problem has no single place
	Msg       string // what is wrong
	Fix       string // how to fix it; may be empty

	more int // on the last error Parse listed: how many more it found
}

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Errors is the problems found in one site file, in file order. Parse
// lists the first maxErrors (20) and counts the rest (Total), so a file
// that is not a site at all costs no more to report than one with a typo.
type Errors []Error

// Error is one line per error, at most maxErrors, then "... and N more
// errors".
func (es Errors) Error() string {
	n := min(len(es), maxErrors)
	s := make([]string, n, n+1)
	for i, e := range es[:n] {
		s[i] = e.Error()
	}
	if more := es.Total() - n; more == 1 {
		s = append(s, "... and 1 more error")
	} else if more > 1 {
		s = append(s, fmt.Sprintf("... and %d more errors", more))
	}
	return strings.Join(s, "\n")
}

// Total is how many errors were found: the ones listed and the ones Parse
// only counted.
func (es Errors) Total() int {
	if len(es) == 0 {
		return 0
	}
	return len(es) + es[len(es)-1].more
}

func before(a, b pos) bool { return a.line < b.line || a.line == b.line && a.col < b.col }

// lists says whether an error at p would be among the first maxErrors in
// file order, so the work of describing one that would not (a suggestion,
// a message) can be skipped and the error only counted.
func (es Errors) lists(p pos) bool {
	if len(es) < maxErrors {
		return true
	}
	last := es[len(es)-1]
	return before(p, pos{last.Line, last.Col})
}

// insert adds e in file order, after errors at the same place (the order
// they were found in), and keeps the first maxErrors; it reports whether
// one was dropped.
func (es *Errors) insert(e Error) bool {
	at := pos{e.Line, e.Col}
	i := sort.Search(len(*es), func(i int) bool { return before(at, pos{(*es)[i].Line, (*es)[i].Col}) })
	*es = append(*es, Error{})
	copy((*es)[i+1:], (*es)[i:])
	(*es)[i] = e
	if len(*es) > maxErrors {
		*es = (*es)[:maxErrors]
		return true
	}
	return false
}

// suggest returns a "did you mean" fix for a misspelt word, or "".
func suggest(got string, candidates []string) string {
	for _, c := range candidates {
		if strings.EqualFold(c, got) {
			return fmt.Sprintf("names are case-sensitive; did you mean %q?", c)
		}
	}
	best, bestD := "", 1<<30
	for _, c := range candidates { // an abbreviation: "prot" for "protocol"
		if len(got) >= 3 && strings.HasPrefix(c, got) && len(c) < bestD {
			best, bestD = c, len(c)
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	for _, c := range candidates {
		if d := levenshtein(got, c); d < bestD {
			best, bestD = c, d
		}
	}
	limit := 2
	if len(got) > 8 {
		limit = 3
	}
	if best != "" && bestD <= limit && bestD < len(got) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return ""
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// oneOf formats a list of allowed values for a fix: "tcp", "udp" or "sctp".
func oneOf(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = fmt.Sprintf("%q", v)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
