package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// base is a small valid site; the error cases below edit it.
const base = `[site]
name = "www"

[[director]]
name = "vs1"
address = "192.168.0.1"
interface = "eth0"
priority = 150

[[director]]
name = "vs2"
address = "192.168.0.2"
interface = "eth0"

[cluster]
secret_key_file = "/etc/vigil/cluster.key"

[[instance]]
name = "www"
vrid = 51
vips = ["192.168.0.101/24 label eth0:101"]

[[virtual_server]]
name = "www"
address = "192.168.0.101:80"
check = { type = "http", path = "/" }
real_servers = [ { address = "192.168.0.3:80" }, { address = "192.168.0.4:80" } ]
`

func TestBaseIsValid(t *testing.T) {
	if _, err := Parse("base.toml", []byte(base)); err != nil {
		t.Fatal(err)
	}
}

func mustErrors(t *testing.T, err error) Errors {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want config.Errors, got %T %v", err, err)
	}
	return errs
}

func TestFiveMistakes(t *testing.T) {
	_, err := Load("testdata/five-mistakes.toml")
	errs := mustErrors(t, err)
	want := []struct {
		line, col int
		msg       string
	}{
		{13, 11, `invalid IP address "192.168.0.300"`},
		{22, 19, `advert_interval: a duration must be a string`},
		{27, 8, `vrid 51 is also used by instance "www" on eth0`},
		{33, 1, `unknown key "prot" in [[virtual_server]]`},
		{38, 11, `virtual server address 192.168.0.110 is not a VIP of any instance`},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		e := errs[i]
		if e.File != "testdata/five-mistakes.toml" || e.Line != w.line || e.Col != w.col || !strings.Contains(e.Msg, w.msg) || e.Fix == "" {
			t.Errorf("error %d = %q (fix %q); want %d:%d %q with a fix", i, e.Error(), e.Fix, w.line, w.col, w.msg)
		}
	}
	if got := errs[3].Error(); got != `testdata/five-mistakes.toml:33:1: unknown key "prot" in [[virtual_server]]; did you mean "protocol"?` {
		t.Errorf("Error() = %q", got)
	}
}

// marked splits text at the marker » and returns the text without it and
// the marker's line and column.
func marked(t *testing.T, text string) (string, int, int) {
	t.Helper()
	i := strings.Index(text, "»")
	if i < 0 {
		t.Fatalf("test case has no » marker")
	}
	before := text[:i]
	line := strings.Count(before, "\n") + 1
	col := len([]rune(before[strings.LastIndex(before, "\n")+1:])) + 1
	return before + text[i+len("»"):], line, col
}

func TestErrors(t *testing.T) {
	// Each case edits base (replace old with new; old "" appends new) so it
	// has exactly one problem; » marks where the error must point.
	cases := []struct {
		name, old, new, msg, fix string
	}{
		{"unknown top-level key", "[site]", "»bogus = 1\n[site]", `unknown key "bogus" at top level`, ""},
		{"key case", `name = "vs2"`, `»Name = "vs2"`, `unknown key "Name" in [[director]]`, `case-sensitive; did you mean "name"?`},
		{"unknown table", "[cluster]", "[»clustr]", `unknown key "clustr" at top level`, `did you mean "cluster"?`},
		{"string for integer", "vrid = 51", `vrid = »"51"`, "vrid must be an integer, not a string", "vrid = 51"},
		{"integer for string", `name = "www"` + "\n\n[[director]]", "name = »5\n\n[[director]]", "name must be a string", `"5"`},
		{"string for boolean", "vrid = 51", "vrid = 51\npreempt = »\"false\"", "preempt must be a boolean", "drop the quotes"},
		{"priority range", "priority = 150", "priority = »255", "priority: 255 is out of range", "1..254"},
		{"duration as integer", "vrid = 51", "vrid = 51\nadvert_interval = »1", "a duration must be a string", `"1s"`},
		{"duration as float", "vrid = 51", "vrid = 51\nadvert_interval = »0.5", "a duration must be a string", `"0.5s"`},
		{"bad duration", "vrid = 51", "vrid = 51\nadvert_interval = »\"1x\"", `invalid duration "1x"`, ""},
		{"bad director address", `"192.168.0.2"`, `»"192.168.0.2/24"`, `invalid IP address`, `drop the prefix length: "192.168.0.2"`},
		{"duplicate director", `name = "vs2"`, `name = »"vs1"`, `duplicate director name "vs1"`, ""},
		{"duplicate director address", `"192.168.0.2"`, `»"192.168.0.1"`, `same address as director "vs1"`, ""},
		{"missing interface", "interface = \"eth0\"\n\n[cluster]", "\n[cluster]", `missing interface in [[director]]`, `interface = "eth0"`},
		{"duplicate vrid", "", "\n[[instance]]\nname = \"mail\"\nvrid = »51\nvips = [\"192.168.0.102\"]\n", `vrid 51 is also used by instance "www" on eth0`, ""},
		{"same vrid other family ok", "", "\n[[instance]]\nname = \"www6\"\nvrid = 51\nvips = [\"2001:db8::1\"]\n»", "", ""},
		{"mixed families", `vips = ["192.168.0.101/24 label eth0:101"]`, `vips = ["192.168.0.101/24", »"2001:db8::1/64"]`, `mixes IPv4 and IPv6`, "separate instances"},
		{"vip twice", "", "\n[[instance]]\nname = \"mail\"\nvrid = 52\nvips = [»\"192.168.0.101\"]\n", `VIP 192.168.0.101 is also in instance "www"`, ""},
		{"vs not a vip", `address = "192.168.0.101:80"`, `address = »"192.168.0.102:80"`, "is not a VIP of any instance", "vips"},
		{"vs without port", `address = "192.168.0.101:80"`, `address = »"192.168.0.101"`, "has no port", `"192.168.0.101:80"`},
		{"v3 advert not centiseconds", "vrid = 51", "vrid = 51\nadvert_interval = »\"15ms\"", "not a multiple of 10ms", `"20ms"`},
		{"v3 advert too short", "vrid = 51", "vrid = 51\nadvert_interval = »\"5ms\"", "out of range", "10ms..40.95s"},
		{"v3 advert too long", "vrid = 51", "vrid = 51\nadvert_interval = »\"41s\"", "out of range", "10ms..40.95s"},
		{"v2 advert fraction", "vrid = 51", "vrid = 51\nversion = 2\nadvert_interval = »\"1500ms\"", "not a whole number of seconds", "version = 3"},
		{"v2 advert short", "vrid = 51", "vrid = 51\nversion = 2\nadvert_interval = »\"100ms\"", "out of range for VRRPv2", ""},
		{"bad version", "vrid = 51", "vrid = 51\nversion = »4", "version: 4", ""},
		{"auth_pass on v3", "vrid = 51", "vrid = 51\n»auth_pass = \"secret\"", "VRRPv3 has no authentication", "version = 2"},
		{"auth_pass too long", "vrid = 51", "vrid = 51\nversion = 2\nauth_pass = »\"123456789\"", "1..8 bytes", ""},
		{"label not matching interface", "label eth0:101", "label eth1:101", "does not match interface eth0", `"eth0:101"`},
		{"label on ipv6", `vips = ["192.168.0.101/24 label eth0:101"]`, `vips = ["192.168.0.101/24"]` + "\n\n[[instance]]\nname = \"v6\"\nvrid = 52\nvips = [»\"2001:db8::1/64 label eth0:1\"]", "IPv6 addresses have no labels", ""},
		{"vip unknown word", "label eth0:101", "lable eth0:101", `unknown word "lable"`, `did you mean "label"?`},
		{"garp under locktime", "vrid = 51", "vrid = 51\ngarp = { interval = »\"500ms\" }", "under 1s", "ignore_locktime"},
		{"garp unknown key", "vrid = 51", "vrid = 51\ngarp = { »repeats = 2 }", `unknown key "repeats" in instance.garp`, `did you mean "repeat"?`},
		{"priorities unknown director", "vrid = 51", "vrid = 51\npriorities = { »vs3 = 120 }", `no director named "vs3"`, ""},
		{"priorities range", "vrid = 51", "vrid = 51\npriorities = { vs2 = »0 }", "out of range", ""},
		{"single sync group", "vrid = 51", "vrid = 51\nsync_group = »\"gw\"", `sync_group "gw" has only one instance`, ""},
		{"unicast peers without unicast", "vrid = 51", "vrid = 51\n»unicast_peers = [\"192.168.0.2\"]", "unicast is off", "unicast = true"},
		{"unicast peer family", "vrid = 51", "vrid = 51\nunicast = true\nunicast_peers = [»\"2001:db8::2\"]", "not of the instance's address family", ""},
		{"gossip with unicast", "vrid = 51", "vrid = 51\ntransport = \"gossip\"\n»unicast = true", "applies only to transport", ""},
		{"bad transport", "vrid = 51", "vrid = 51\ntransport = »\"vrp\"", `unknown value "vrp"`, `did you mean "vrrp"?`},
		{"missing cluster key", "secret_key_file = \"/etc/vigil/cluster.key\"\n", "", "needs a secret_key_file", "insecure = true"},
		{"insecure and key", "[cluster]", "[cluster]\n»insecure = true", "contradicts secret_key_file", ""},
		{"relative key file", `"/etc/vigil/cluster.key"`, `»"cluster.key"`, "not an absolute path", ""},
		{"ipvs_on_stop", "", "\n[site]\n", "", ""}, // replaced below
		{"scheduler typo", `name = "www"` + "\naddress", `name = "www"` + "\nscheduler = »\"wrrr\"\naddress", `unknown value "wrrr"`, `did you mean "wrr"?`},
		{"forwarding typo", `name = "www"` + "\naddress", `name = "www"` + "\nforwarding = »\"tun\"\naddress", `unknown value "tun"`, `"tunnel"`},
		{"dr port change", `{ address = "192.168.0.4:80" }`, `{ address = »"192.168.0.4:8080" }`, "cannot change the port 80", `forwarding = "nat"`},
		{"nat port change ok", `name = "www"` + "\naddress", `name = "www"` + "\nforwarding = \"nat\"\naddress", "", ""},
		{"rs duplicate", `{ address = "192.168.0.4:80" }`, `{ address = »"192.168.0.3" }`, "listed twice", ""},
		{"rs family", `{ address = "192.168.0.4:80" }`, `{ address = »"[2001:db8::4]:80" }`, "another address family", ""},
		{"quorum too big", `check = {`, "quorum = »3\ncheck = {", "quorum 3: the virtual server has 2 real servers", "1..2"},
		{"check key for other type", `{ type = "http", path = "/" }`, `{ type = "tcp", »path = "/" }`, `check key "path" does not apply to a tcp check`, `"http" or "https"`},
		{"check type typo", `type = "http"`, `type = »"htp"`, `check type "htp" is unknown`, `did you mean "http"?`},
		{"check timeout > interval", `path = "/" }`, `path = "/", interval = "1s", timeout = »"2s" }`, "longer than the interval", ""},
		{"check path", `path = "/"`, `path = »"health"`, `does not start with '/'`, `"/health"`},
		{"check bad regex", `path = "/" }`, `path = "/", body_regex = »"a(" }`, "body_regex:", ""},
		{"check bad status", `path = "/" }`, `path = "/", expect_status = [200, »"abc"] }`, `invalid status "abc"`, ""},
		{"check status range", `path = "/" }`, `path = "/", expect_status = [»"399-200"] }`, `invalid status range`, ""},
		{"check digest", `path = "/" }`, `path = "/", digest = »"abc" }`, "not an MD5 hex digest", ""},
		{"head with body", `path = "/" }`, `path = "/", method = »"HEAD", body = "ok" }`, "HEAD response has no body", ""},
		{"exec without command", `{ type = "http", path = "/" }`, `{ type = »"exec" }`, "exec check needs a command", ""},
		{"exec empty command", `{ type = "http", path = "/" }`, `{ type = "exec", command = »[] }`, "command is an empty list", ""},
		{"sni on http", `path = "/" }`, `path = "/", »sni = "www" }`, `check key "sni" does not apply to a http check`, ""},
		{"rs check inherits type", `{ address = "192.168.0.4:80" }`, `{ address = "192.168.0.4:80", check = { path = »"x" } }`, `check path "x"`, ""},
		{"rs check other type fresh", `{ address = "192.168.0.4:80" }`, `{ address = "192.168.0.4:80", check = { type = "tcp", »path = "/" } }`, `does not apply to a tcp check`, ""},
		{"rs unknown key", `{ address = "192.168.0.4:80" }`, `{ address = "192.168.0.4:80", »wieght = 2 }`, `unknown key "wieght" in virtual_server.real_servers`, `did you mean "weight"?`},
		{"fwmark and address", `name = "www"` + "\naddress", `name = "www"` + "\n»fwmark = 1\naddress", "both address and fwmark", ""},
		{"persistence netmask", `check = {`, "persistence = { netmask = »\"255.0.255.0\" }\ncheck = {", "persistence netmask", ""},
		{"v2 with ipv6", "", "\n[[instance]]\nname = \"v6\"\nvrid = 52\nversion = »2\nvips = [\"2001:db8::1\"]\n", "VRRPv2 carries only IPv4", "version = 3"},
		{"hysteresis too big", `check = {`, "hysteresis = »2\ncheck = {", "could never be regained", "0..1"},
		{"sorry server port dr", `check = {`, "sorry_server = »\"192.168.0.9:8080\"\ncheck = {", "cannot change the port 80", ""},
		{"sorry server no port ok", `check = {`, "sorry_server = \"192.168.0.9\"\ncheck = {»", "", ""},
		{"site as array", "[site]", "[[»site]]", "site must be a table, not an array", ""},
		{"multicast vip", `vips = ["192.168.0.101/24 label eth0:101"]`, `vips = ["192.168.0.101/24", »"224.0.0.18"]`, "is a multicast address", ""},
		{"loopback real server", `{ address = "192.168.0.4:80" }`, `{ address = »"127.0.0.1:80" }`, "is a loopback address", ""},
		{"unspecified director", `"192.168.0.2"`, `»"0.0.0.0"`, "is the unspecified address", ""},
		{"duplicate real server name", `{ address = "192.168.0.4:80" }`, `{ name = "a", address = "192.168.0.4:80" }, { name = »"a", address = "192.168.0.5:80" }`, `duplicate real server name "a"`, ""},
		{"syntax error", "vrid = 51", "vrid = »", "TOML syntax", ""},
		{"metrics address", "[site]", "[site]\nmetrics_address = »\"9477\"", "metrics_address: invalid address", ""},
		{"track script timeout", "vrid = 51", "vrid = 51\ntrack_scripts = [ { command = \"true\", interval = \"1s\", timeout = »\"2s\" } ]", "longer than its interval", ""},
		{"track interface twice", "vrid = 51", "vrid = 51\ntrack_interfaces = [ { name = \"eth1\" }, { name = »\"eth1\" } ]", "tracked twice", ""},
		{"no vips", `vips = ["192.168.0.101/24 label eth0:101"]`, `vips = »[]`, "vips is empty", ""},
		{"ipvs_sync instance", "[cluster]", "[ipvs_sync]\ninterface = \"eth1\"\ninstance = »\"wwww\"\n\n[cluster]", `no instance named "wwww"`, `did you mean "www"?`},
	}
	for _, c := range cases {
		if c.name == "ipvs_on_stop" {
			c.old, c.new, c.msg, c.fix = "[site]", "[site]\nipvs_on_stop = »\"flush\"", `unknown value "flush"`, `"remove" or "keep"`
		}
		t.Run(c.name, func(t *testing.T) {
			text := base + c.new
			if c.old != "" {
				if !strings.Contains(base, c.old) {
					t.Fatalf("base has no %q", c.old)
				}
				text = strings.Replace(base, c.old, c.new, 1)
			}
			if c.msg == "" { // a valid variation
				text = strings.Replace(text, "»", "", 1)
				if _, err := Parse("t.toml", []byte(text)); err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			wantLine, wantCol := 0, 0
			if strings.Contains(text, "»") {
				text, wantLine, wantCol = marked(t, text)
			}
			_, err := Parse("t.toml", []byte(text))
			errs := mustErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("want 1 error, got %d:\n%v", len(errs), errs)
			}
			e := errs[0]
			if !strings.Contains(e.Msg, c.msg) || !strings.Contains(e.Fix, c.fix) {
				t.Errorf("got %q\nwant message containing %q and fix containing %q", e.Error(), c.msg, c.fix)
			}
			if wantLine != 0 && (e.Line != wantLine || e.Col != wantCol) {
				t.Errorf("at %d:%d, want %d:%d (%s)", e.Line, e.Col, wantLine, wantCol, e.Error())
			}
		})
	}
}

func TestSeveralProblemsInOneTable(t *testing.T) {
	_, err := Parse("t.toml", []byte(base+"\n[[virtual_server]]\nscheduler = \"rr\"\n\n[[instance]]\nvips = []\n"))
	errs := mustErrors(t, err)
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, fmt.Sprintf("%d:%d %s", e.Line, e.Col, e.Msg))
	}
	want := []string{
		"29:3 virtual server has no address",
		`29:3 virtual server "" has no real servers`,
		"32:3 missing name in [[instance]]",
		"32:3 missing vrid in [[instance]]",
		"33:8 vips is empty",
	}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadUnreadable(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want fs.ErrNotExist, got %v", err)
	}
	var errs Errors
	if errors.As(err, &errs) {
		t.Fatal("an unreadable file must not be reported as Errors")
	}
}

func TestDefaults(t *testing.T) {
	s, err := Parse("base.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	in := &s.Instances[0]
	vs := &s.VirtualServers[0]
	rs := &vs.RealServers[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"control socket", s.Settings.ControlSocket, "/run/vigil/vigil.sock"},
		{"ipvs on stop", s.Settings.IPVSOnStop, "remove"},
		{"reconcile", s.Settings.ReconcileInterval.Duration, 5 * time.Second},
		{"director priority", s.Directors[1].Priority, 100},
		{"cluster port", s.Cluster.Port, 7946},
		{"version", in.Version, 3},
		{"advert", in.AdvertInterval.Duration, time.Second},
		{"preempt", in.Preempt, true},
		{"transport", in.Transport, "vrrp"},
		{"garp repeat", in.GARP.Repeat, 3},
		{"garp interval", in.GARP.Interval.Duration, 1100 * time.Millisecond},
		{"protocol", vs.Protocol, "tcp"},
		{"scheduler", vs.Scheduler, "wlc"},
		{"forwarding", vs.Forwarding, "dr"},
		{"quorum", vs.Quorum, 1},
		{"rs weight", rs.Weight, 1},
		{"rs forwarding", rs.Forwarding, "dr"},
		{"rs name", rs.Name, "192.168.0.3:80"},
		{"rs check type", rs.Check.Type, "http"},
		{"check interval", rs.Check.Interval.Duration, 2 * time.Second},
		{"check timeout", rs.Check.Timeout.Duration, time.Second},
		{"check rise", rs.Check.Rise, 2},
		{"check fall", rs.Check.Fall, 3},
		{"check initial", rs.Check.InitialState, "down"},
		{"check status", rs.Check.ExpectStatus, []StatusRange{{200, 399}}},
		{"vip prefix", in.VIPs[0].Prefix.String(), "192.168.0.101/24"},
		{"vip label", in.VIPs[0].Label, "eth0:101"},
	}
	for _, c := range checks {
		if !equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func equal(a, b any) bool {
	if sa, ok := a.([]StatusRange); ok {
		return slices.Equal(sa, b.([]StatusRange))
	}
	return a == b
}

func TestRealServerCheckOverride(t *testing.T) {
	text := strings.Replace(base, `{ address = "192.168.0.4:80" }`,
		`{ address = "192.168.0.4:8080", forwarding = "nat", check = { path = "/health", interval = "1s" } }`, 1)
	text = strings.Replace(text, `{ address = "192.168.0.3:80" }`, `{ address = "192.168.0.3", check = { type = "exec", command = ["/bin/true"] } }`, 1)
	s, err := Parse("t.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	vs := s.VirtualServers[0]
	rs0, rs1 := vs.RealServers[0], vs.RealServers[1]
	if vs.Check.Path != "/" || vs.Check.Interval.Duration != 2*time.Second {
		t.Errorf("virtual server check changed: %+v", vs.Check)
	}
	if rs1.Check.Type != "http" || rs1.Check.Path != "/health" || rs1.Check.Interval.Duration != time.Second || rs1.Check.Timeout.Duration != time.Second {
		t.Errorf("merged check = %+v", rs1.Check)
	}
	if rs0.Address.Port() != 80 || rs0.Check.Type != "exec" || len(rs0.Check.Command.Argv) != 1 || rs0.Check.Path != "/" {
		t.Errorf("replaced check = %+v, address %v", rs0.Check, rs0.Address)
	}
	if rs1.Forwarding != "nat" || rs0.Forwarding != "dr" {
		t.Errorf("forwarding %q %q", rs0.Forwarding, rs1.Forwarding)
	}
}

func TestDerived(t *testing.T) {
	text := strings.Replace(base, "vrid = 51", `vrid = 51
advert_interval = "100ms"
priorities = { vs2 = 200 }
unicast = true`, 1)
	s, err := Parse("t.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	in := &s.Instances[0]
	vs1, _ := s.Director("vs1")
	vs2, _ := s.Director("vs2")
	if _, err := s.Director("vs3"); err == nil || !strings.Contains(err.Error(), `"vs1", "vs2"`) {
		t.Errorf("Director(vs3) error = %v", err)
	}
	if in.PriorityOf(vs1) != 150 || in.PriorityOf(vs2) != 200 {
		t.Errorf("priorities %d %d", in.PriorityOf(vs1), in.PriorityOf(vs2))
	}
	if s.Role(in, vs2) != "master" || s.Role(in, vs1) != "backup" {
		t.Errorf("roles: vs1 %s, vs2 %s", s.Role(in, vs1), s.Role(in, vs2))
	}
	// RFC 5798: skew = (256-prio)*interval/256; down = 3*interval + skew.
	if got, want := in.Skew(150), 106*100*time.Millisecond/256; got != want {
		t.Errorf("skew = %v, want %v", got, want)
	}
	if got, want := in.MasterDownInterval(150), 300*time.Millisecond+106*100*time.Millisecond/256; got != want {
		t.Errorf("master down = %v, want %v", got, want)
	}
	ft, next := s.FailoverTime(in)
	if next == nil || next.Name != "vs1" || ft != in.MasterDownInterval(150) {
		t.Errorf("failover %v via %v", ft, next)
	}
	if p := s.UnicastPeers(in, vs1); len(p) != 1 || p[0].String() != "192.168.0.2" {
		t.Errorf("unicast peers of vs1 = %v", p)
	}
	if in.InterfaceOf(vs1) != "eth0" || s.ClusterBindAddress(vs2).String() != "192.168.0.2" {
		t.Error("interface or bind address")
	}

	v2 := &Instance{Version: 2, AdvertInterval: dur(time.Second)}
	if got, want := v2.MasterDownInterval(100), 3*time.Second+156*time.Second/256; got != want {
		t.Errorf("v2 master down = %v, want %v", got, want)
	}
}

func TestRankingTieBreaksOnAddress(t *testing.T) {
	text := strings.Replace(base, "priority = 150\n", "", 1) // both 100
	s, err := Parse("t.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Ranking(&s.Instances[0]); r[0].Name != "vs2" {
		t.Errorf("tie: master %s, want vs2 (higher address)", r[0].Name)
	}
}

func TestDigestStable(t *testing.T) {
	a, err := Parse("a.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	// Same site: reordered keys, comments, other spacing, defaults written out,
	// inline tables as sub-tables.
	reordered := `# the same site
[cluster]
secret_key_file="/etc/vigil/cluster.key"
port = 7946

[site]
name="www"

[[director]]
priority = 150
interface = "eth0"
address   = "192.168.0.1"
name = "vs1"

[[director]]
name = "vs2"   # backup
address = "192.168.0.2"
interface = "eth0"
priority = 100

[[instance]]
vips = [ "192.168.0.101/24 label eth0:101" ]
vrid = 51
name = "www"
advert_interval = "1000ms"

[[virtual_server]]
real_servers = [
  { address = "192.168.0.3:80" },
  { weight = 1, address = "192.168.0.4:80" },
]
address = "192.168.0.101:80"
name = "www"
[virtual_server.check]
path = "/"
type = "http"
`
	b, err := Parse("b.toml", []byte(reordered))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest() != b.Digest() {
		t.Error("digest differs for the same site written differently")
	}
	c, err := Parse("c.toml", []byte(strings.Replace(base, "priority = 150", "priority = 151", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest() == c.Digest() {
		t.Error("digest equal for different sites")
	}
}

func TestExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.toml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s:\n%v", f, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../examples/*.toml")
	files = append(files, "testdata/five-mistakes.toml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(base))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.toml", data)
		// deterministic: the same input gives the same errors or digest
		s2, err2 := Parse("fuzz.toml", data)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() || err == nil && s.Digest() != s2.Digest() {
			t.Fatalf("two parses differ:\n%v\n---\n%v", err, err2)
		}
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
			}
			for _, e := range errs {
				if e.Line < 1 || e.Col < 1 || e.Msg == "" {
					t.Fatalf("error without position or message: %+v", e)
				}
			}
			return
		}
		if s == nil {
			t.Fatal("nil site without error")
		}
		_ = s.Digest()
		for i := range s.Instances {
			s.FailoverTime(&s.Instances[i])
		}
	})
}
