package config

import (
	"strings"
	"testing"
)

// TestPositionsTrickyTOML: the scanner must find keys after constructs that
// look like keys or headers but are not (multi-line strings, comments),
// and through dotted keys, quoted keys, nested arrays of tables and
// multi-line inline arrays.
func TestPositionsTrickyTOML(t *testing.T) {
	cases := []struct {
		name, text string
		msg        string
	}{
		{"after multi-line basic string", "[site]\nname = \"www\"\nmetrics_address = \"\"\"\n[fake]\nbogus = 1\n\"\"\"\n»bogus = 2\n", `unknown key "bogus" in [site]`},
		{"after multi-line literal string", "[site]\nname = '''\n[x]\nk = \"\n'''\n»bogus = 2\n", `unknown key "bogus" in [site]`},
		{"quote run closing a multi-line string", "[site]\nname = \"\"\"a\"\"\"\"\"\n»bogus = 1\n", `unknown key "bogus" in [site]`},
		{"comment with brackets and equals", "[site] # [[virtual_server]] x = 1\n# bogus = 1\nname = \"www\" # ] } =\n»bogus = 2\n", `unknown key "bogus" in [site]`},
		{"dotted key", "site.name = \"www\"\nsite.»bogus = 1\n", `unknown key "bogus" in [site]`},
		{"quoted key", "[site]\nname = \"www\"\n»\"bo gus\" = 1\n", `unknown key "bo gus" in [site]`},
		{"quoted table header", "[\"site\"]\nname = \"www\"\n»bogus = 1\n", `unknown key "bogus" in [site]`},
		{"spaces in header", "[ site ]\nname = \"www\"\n  »bogus = 1\n", `unknown key "bogus" in [site]`},
		{"second array element", "[[director]]\nname = \"a\"\n[[director]]\nname = \"b\"\n»bogus = 1\n", `unknown key "bogus" in [[director]]`},
		{"nested array of tables", "[[virtual_server]]\nname = \"a\"\n[[virtual_server.real_servers]]\naddress = \"10.0.0.1:80\"\n[[virtual_server.real_servers]]\naddress = \"10.0.0.2:80\"\n»wieght = 1\n", `unknown key "wieght" in virtual_server.real_servers`},
		{"sub-table of second element", "[[virtual_server]]\nname = \"a\"\n[[virtual_server]]\nname = \"b\"\n[virtual_server.check]\n»tipe = \"tcp\"\n", `unknown key "tipe" in virtual_server.check`},
		{"multi-line inline array", "[[virtual_server]]\nreal_servers = [\n  # a comment, with { braces }\n  { address = \"10.0.0.1:80\" },\n  { address = \"10.0.0.2:80\",\n    »bogus = 1 },\n]\n", `unknown key "bogus" in virtual_server.real_servers`},
		{"CRLF line ends", "[site]\r\nname = \"www\"\r\n# c\r\n»bogus = 1\r\n", `unknown key "bogus" in [site]`},
		{"byte order mark", "\ufeff[site]\nname = \"www\"\n»bogus = 1\n", `unknown key "bogus" in [site]`},
		{"tab indentation", "[site]\n\tname = \"www\"\n\t»bogus = 1\n", `unknown key "bogus" in [site]`},
		{"value after unicode", "[[instance]]\nname = \"é\" # é\nvrid = »\"x\"\n", "vrid must be an integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text, line, col := marked(t, c.text)
			_, err := Parse("t.toml", []byte(text))
			errs := mustErrors(t, err)
			for _, e := range errs {
				if strings.Contains(e.Msg, c.msg) {
					if e.Line != line || e.Col != col {
						t.Errorf("%q at %d:%d, want %d:%d", e.Msg, e.Line, e.Col, line, col)
					}
					return
				}
			}
			t.Errorf("no error %q in:\n%v", c.msg, errs)
		})
	}
}
