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

// Errors is every problem found in one site file, in file order.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (es Errors) sort() {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Col < es[j].Col
	})
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
