package config

import (
	"fmt"
	"strings"
	"testing"
)

// bigSite writes a site with nvs virtual servers of nrs real servers each.
func bigSite(nvs, nrs int) []byte {
	var b strings.Builder
	b.WriteString(`[site]
name = "big"
[[director]]
name = "vs1"
address = "10.0.0.1"
interface = "eth0"
[[director]]
name = "vs2"
address = "10.0.0.2"
interface = "eth0"
[cluster]
secret_key_file = "/etc/vigil/cluster.key"
[[instance]]
name = "big"
vrid = 1
vips = [`)
	nvip := (nvs + 99) / 100
	for i := 0; i < nvip; i++ {
		fmt.Fprintf(&b, "%q,", fmt.Sprintf("10.1.%d.%d/16", i/250, i%250+1))
	}
	b.WriteString("]\n")
	for v := 0; v < nvs; v++ {
		vip := v / 100
		fmt.Fprintf(&b, "[[virtual_server]]\naddress = \"10.1.%d.%d:%d\"\ncheck = { type = \"http\", path = \"/health\" }\nreal_servers = [\n", vip/250, vip%250+1, 1000+v%100)
		for r := 0; r < nrs; r++ {
			n := v*nrs + r
			fmt.Fprintf(&b, "  { address = \"10.2.%d.%d\", weight = %d },\n", n/250%250, n%250+1, 1+r%3)
		}
		b.WriteString("]\n")
	}
	return []byte(b.String())
}

// BenchmarkParseLarge is the reload target's config half: 2,000 virtual
// servers with 20,000 real servers (keepalived needed 100+ s for a site of
// that size before its fix).
func BenchmarkParseLarge(b *testing.B) {
	data := bigSite(2000, 10)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		s, err := Parse("big.toml", data)
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Digest()
	}
}

func TestParseLarge(t *testing.T) {
	s, err := Parse("big.toml", bigSite(200, 10))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.VirtualServers) != 200 || len(s.VirtualServers[199].RealServers) != 10 {
		t.Fatal("wrong size")
	}
}
