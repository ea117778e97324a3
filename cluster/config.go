package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config is the cluster channel of one director.
type Config struct {
	// Site is the site name; the memberlist label is derived from it so
	// that the directors of two sites never merge.
	Site string
	// NodeName is this director's name, unique within the site.
	NodeName string
	// BindAddr is the address to listen on (the director's address).
	BindAddr netip.Addr
	// AdvertiseAddr is the address the others reach us at; zero means
	// BindAddr (or memberlist's pick when BindAddr is unspecified).
	AdvertiseAddr netip.Addr
	// Port is the UDP and TCP port ([cluster] port). 0 picks a free port
	// (tests; see LocalAddr). With a custom Transport, the transport's port.
	Port int
	// Peers are the other directors' addresses and ports. Our own address,
	// if listed, is ignored, so every director may be given the same list.
	Peers []netip.AddrPort

	// KeyFile is the AES key file (see LoadKey). Required unless Insecure.
	KeyFile string
	// ExtraKeyFiles are further keys accepted for incoming messages but
	// never used to send, for rotating the key without a split: add the
	// new key here on every director, then make it the KeyFile (the old
	// one extra) everywhere, then drop the old one.
	ExtraKeyFiles []string
	// Insecure runs the channel unencrypted and unauthenticated, with a
	// warning at every start. It may not be combined with KeyFile.
	Insecure bool

	// Timings of failure detection; zero fields take DefaultTimings.
	Timings Timings
	// DefaultAdvertInterval stands for the advert interval of instances
	// that publish none, in the dual-master threshold; 0 means 1s.
	DefaultAdvertInterval time.Duration

	// OnEvent, when set, receives every Event in order, from one goroutine
	// owned by the channel. It should return quickly: events queue behind
	// it (and are dropped, counted, beyond 1024).
	OnEvent func(Event)
	// Logger receives the channel's and memberlist's logs; nil means
	// slog.Default().
	Logger *slog.Logger
	// Transport replaces memberlist's UDP+TCP transport (tests: a wrapper
	// that drops packets to make a partition).
	Transport memberlist.Transport
	// InNamespace, when set, runs f on a thread inside the network
	// namespace the channel belongs to (netlab's Host.Do fits). The
	// channel creates its sockets and makes every TCP dial through it:
	// memberlist dials at send time on whatever thread runs the dial, so
	// several directors in one process (tests) would otherwise dial from
	// the wrong namespace. A daemon in its own namespace leaves it nil.
	// Not with Transport.
	InNamespace func(f func() error) error
}

// Timings tune memberlist's failure detection. For a pair, a crash is
// detected after about ProbeInterval + ProbeTimeout + SuspicionMult *
// ProbeInterval (memberlist's suspicion timeout is SuspicionMult *
// max(1, log10(n)) * ProbeInterval and needs no confirmations with two or
// three members).
type Timings struct {
	ProbeInterval    time.Duration
	ProbeTimeout     time.Duration
	SuspicionMult    int
	GossipInterval   time.Duration
	PushPullInterval time.Duration // full state exchange (anti-entropy)
	TCPTimeout       time.Duration // dial and push/pull I/O
	RejoinInterval   time.Duration // re-join missing peers this often
}

// DefaultTimings are tuned for a pair of directors on one LAN: a crash
// or a partition is detected in about 3.5 s, a graceful Leave in about
// 1 s (BenchmarkFailureDetection). The election never waits for this
// detection (it runs on VRRP adverts, or on adverts carried by the
// channel), so the timings trade detection speed for an idle daemon: at
// 100 ms adverts, probing every 500 ms and gossiping every 250 ms made an
// idle director cost 0.46% of a core; these timings, 0.31%.
func DefaultTimings() Timings {
	return Timings{
		ProbeInterval:    time.Second,
		ProbeTimeout:     500 * time.Millisecond,
		SuspicionMult:    2,
		GossipInterval:   500 * time.Millisecond,
		PushPullInterval: 15 * time.Second,
		TCPTimeout:       2 * time.Second,
		RejoinInterval:   5 * time.Second,
	}
}

func (t Timings) withDefaults() Timings {
	d := DefaultTimings()
	if t.ProbeInterval <= 0 {
		t.ProbeInterval = d.ProbeInterval
	}
	if t.ProbeTimeout <= 0 {
		t.ProbeTimeout = d.ProbeTimeout
	}
	if t.SuspicionMult <= 0 {
		t.SuspicionMult = d.SuspicionMult
	}
	if t.GossipInterval <= 0 {
		t.GossipInterval = d.GossipInterval
	}
	if t.PushPullInterval <= 0 {
		t.PushPullInterval = d.PushPullInterval
	}
	if t.TCPTimeout <= 0 {
		t.TCPTimeout = d.TCPTimeout
	}
	if t.RejoinInterval <= 0 {
		t.RejoinInterval = d.RejoinInterval
	}
	return t
}

// Label returns the memberlist cluster label of a site. Memberlist
// authenticates it with the key (it is GCM associated data) and drops
// packets whose label differs.
func Label(site string) string {
	const prefix = "vigil/"
	if len(prefix)+len(site) <= memberlist.LabelMaxSize {
		return prefix + site
	}
	sum := sha256.Sum256([]byte(site))
	return prefix + "sha256:" + hex.EncodeToString(sum[:])
}

// validate checks cfg and returns the keys to use, primary first (none
// when insecure).
func (cfg *Config) validate() ([][]byte, error) {
	var errs []error
	if cfg.Site == "" {
		errs = append(errs, errors.New("site name is empty"))
	}
	if n := len(cfg.NodeName); n == 0 || n > 255 {
		errs = append(errs, fmt.Errorf("node name must be 1..255 bytes, got %q", cfg.NodeName))
	}
	if !cfg.BindAddr.IsValid() {
		errs = append(errs, errors.New("bind address is not set"))
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", cfg.Port))
	}
	for _, p := range cfg.Peers {
		if !p.IsValid() || p.Port() == 0 {
			errs = append(errs, fmt.Errorf("peer %s: want address:port", p))
		}
	}
	if cfg.Transport != nil && cfg.InNamespace != nil {
		errs = append(errs, errors.New("Transport and InNamespace are exclusive"))
	}
	var keys [][]byte
	switch {
	case cfg.KeyFile != "" && cfg.Insecure:
		errs = append(errs, errors.New("both a key file and insecure are set; remove one"))
	case cfg.KeyFile == "" && !cfg.Insecure:
		errs = append(errs, errors.New("no cluster key file; set one, or insecure = true to run the channel unencrypted"))
	case cfg.KeyFile != "":
		for _, f := range append([]string{cfg.KeyFile}, cfg.ExtraKeyFiles...) {
			k, err := LoadKey(f)
			if err != nil {
				errs = append(errs, err)
			}
			keys = append(keys, k)
		}
	}
	if cfg.Insecure && len(cfg.ExtraKeyFiles) > 0 {
		errs = append(errs, errors.New("extra key files given with insecure"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cluster channel config: %w", err)
	}
	return keys, nil
}
