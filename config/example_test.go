package config_test

import (
	"errors"
	"fmt"

	"github.com/vigil-lb/vigil/config"
)

func ExampleParse() {
	site := `
[site]
name = "www"

[[director]]
name = "vs1"
address = "192.168.0.1"
interface = "eth0"

[[instance]]
name = "www"
vrid = 51
advert_interval = 1
vips = ["192.168.0.101/24"]

[[virtual_server]]
address = "192.168.0.101:80"
prot = "tcp"
real_servers = [ { address = "192.168.0.3:80" } ]
`
	_, err := config.Parse("www.toml", []byte(site))
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Println(e)
		}
	}
	// Output:
	// www.toml:13:19: advert_interval: a duration must be a string with a unit, not a bare number; write advert_interval = "1s"
	// www.toml:18:1: unknown key "prot" in [[virtual_server]]; did you mean "protocol"?
}

func ExampleInstance_MasterDownInterval() {
	s, err := config.Load("../examples/www-telnet.toml")
	if err != nil {
		panic(err)
	}
	in := s.Instance("www")
	vs2, _ := s.Director("vs2")
	fmt.Println(s.Role(in, vs2), in.PriorityOf(vs2), in.MasterDownInterval(in.PriorityOf(vs2)))
	// Output: backup 100 3.609375s
}
