package drill

import (
	"fmt"
	"io"
)

// Report is what `vigil drill --json` prints. Its JSON names are read by
// scripts and tests: keep them.
type Report struct {
	Instance  string        `json:"instance"`
	From      string        `json:"from,omitempty"`
	To        string        `json:"to,omitempty"`
	Held      bool          `json:"held,omitempty"` // the old master stays backup until --resume
	OK        bool          `json:"ok"`
	Failure   string        `json:"failure,omitempty"`
	Preflight []string      `json:"preflight"`
	Timeline  []Event       `json:"timeline"`
	Probes    []ProbeReport `json:"probes"`
	Back      *Back         `json:"back,omitempty"`
}

// Event is one line of the timeline.
type Event struct {
	AtMS  float64 `json:"at_ms"` // since the step-down request
	Event string  `json:"event"`
}

// Back is the hand-back of a drill run with Options.Back.
type Back struct {
	TookMS float64 `json:"took_ms"` // resume request to this director master again
}

// ProbeReport is what one probe target saw.
type ProbeReport struct {
	Target     string  `json:"target"`
	Sent       int     `json:"sent"`
	Failed     int     `json:"failed"`
	OutageMS   float64 `json:"outage_ms"`         // longest run of failures, first failure to next success
	FirstOKMS  float64 `json:"first_ok_after_ms"` // -1: no answer
	Answered   string  `json:"answered_by,omitempty"`
	LastFailed string  `json:"last_error,omitempty"`
}

// WriteText prints r for a terminal.
func (r Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "drill of instance %s: %s -> %s\n", r.Instance, r.From, dashIf(r.To))
	if len(r.Preflight) == 0 {
		fmt.Fprintln(w, "preflight: ok (same site file everywhere, every director present, same health and IPVS table)")
	} else {
		fmt.Fprintln(w, "preflight problems:")
		for _, p := range r.Preflight {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	if len(r.Timeline) > 0 {
		fmt.Fprintln(w, "timeline (ms after the step-down; the peer's events on its clock):")
		for _, e := range r.Timeline {
			fmt.Fprintf(w, "  %+9.1f  %s\n", e.AtMS, e.Event)
		}
	}
	for _, p := range r.Probes {
		fmt.Fprintf(w, "probe %s: %d sent, %d failed, longest interruption %.1f ms, answered by %s\n",
			p.Target, p.Sent, p.Failed, p.OutageMS, dashIf(p.Answered))
	}
	if r.Back != nil {
		fmt.Fprintf(w, "handed back: master again after %.0f ms\n", r.Back.TookMS)
	}
	if r.Held {
		fmt.Fprintf(w, "%s stays backup (held at priority 1): `vigil drill --resume` gives it its priority back\n", r.From)
	}
	switch {
	case r.OK && len(r.Timeline) == 0:
		fmt.Fprintln(w, "preflight only: a drill could run now")
	case r.OK:
		fmt.Fprintln(w, "drill: OK")
	default:
		fmt.Fprintf(w, "drill: FAILED: %s\n", r.Failure)
	}
}

func dashIf(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
