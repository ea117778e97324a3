package healthcheck

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind names a check type.
type Kind string

// Check kinds.
const (
	KindTCP   Kind = "tcp"   // connect (half-open), nothing more
	KindHTTP  Kind = "http"  // one HTTP/1.0 request, status and optional body checks
	KindHTTPS Kind = "https" // the same over TLS (SNI, verification on or off)
	KindExec  Kind = "exec"  // a command; exit 0 is up
)

// Defaults, HAProxy's where HAProxy has one.
const (
	DefaultInterval = 2 * time.Second
	DefaultRise     = 2
	DefaultFall     = 3
	DefaultSpread   = 0.05 // fraction of an interval (HAProxy spread-checks 5)
	// MaxBody is how much of a response body the HTTP check reads for its
	// body checks; a larger body fails an MD5 check.
	MaxBody = 1 << 20
)

// Spec describes one check of one real server. The zero values of the
// optional fields mean the documented defaults; Key identifies equal specs.
type Spec struct {
	Kind Kind
	// Target is the real server (address and service port).
	Target netip.AddrPort
	// CheckPort, when not zero, is the port to check instead of Target's
	// (keepalived's connect_port). Exec checks still get Target's port.
	CheckPort uint16
	// Name is the real server's name, passed to exec checks.
	Name string

	Interval     time.Duration // between checks while up and settled; default 2s
	FastInterval time.Duration // while changing state; default Interval
	DownInterval time.Duration // while down and settled; default Interval
	Timeout      time.Duration // per check; default Interval
	Warmup       time.Duration // no check before this long after the check is added

	Rise, Fall int // consecutive passes to go up / failures to go down; default 2, 3
	// InitialUp starts the server up (it then needs Fall failures to go
	// down); otherwise it is down until Rise checks pass.
	InitialUp bool

	HTTP *HTTPSpec // for http and https; nil means the defaults
	Exec *ExecSpec // for exec; required
}

// HTTPSpec is what an http or https check sends and expects.
type HTTPSpec struct {
	Method string // GET (default) or HEAD
	Path   string // default "/"
	// Host is the Host header; default the target address (like curl).
	Host string
	// Expect lists accepted status codes; default 200-399 (redirects are
	// not followed, so a 3xx is an answer like any other).
	Expect []StatusRange
	// Optional body checks, all of which must pass.
	BodyContains string // substring
	BodyRegexp   string // regular expression (Go syntax)
	BodyMD5      string // hex MD5 digest of the whole body (keepalived's digest)

	// https only.
	ServerName string // SNI; default Host when it is a name
	Verify     bool   // verify the certificate chain and name (off by default, like keepalived)
	CAFile     string // PEM roots for Verify; default the system roots
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Min, Max int }

// ExecSpec is the command of an exec check. It runs with the real
// server's address, port and name in VIGIL_RS_ADDRESS, VIGIL_RS_PORT and
// VIGIL_RS_NAME.
type ExecSpec struct {
	Command []string // argv; use {"/bin/sh", "-c", script} for a shell line
	// Dynamic maps exit codes like keepalived's misc_dynamic: 0 up with the
	// weight unchanged, 1 down, 2..255 up with weight code-2.
	Dynamic bool
}

// WithDefaults returns s with every unset optional field at its default.
func (s Spec) WithDefaults() Spec {
	if s.Interval <= 0 {
		s.Interval = DefaultInterval
	}
	if s.FastInterval <= 0 {
		s.FastInterval = s.Interval
	}
	if s.DownInterval <= 0 {
		s.DownInterval = s.Interval
	}
	if s.Timeout <= 0 {
		s.Timeout = s.Interval
	}
	if s.Rise <= 0 {
		s.Rise = DefaultRise
	}
	if s.Fall <= 0 {
		s.Fall = DefaultFall
	}
	if s.Kind == KindHTTP || s.Kind == KindHTTPS {
		var h HTTPSpec
		if s.HTTP != nil {
			h = *s.HTTP
		}
		if h.Method == "" {
			h.Method = "GET"
		}
		h.Method = strings.ToUpper(h.Method)
		if h.Path == "" {
			h.Path = "/"
		}
		if len(h.Expect) == 0 {
			h.Expect = []StatusRange{{200, 399}}
		} else {
			h.Expect = slices.Clone(h.Expect)
			for i, r := range h.Expect {
				if r.Max == 0 {
					h.Expect[i].Max = r.Min
				}
			}
			slices.SortFunc(h.Expect, func(a, b StatusRange) int {
				if a.Min != b.Min {
					return a.Min - b.Min
				}
				return a.Max - b.Max
			})
			h.Expect = slices.Compact(h.Expect)
		}
		h.BodyMD5 = strings.ToLower(h.BodyMD5)
		s.HTTP = &h
	}
	return s
}

// checkAddr is the address the check connects to.
func (s Spec) checkAddr() netip.AddrPort {
	if s.CheckPort != 0 {
		return netip.AddrPortFrom(s.Target.Addr(), s.CheckPort)
	}
	return s.Target
}

// Validate reports the first problem of s (after defaults), naming the
// field, or nil.
func (s Spec) Validate() error {
	where := fmt.Sprintf("%s check of %s", s.Kind, s.Target)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", s.Interval}, {"fast interval", s.FastInterval}, {"down interval", s.DownInterval}, {"timeout", s.Timeout}, {"warm-up", s.Warmup}} {
		if d.v < 0 {
			return fmt.Errorf("%s: negative %s %v", where, d.name, d.v)
		}
	}
	if s.Rise < 0 || s.Fall < 0 {
		return fmt.Errorf("%s: negative rise %d / fall %d", where, s.Rise, s.Fall)
	}
	s = s.WithDefaults()
	if !s.Target.IsValid() || s.Target.Addr().IsUnspecified() {
		return fmt.Errorf("%s: target must be an address and port", where)
	}
	if s.Kind != KindExec && s.checkAddr().Port() == 0 {
		return fmt.Errorf("%s: port 0 (set the target port or the check port)", where)
	}
	if s.Rise > 1000 || s.Fall > 1000 {
		return fmt.Errorf("%s: rise %d / fall %d: at most 1000", where, s.Rise, s.Fall)
	}
	switch s.Kind {
	case KindTCP:
	case KindHTTP, KindHTTPS:
		h := s.HTTP
		if h.Method != "GET" && h.Method != "HEAD" {
			return fmt.Errorf("%s: method %q: want GET or HEAD", where, h.Method)
		}
		if !strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \r\n") {
			return fmt.Errorf("%s: path %q: want an absolute path without spaces", where, h.Path)
		}
		if strings.ContainsAny(h.Host, " \r\n") {
			return fmt.Errorf("%s: host %q contains a space or line break", where, h.Host)
		}
		for _, r := range h.Expect {
			if r.Min < 100 || r.Max > 599 || r.Min > r.Max {
				return fmt.Errorf("%s: status range %d-%d: want 100 <= min <= max <= 599", where, r.Min, r.Max)
			}
		}
		if h.BodyRegexp != "" {
			if _, err := regexp.Compile(h.BodyRegexp); err != nil {
				return fmt.Errorf("%s: body regexp: %w", where, err)
			}
		}
		if h.BodyMD5 != "" {
			if b, err := hex.DecodeString(h.BodyMD5); err != nil || len(b) != 16 {
				return fmt.Errorf("%s: body MD5 %q: want 32 hex digits", where, h.BodyMD5)
			}
		}
		if h.Method == "HEAD" && (h.BodyContains != "" || h.BodyRegexp != "" || h.BodyMD5 != "") {
			return fmt.Errorf("%s: body checks need GET, not HEAD", where)
		}
		if s.Kind == KindHTTP && (h.Verify || h.CAFile != "" || h.ServerName != "") {
			return fmt.Errorf("%s: TLS options (verify, CA file, server name) need kind https", where)
		}
	case KindExec:
		if s.Exec == nil || len(s.Exec.Command) == 0 || s.Exec.Command[0] == "" {
			return fmt.Errorf("%s: exec check without a command", where)
		}
	case "":
		return fmt.Errorf("check of %s: no kind (want tcp, http, https or exec)", s.Target)
	default:
		return fmt.Errorf("check of %s: unknown kind %q (want tcp, http, https or exec)", s.Target, s.Kind)
	}
	return nil
}

// Key is a canonical text of everything that makes the check behave
// differently, after defaults. Specs with equal keys share one checker,
// however many virtual servers name them.
func (s Spec) Key() string {
	s = s.WithDefaults()
	var b strings.Builder
	b.Grow(96)
	b.WriteString(string(s.Kind))
	b.WriteByte(' ')
	b.WriteString(s.checkAddr().String())
	if s.Kind == KindExec {
		// The command sees the service port and the name.
		b.WriteString(" rs=")
		b.WriteString(s.Target.String())
		b.WriteString(" name=")
		b.WriteString(strconv.Quote(s.Name))
	}
	fmt.Fprintf(&b, " i=%v f=%v d=%v t=%v w=%v r=%d/%d up=%t",
		s.Interval, s.FastInterval, s.DownInterval, s.Timeout, s.Warmup, s.Rise, s.Fall, s.InitialUp)
	if h := s.HTTP; h != nil {
		fmt.Fprintf(&b, " %s %q host=%q expect=", h.Method, h.Path, h.Host)
		for i, r := range h.Expect {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%d-%d", r.Min, r.Max)
		}
		if h.BodyContains != "" {
			fmt.Fprintf(&b, " contains=%q", h.BodyContains)
		}
		if h.BodyRegexp != "" {
			fmt.Fprintf(&b, " regexp=%q", h.BodyRegexp)
		}
		if h.BodyMD5 != "" {
			fmt.Fprintf(&b, " md5=%s", h.BodyMD5)
		}
		if s.Kind == KindHTTPS {
			fmt.Fprintf(&b, " sni=%q verify=%t ca=%q", h.ServerName, h.Verify, h.CAFile)
		}
	}
	if e := s.Exec; e != nil && s.Kind == KindExec {
		b.WriteString(" cmd=")
		for i, a := range e.Command {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.Quote(a))
		}
		fmt.Fprintf(&b, " dynamic=%t", e.Dynamic)
	}
	return b.String()
}
