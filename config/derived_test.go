package config

import (
	"strings"
	"testing"
)

// TestConnSyncOf: connection sync is on by default wherever the site has
// virtual servers and two or more directors; [ipvs_sync] changes how, or
// turns it off, and the reason is given whenever it is off.
func TestConnSyncOf(t *testing.T) {
	oneDirector := strings.Replace(base, "[[director]]\nname = \"vs2\"\naddress = \"192.168.0.2\"\ninterface = \"eth0\"\n", "", 1)
	vipOnly := base[:strings.Index(base, "[[virtual_server]]")]
	for _, tc := range []struct {
		name, site string
		on         bool
		iface      string
		instance   string
		why        string
	}{
		{"default on", base, true, "eth0", "", ""},
		{"table changes how", base + "\n[ipvs_sync]\ninterface = \"eth1\"\nsync_id = 7\ninstance = \"www\"\n", true, "eth1", "www", ""},
		{"explicit off", base + "\n[ipvs_sync]\nenabled = false\n", false, "eth0", "", "enabled = false"},
		{"VIP-only site", vipOnly, false, "eth0", "", "no virtual servers"},
		{"single director", strings.Replace(oneDirector, "[cluster]\nsecret_key_file = \"/etc/vigil/cluster.key\"\n", "", 1), false, "eth0", "", "single director"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("site.toml", []byte(tc.site))
			if err != nil {
				t.Fatal(err)
			}
			c := s.ConnSyncOf(&s.Directors[0])
			if c.On != tc.on || c.Interface != tc.iface || c.Instance != tc.instance {
				t.Fatalf("ConnSyncOf = %+v; want on %v interface %s instance %q", c, tc.on, tc.iface, tc.instance)
			}
			if !strings.Contains(c.Why, tc.why) || (tc.on && c.Why != "") {
				t.Fatalf("why %q, want it to say %q", c.Why, tc.why)
			}
		})
	}
}
