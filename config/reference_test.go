package config

import (
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const referenceFile = "../examples/reference.toml"

// TestReferenceDefaults checks that the values reference.toml marks
// "(default)" are the real defaults: without those lines the site is the
// same (same digest).
func TestReferenceDefaults(t *testing.T) {
	data, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	full, err := Parse(referenceFile, data)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	stripped := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "# (default)") {
			stripped++
			continue
		}
		kept = append(kept, line)
	}
	if stripped < 30 {
		t.Fatalf("only %d default lines in %s; every default should be written there", stripped, referenceFile)
	}
	bare, err := Parse("stripped.toml", []byte(strings.Join(kept, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if full.Digest() != bare.Digest() {
		t.Errorf("a line marked (default) in %s is not the default", referenceFile)
	}
}

// TestReferenceHasEveryKey checks that reference.toml writes every key of
// the schema at least once.
func TestReferenceHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	for k := range scanPositions(string(data)).keys {
		segs := strings.Split(k, "\x00")
		written[segs[len(segs)-1]] = true
	}
	var missing []string
	for key := range schemaKeys(reflect.TypeOf(Site{}), map[reflect.Type]bool{}) {
		if !written[key] {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%s does not document: %s", referenceFile, strings.Join(missing, ", "))
	}
}

var leafTypes = map[reflect.Type]bool{
	durationType: true, addrType: true, addrPortType: true, prefixType: true,
	commandType: true, statusType: true, reflect.TypeOf(netip.Addr{}): true,
}

func schemaKeys(t reflect.Type, seen map[reflect.Type]bool) map[string]bool {
	out := map[string]bool{}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || leafTypes[t] || seen[t] {
		return out
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		out[tag] = true
		for k := range schemaKeys(t.Field(i).Type, seen) {
			out[k] = true
		}
	}
	return out
}

// TestDocsListEveryKey keeps docs/site-file.md in step with the schema.
func TestDocsListEveryKey(t *testing.T) {
	data, err := os.ReadFile("../docs/site-file.md")
	if err != nil {
		t.Fatalf("docs/site-file.md: %v", err)
	}
	var missing []string
	for key := range schemaKeys(reflect.TypeOf(Site{}), map[reflect.Type]bool{}) {
		if !regexp.MustCompile("`[^`\n]*\\b" + regexp.QuoteMeta(key) + "\\b[^`\n]*`").Match(data) {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/site-file.md does not mention: %s", strings.Join(missing, ", "))
	}
}
