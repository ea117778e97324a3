package config

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decoder fills the schema types from the generic tree BurntSushi/toml
// produced, matching keys exactly and collecting every problem with its
// position instead of stopping at the first.
type decoder struct {
	file string
	pos  *positions
	errs Errors          // the first maxErrors found, in file order
	more int             // errors found but not in errs
	bad  map[string]bool // paths already reported: one error per value

	fieldCache map[reflect.Type]fieldIndex
}

type fieldIndex struct {
	byKey map[string]int
	keys  []string
}

func (d *decoder) fields(t reflect.Type) (map[string]int, []string) {
	if f, ok := d.fieldCache[t]; ok {
		return f.byKey, f.keys
	}
	if d.fieldCache == nil {
		d.fieldCache = map[reflect.Type]fieldIndex{}
	}
	m, k := fields(t)
	d.fieldCache[t] = fieldIndex{m, k}
	return m, k
}

// errorf records an error at at. Past maxErrors, one that would not be
// listed is only counted, without formatting its message.
func (d *decoder) errorf(at pos, fix, format string, args ...any) {
	if !d.errs.lists(at) {
		d.more++
		return
	}
	if d.errs.insert(Error{File: d.file, Line: at.line, Col: at.col, Msg: fmt.Sprintf(format, args...), Fix: fix}) {
		d.more++
	}
}

// valErr reports a problem with the value at p.
func (d *decoder) valErr(p path, fix, format string, args ...any) {
	if d.reported(p) {
		return
	}
	d.errorf(d.pos.valAt(p), fix, format, args...)
}

// reported marks p as reported and says whether it (or a table holding it)
// already was, so a value that failed to decode is not reported again by
// validation.
func (d *decoder) reported(p path) bool {
	if d.bad == nil {
		d.bad = map[string]bool{}
	}
	k := p.key()
	end := 0
	for _, seg := range p[:max(len(p)-1, 0)] { // a table that failed as a whole
		end += len(seg)
		if d.bad[k[:end]] { // p[:i].key(), without making it
			return true
		}
		end++
	}
	if d.bad[k] {
		return true
	}
	d.bad[k] = true
	return false
}

// absentErr reports a problem with key, which is absent from the table at
// p: it points at the table.
func (d *decoder) absentErr(p path, key, fix, format string, args ...any) {
	if d.reported(p.child(key)) {
		return
	}
	d.errorf(d.pos.keyAt(p), fix, format, args...)
}

// keyErr reports a problem with the key at p.
func (d *decoder) keyErr(p path, fix, format string, args ...any) {
	if d.reported(p) {
		return
	}
	d.errorf(d.pos.keyAt(p), fix, format, args...)
}

// unknownKey reports the key at p, which is none of names. The suggestion
// costs an edit distance per name, so it is worked out only for an error
// that will be listed: a file can hold a million unknown keys.
func (d *decoder) unknownKey(p path, names []string) {
	if d.reported(p) {
		return
	}
	at, k := d.pos.keyAt(p), p[len(p)-1]
	if !d.errs.lists(at) {
		d.more++
		return
	}
	d.errorf(at, suggest(k, names), "unknown key %q %s", k, where(p))
}

// name is how a message refers to the key at p: "vrid", "check.path",
// "vips" for an element of vips.
func name(p path) string {
	isIndex := func(s string) bool { _, err := strconv.Atoi(s); return err == nil }
	for len(p) > 0 && isIndex(p[len(p)-1]) {
		p = p[:len(p)-1]
	}
	i := len(p)
	for i > 0 && !isIndex(p[i-1]) {
		i--
	}
	if i == len(p) {
		return "value"
	}
	return strings.Join(p[i:], ".")
}

// where describes the table that holds the key at p: "in [[virtual_server]]".
func where(p path) string {
	parent := p[:len(p)-1]
	var segs []string
	for _, s := range parent {
		if _, err := strconv.Atoi(s); err != nil {
			segs = append(segs, s)
		}
	}
	switch {
	case len(parent) == 0:
		return "at top level"
	case len(parent) == 1:
		return "in [" + parent[0] + "]"
	case len(parent) == 2 && len(segs) == 1:
		return "in [[" + parent[0] + "]]"
	}
	return "in " + strings.Join(segs, ".")
}

func typeName(raw any) string {
	switch v := raw.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date/time"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// arrayOf returns raw as a slice if it is a TOML array of any kind.
func arrayOf(raw any) ([]any, bool) {
	switch v := raw.(type) {
	case []any:
		return v, true
	case []map[string]any:
		out := make([]any, len(v))
		for i := range v {
			out[i] = v[i]
		}
		return out, true
	}
	return nil, false
}

type defaulter interface{ setDefaults() }

// fields maps the exact TOML key of each field of struct type t to its index.
func fields(t reflect.Type) (map[string]int, []string) {
	m := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		m[tag] = i
		names = append(names, tag)
	}
	return m, names
}

var (
	durationType = reflect.TypeOf(Duration{})
	addrType     = reflect.TypeOf(netip.Addr{})
	addrPortType = reflect.TypeOf(netip.AddrPort{})
	prefixType   = reflect.TypeOf(netip.Prefix{})
	vipType      = reflect.TypeOf(VIP{})
	commandType  = reflect.TypeOf(Command{})
	statusType   = reflect.TypeOf(StatusRange{})
)

// decode stores raw (the value at p) into rv, which already holds defaults.
func (d *decoder) decode(rv reflect.Value, raw any, p path) {
	switch rv.Type() {
	case durationType:
		d.duration(rv, raw, p)
		return
	case addrType:
		s, ok := d.str(raw, p, `write it as a string, e.g. "192.168.0.1"`)
		if !ok {
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			fix := `write an IPv4 or IPv6 address such as "192.168.0.1" or "2001:db8::1"`
			if strings.Contains(s, "/") {
				fix = "drop the prefix length: " + strconv.Quote(s[:strings.Index(s, "/")])
			}
			d.valErr(p, fix, "%s: invalid IP address %q", name(p), s)
			return
		}
		if a.Zone() != "" {
			d.valErr(p, "drop the zone", "%s: %q has a zone; zones are not supported here", name(p), s)
			return
		}
		rv.Set(reflect.ValueOf(a))
		return
	case addrPortType:
		s, ok := d.str(raw, p, `write it as a string, e.g. "192.168.0.3:80"`)
		if !ok {
			return
		}
		if ap, err := netip.ParseAddrPort(s); err == nil {
			rv.Set(reflect.ValueOf(ap))
			return
		}
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			rv.Set(reflect.ValueOf(netip.AddrPortFrom(a, 0)))
			return
		}
		d.valErr(p, `write IP:PORT, e.g. "192.168.0.3:80" or "[2001:db8::3]:80"`, "%s: invalid address %q", name(p), s)
		return
	case prefixType:
		s, ok := d.str(raw, p, `write it as a string, e.g. "192.168.0.101/24"`)
		if !ok {
			return
		}
		if pf, ok := parsePrefix(s); ok {
			rv.Set(reflect.ValueOf(pf))
			return
		}
		d.valErr(p, `write ADDRESS[/LENGTH], e.g. "192.168.0.101/24" or "2001:db8::101/64"`, "%s: invalid address %q", name(p), s)
		return
	case vipType:
		if s, ok := raw.(string); ok {
			d.vipString(rv.Addr().Interface().(*VIP), s, p)
			return
		}
	case commandType:
		d.command(rv, raw, p)
		return
	case statusType:
		d.status(rv, raw, p)
		return
	}

	switch rv.Kind() {
	case reflect.String:
		if s, ok := d.str(raw, p, fmt.Sprintf("put it in quotes: %s = \"%v\"", name(p), raw)); ok {
			rv.SetString(s)
		}
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			fix := "write true or false"
			if s, isStr := raw.(string); isStr && (s == "true" || s == "false") {
				fix = "drop the quotes: " + name(p) + " = " + s
			}
			d.valErr(p, fix, "%s must be a boolean, not %s", name(p), typeName(raw))
			return
		}
		rv.SetBool(b)
	case reflect.Int, reflect.Uint32:
		n, ok := raw.(int64)
		if !ok {
			fix := "write a whole number"
			if s, isStr := raw.(string); isStr {
				if _, err := strconv.ParseInt(s, 10, 64); err == nil {
					fix = "drop the quotes: " + name(p) + " = " + s
				}
			}
			d.valErr(p, fix, "%s must be an integer, not %s", name(p), typeName(raw))
			return
		}
		if rv.Kind() == reflect.Uint32 && (n < 0 || n > math.MaxUint32) || rv.Kind() == reflect.Int && (n < math.MinInt32 || n > math.MaxInt32) {
			d.valErr(p, "", "%s: %d is out of range", name(p), n)
			return
		}
		if rv.Kind() == reflect.Uint32 {
			rv.SetUint(uint64(n))
		} else {
			rv.SetInt(n)
		}
	case reflect.Slice:
		arr, ok := arrayOf(raw)
		if !ok {
			d.valErr(p, "write an array: "+name(p)+" = [ ... ]", "%s must be an array, not %s", name(p), typeName(raw))
			return
		}
		out := reflect.MakeSlice(rv.Type(), len(arr), len(arr))
		for i, el := range arr {
			ev := out.Index(i)
			if df, ok := ev.Addr().Interface().(defaulter); ok {
				df.setDefaults()
			}
			d.decode(ev, el, p.index(i))
		}
		rv.Set(out)
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			d.valErr(p, "write a table: "+name(p)+" = { key = value }", "%s must be a table, not %s", name(p), typeName(raw))
			return
		}
		out := reflect.MakeMapWithSize(rv.Type(), len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			ev := reflect.New(rv.Type().Elem()).Elem()
			d.decode(ev, m[k], p.child(k))
			out.SetMapIndex(reflect.ValueOf(k), ev)
		}
		rv.Set(out)
	case reflect.Pointer:
		nv := reflect.New(rv.Type().Elem())
		if df, ok := nv.Interface().(defaulter); ok {
			df.setDefaults()
		}
		d.decode(nv.Elem(), raw, p)
		rv.Set(nv)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			d.valErr(p, "", "%s must be a table, not %s", name(p), typeName(raw))
			return
		}
		idx, names := d.fields(rv.Type())
		for _, k := range slices.Sorted(maps.Keys(m)) {
			kp := p.child(k)
			i, known := idx[k]
			if !known {
				d.unknownKey(kp, names)
				continue
			}
			d.decode(rv.Field(i), m[k], kp)
		}
	default:
		panic("config: no decoder for " + rv.Type().String())
	}
}

func (d *decoder) str(raw any, p path, fix string) (string, bool) {
	s, ok := raw.(string)
	if !ok {
		d.valErr(p, fix, "%s must be a string, not %s", name(p), typeName(raw))
	}
	return s, ok
}

func (d *decoder) duration(rv reflect.Value, raw any, p path) {
	switch v := raw.(type) {
	case string:
		t, err := time.ParseDuration(v)
		if err != nil {
			d.valErr(p, `write a number with a unit, e.g. "1.5s", "500ms" or "1m"`, "%s: invalid duration %q", name(p), v)
			return
		}
		if t < 0 {
			d.valErr(p, "", "%s: duration %q is negative", name(p), v)
			return
		}
		rv.Set(reflect.ValueOf(Duration{t}))
	case int64:
		unit := "s"
		if v > 60 { // more likely milliseconds
			unit = "ms"
		}
		d.valErr(p, fmt.Sprintf(`write %s = "%d%s"`, name(p), v, unit), "%s: a duration must be a string with a unit, not a bare number", name(p))
	case float64:
		d.valErr(p, fmt.Sprintf(`write %s = "%gs"`, name(p), v), "%s: a duration must be a string with a unit, not a bare number", name(p))
	default:
		d.valErr(p, `write a string such as "2s"`, "%s must be a duration string, not %s", name(p), typeName(raw))
	}
}

func parsePrefix(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		pf, err := netip.ParsePrefix(s)
		return pf, err == nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// vipString parses "ADDR[/LEN] [dev IFACE] [label LABEL]".
func (d *decoder) vipString(v *VIP, s string, p path) {
	const form = `write "ADDRESS[/LENGTH] [dev INTERFACE] [label LABEL]", e.g. "192.168.0.101/24 label eth0:101"`
	f := strings.Fields(s)
	if len(f) == 0 {
		d.valErr(p, form, "empty VIP")
		return
	}
	pf, ok := parsePrefix(f[0])
	if !ok {
		d.valErr(p, form, "VIP %q: invalid address %q", s, f[0])
		return
	}
	v.Prefix = pf
	for i := 1; i < len(f); i += 2 {
		if i+1 >= len(f) {
			d.valErr(p, form, "VIP %q: %q needs a value", s, f[i])
			return
		}
		switch f[i] {
		case "dev":
			v.Interface = f[i+1]
		case "label":
			v.Label = f[i+1]
		default:
			fix := suggest(f[i], []string{"dev", "label"})
			if fix == "" {
				fix = form
			}
			d.valErr(p, fix, "VIP %q: unknown word %q", s, f[i])
			return
		}
	}
}

func (d *decoder) command(rv reflect.Value, raw any, p path) {
	const fix = `write a string (run with /bin/sh -c) or a list of strings (run directly), e.g. ["/usr/local/bin/check", "arg"]`
	switch v := raw.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			d.valErr(p, fix, "%s is empty", name(p))
			return
		}
		rv.Set(reflect.ValueOf(Command{Shell: v}))
		return
	}
	arr, ok := arrayOf(raw)
	if !ok {
		d.valErr(p, fix, "%s must be a string or a list of strings, not %s", name(p), typeName(raw))
		return
	}
	if len(arr) == 0 {
		d.valErr(p, fix, "%s is an empty list", name(p))
		return
	}
	argv := make([]string, 0, len(arr))
	for i, el := range arr {
		s, ok := el.(string)
		if !ok {
			d.valErr(p.index(i), fix, "%s: every element must be a string, not %s", name(p), typeName(el))
			return
		}
		argv = append(argv, s)
	}
	if argv[0] == "" {
		d.valErr(p, fix, "%s: the program name is empty", name(p))
		return
	}
	rv.Set(reflect.ValueOf(Command{Argv: argv}))
}

func (d *decoder) status(rv reflect.Value, raw any, p path) {
	const fix = `write a status code (200) or a range as a string ("200-399")`
	var r StatusRange
	switch v := raw.(type) {
	case int64:
		r = StatusRange{int(v), int(v)}
	case string:
		lo, hi, isRange := strings.Cut(v, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil {
			d.valErr(p, fix, "expect_status: invalid status %q", v)
			return
		}
		r = StatusRange{a, b}
	default:
		d.valErr(p, fix, "expect_status: a status must be an integer or a string range, not %s", typeName(raw))
		return
	}
	if r.Lo < 100 || r.Hi > 599 || r.Lo > r.Hi {
		d.valErr(p, "HTTP status codes are 100..599, low-high", "expect_status: invalid status range %d-%d", r.Lo, r.Hi)
		return
	}
	rv.Set(reflect.ValueOf(r))
}
