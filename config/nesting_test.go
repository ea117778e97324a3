package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestNestingScan: the scan counts levels as TOML nests them and skips
// strings and comments the way TOML reads them. » marks where the scan
// must stop; a case without one must pass.
func TestNestingScan(t *testing.T) {
	cases := []struct {
		name, text string
		limit      int
	}{
		{"array", "x = [»[]]", 2},
		{"array at the limit", "x = [[]]", 3},
		{"inline table", "x = »{}", 1},
		{"key in an inline table", "x = {»a = 1}", 2},
		{"dotted key", "a.b.»c = 1", 2},
		{"quoted key parts", "\"a.b\".'c.d' = 1", 2},
		{"spaces around dots", "a . b .  »c = 1", 2},
		{"header parts", "[a.b.»c]", 2},
		{"array of tables header", "[[a.»b]]", 1},
		{"key under a header", "[a.b]\n»c = 1", 2},
		{"header resets the level", "[a.b]\n[c]\nd = 1", 2},
		{"array over lines with comments", "x = [ # ]\n  1, # ]]\n  »[ ]\n]", 2},
		{"level after a closed array", "x = [[], [»[]]]", 3},
		{"closed arrays", "x = [[], [ ], [1, 2]]", 3},
		{"key after a comma", "x = {a = 1, b = »{}}", 3},
		{"table after a closed table", "x = [{}, {»a = 1}]", 3},
		{"table in an array", "x = [{a = »[]}]", 4},
		{"basic string", "x = \"[[[[\"\ny = [»[", 2},
		{"escaped quote", "x = \"\\\"[[[[\\\\\"\ny = [»[", 2},
		{"literal string has no escapes", "x = ['a\\', »[]]", 2},
		{"unterminated string ends at the line", "x = \"[[[[\ny = [»[", 2},
		{"multi-line basic string", "x = \"\"\"\n[[[\n\\\"\"\" [[[\n\"\"\"\ny = [»[", 2},
		{"multi-line string closed by five quotes", "x = \"\"\"a\"\"\"\"\"\ny = [»[", 2},
		{"multi-line literal string", "x = '''\n[[[\n\\'''\ny = [»[", 2},
		{"comment", "# [[[[\nx = [»[ # [[[[\n]]", 2},
		{"hash in a string", "x = \"#\" \ny = [»[", 2},
		{"dates and numbers", "x = [1979-05-27T07:32:00Z, 1e3, »[]]", 2},
		{"CRLF", "[a]\r\n»b = 1\r\n", 1},
		{"byte order mark", "\ufeff[a]\n»b = 1", 1},
		{"no key at all", "= [[[[", 2},
		{"junk", "x = 1 [[[[\n]]]] }}} ,,, \"", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text, want := c.text, -1
			if i := strings.Index(text, "»"); i >= 0 {
				text, want = text[:i]+text[i+len("»"):], i
			}
			off, over := nestingOver(text, c.limit)
			switch {
			case want < 0 && over:
				t.Errorf("over the limit at %d: %q", off, text[off:])
			case want >= 0 && (!over || off != want):
				t.Errorf("got %d %v, want over at %d: %q", off, over, want, text[want:])
			}
		})
	}
}

// treeDepth is the level of the deepest value under v, at level: a key adds
// one, an array element one, a table of an array of tables none (the
// header's parts count it, as the scan does).
func treeDepth(v any, level int) int {
	deepest := level
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			deepest = max(deepest, treeDepth(x, level+1))
		}
	case []map[string]any:
		for _, x := range v {
			deepest = max(deepest, treeDepth(x, level))
		}
	case []any:
		for _, x := range v {
			deepest = max(deepest, treeDepth(x, level+1))
		}
	}
	return deepest
}

// FuzzNesting: the scan never undercounts. Wherever the TOML decoder
// accepts the text, the scan finds at least the nesting of what it
// decoded (it counts inline tables' brackets too, so it may find more).
// A bracket the scan wrongly took for part of a string or comment would
// show here.
func FuzzNesting(f *testing.F) {
	files, _ := filepath.Glob("../examples/*.toml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	// Nesting right after each kind of string and comment, so that a
	// mutation fooling the scan into skipping brackets still decodes.
	for _, s := range []string{
		base,
		`x = [[1], {a = ["]"]}]`,
		`x = ['\', [[1]]]`,
		`x = ["\\", [[1]]]`,
		`x = ["\"", [[1]]]`,
		`x = ['''\''', [[1]]]`,
		`x = ['''a''''', [[1]]]`,
		`x = ["""\""""", [[1]]]`,
		"x = [\"\"\"\n]\\\n\"\"\", [[1]]]",
		"x = [ # ]\n[[1]]]",
		"a.'b'.\"c\" = '''\n]'''\nd = [[1]]",
		"[[a.b]]\nc = \"\"\"[\"\"\"\"\nd = {e = [1]}",
		"x = { a.b = [1], 'c.d' = {e = [[]]} }",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		off, over := nestingOver(text, maxDepth)
		if over && (off < 0 || off >= len(text)) {
			t.Fatalf("offset %d out of range", off)
		}
		var raw map[string]any
		if _, err := toml.Decode(text, &raw); err != nil {
			return
		}
		if d := treeDepth(raw, 0); d > 0 {
			if off, over := nestingOver(text, d-1); !over {
				t.Fatalf("the decoder nested %d deep; the scan found no more than %d", d, d-1)
			} else if off >= len(text) {
				t.Fatalf("offset %d out of range", off)
			}
		}
	})
}
