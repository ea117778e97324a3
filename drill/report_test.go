package drill

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestWriteText(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Report
		want string
	}{
		{"preflight only", Report{Instance: "www", From: "vs1", OK: true}, `drill of instance www: vs1 -> -
preflight: ok (same site file everywhere, every director present, same health and IPVS table)
preflight only: a drill could run now
`},
		{"refused by the preflight", Report{Instance: "www", From: "vs1", Preflight: []string{"director vs2 is not present on the cluster channel", "no director is backup of www: nobody would take over"},
			Failure: "preflight found 2 problem(s); fix them or use --force"}, `drill of instance www: vs1 -> -
preflight problems:
  - director vs2 is not present on the cluster channel
  - no director is backup of www: nobody would take over
drill: FAILED: preflight found 2 problem(s); fix them or use --force
`},
		{"held after the drill", Report{Instance: "www", From: "vs1", To: "vs2", Held: true, OK: true,
			Timeline: []Event{{-3.25, "vs2 master"}, {0, "vs1 resigned www with a priority-0 advert"}, {1234.56, "first answer after the step-down: http://10.99.0.101/"}},
			Probes: []ProbeReport{{Target: "http://10.99.0.101/", Sent: 120, Failed: 4, OutageMS: 41.25, FirstOKMS: 1234.56, Answered: "rs1"},
				{Target: "tcp://10.99.0.101:23", Sent: 3, Failed: 3, OutageMS: 30, FirstOKMS: -1}}}, `drill of instance www: vs1 -> vs2
preflight: ok (same site file everywhere, every director present, same health and IPVS table)
timeline (ms after the step-down; the peer's events on its clock):
       -3.2  vs2 master
       +0.0  vs1 resigned www with a priority-0 advert
    +1234.6  first answer after the step-down: http://10.99.0.101/
probe http://10.99.0.101/: 120 sent, 4 failed, longest interruption 41.2 ms, answered by rs1
probe tcp://10.99.0.101:23: 3 sent, 3 failed, longest interruption 30.0 ms, answered by -
vs1 stays backup (held at priority 1): ` + "`vigil drill --resume`" + ` gives it its priority back
drill: OK
`},
		{"handed back", Report{Instance: "www", From: "vs1", To: "vs2", OK: true, Back: &Back{TookMS: 812.4},
			Timeline: []Event{{0, "vs1 resigned www with a priority-0 advert"}, {900, "vs1 master again"}}}, `drill of instance www: vs1 -> vs2
preflight: ok (same site file everywhere, every director present, same health and IPVS table)
timeline (ms after the step-down; the peer's events on its clock):
       +0.0  vs1 resigned www with a priority-0 advert
     +900.0  vs1 master again
handed back: master again after 812 ms
drill: OK
`},
		{"failed after the takeover", Report{Instance: "www", From: "vs1", To: "vs2", Held: true,
			Timeline: []Event{{0, "vs1 resigned www with a priority-0 advert"}},
			Failure:  "probe http://v/ saw an interruption of 900 ms (limit 500ms)"}, `drill of instance www: vs1 -> vs2
preflight: ok (same site file everywhere, every director present, same health and IPVS table)
timeline (ms after the step-down; the peer's events on its clock):
       +0.0  vs1 resigned www with a priority-0 advert
vs1 stays backup (held at priority 1): ` + "`vigil drill --resume`" + ` gives it its priority back
drill: FAILED: probe http://v/ saw an interruption of 900 ms (limit 500ms)
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			tc.r.WriteText(&b)
			if b.String() != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

// TestReportJSON pins the JSON names `vigil drill --json` prints: scripts
// and the netns drill test read them.
func TestReportJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Report
		want string
	}{
		{"empty fields left out", Report{Instance: "www"},
			`{"instance":"www","ok":false,"preflight":null,"timeline":null,"probes":null}`},
		{"every field", Report{Instance: "www", From: "vs1", To: "vs2", Held: true, OK: true, Failure: "f", Preflight: []string{"p"},
			Timeline: []Event{{AtMS: 1.5, Event: "e"}},
			Probes:   []ProbeReport{{Target: "t", Sent: 3, Failed: 1, OutageMS: 10.5, FirstOKMS: 2, Answered: "rs1", LastFailed: "HTTP 503"}},
			Back:     &Back{TookMS: 7}},
			`{"instance":"www","from":"vs1","to":"vs2","held":true,"ok":true,"failure":"f","preflight":["p"],` +
				`"timeline":[{"at_ms":1.5,"event":"e"}],` +
				`"probes":[{"target":"t","sent":3,"failed":1,"outage_ms":10.5,"first_ok_after_ms":2,"answered_by":"rs1","last_error":"HTTP 503"}],` +
				`"back":{"took_ms":7}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
		})
	}
}
