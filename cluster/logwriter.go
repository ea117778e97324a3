package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// memberlist drops packets and streams that fail authentication or carry
// another label before any delegate sees them, and reports them only as
// log lines. mlLog turns its log lines into slog records and counts those
// rejections. Its warnings and errors are rate-limited per kind: a
// misconfigured peer repeats a rejection several times a second, and
// anyone who can reach the cluster port can make memberlist log one line
// per junk packet.

// rejectKind is what a memberlist warning is about: one of the
// rejections below, or for any other warning its text with the variable
// parts cut off (see lineKind). Each kind has a log window of its own.
type rejectKind string

const (
	rejectNone  rejectKind = ""
	rejectAuth  rejectKind = "auth"
	rejectLabel rejectKind = "label"
	rejectShort rejectKind = "short" // an empty UDP datagram
	rejectOther rejectKind = "other" // once maxLineKinds are tracked
)

// classify recognises memberlist v0.7.0's rejection messages.
func classify(msg string) rejectKind {
	switch {
	case strings.Contains(msg, "Decrypt packet failed"),
		strings.Contains(msg, "no installed keys could decrypt"),
		strings.Contains(msg, "remote state is not encrypted"),
		strings.Contains(msg, "encryption is not configured"):
		return rejectAuth
	case strings.Contains(msg, "unacceptable label"):
		return rejectLabel
	case strings.Contains(msg, "UDP packet too short"):
		return rejectShort
	}
	return rejectNone
}

const (
	// rejectLogEvery bounds how often one kind of warning is logged.
	rejectLogEvery = 10 * time.Second
	// maxLineKinds bounds the kinds tracked, so varied junk (node names
	// chosen by a stranger) cannot grow the map without end.
	maxLineKinds = 64
	// maxKindLen bounds a kind's text.
	maxKindLen = 80
)

type mlLog struct {
	log   *slog.Logger
	auth  *atomic.Uint64
	label *atomic.Uint64
	clock clock.Clock
	mu    sync.Mutex
	last  map[rejectKind]time.Time
	quiet map[rejectKind]int // suppressed since last logged
}

// Write receives one memberlist log line ("[LEVEL] memberlist: text").
func (w *mlLog) Write(p []byte) (int, error) {
	level, msg := parseMLLine(string(p))
	kind := classify(msg)
	switch kind {
	case rejectAuth:
		w.auth.Add(1)
	case rejectLabel:
		w.label.Add(1)
	}
	if kind == rejectNone && level < slog.LevelWarn {
		w.log.Log(context.Background(), level, msg, "layer", "memberlist")
		return len(p), nil
	}
	key := kind
	if key == rejectNone {
		key = lineKind(msg)
	}
	suppressed, ok := w.allow(key)
	if !ok {
		return len(p), nil
	}
	w.emit(kind, level, msg, suppressed)
	return len(p), nil
}

// parseMLLine splits a memberlist line into its level and text.
func parseMLLine(line string) (slog.Level, string) {
	line = strings.TrimRight(line, "\r\n")
	level, msg := slog.LevelInfo, line
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			switch line[1:i] {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			msg = strings.TrimSpace(line[i+1:])
		}
	}
	return level, strings.TrimPrefix(msg, "memberlist: ")
}

// lineKind is msg without its variable parts: memberlist puts addresses,
// names and error details after a colon, quote or parenthesis, or in a
// trailing from=ADDR, and numbers anywhere.
func lineKind(msg string) rejectKind {
	if i := strings.Index(msg, " from="); i >= 0 {
		msg = msg[:i]
	}
	if i := strings.IndexAny(msg, ":'\"(["); i >= 0 {
		msg = msg[:i]
	}
	msg = strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '#'
		}
		return r
	}, strings.TrimSpace(msg))
	if len(msg) > maxKindLen {
		msg = msg[:maxKindLen]
	}
	return rejectKind("line:" + msg)
}

// allow reports whether a line of kind may be logged now, and how many
// were held back since the last one logged.
func (w *mlLog) allow(kind rejectKind) (suppressed int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, known := w.last[kind]; !known && len(w.last) >= maxLineKinds {
		kind = rejectOther
	}
	now := w.clock.Now()
	if last, seen := w.last[kind]; seen && now.Sub(last) < rejectLogEvery {
		w.quiet[kind]++
		return 0, false
	}
	suppressed = w.quiet[kind]
	w.last[kind], w.quiet[kind] = now, 0
	return suppressed, true
}

// emit logs one line that passed the rate limit.
func (w *mlLog) emit(kind rejectKind, level slog.Level, msg string, suppressed int) {
	switch kind {
	case rejectAuth:
		w.log.Warn("dropped a message that failed authentication (wrong or missing cluster key?)",
			"layer", "memberlist", "detail", msg, "suppressed", suppressed)
	case rejectLabel:
		w.log.Warn("dropped a message from another site (cluster label differs)",
			"layer", "memberlist", "detail", msg, "suppressed", suppressed)
	case rejectShort:
		// Not our error but a stranger's packet; and memberlist prints
		// its buffer's size, not the packet's, so its text is not kept.
		w.log.Warn("dropped malformed cluster packet (too short)",
			"layer", "memberlist", "from", fromAddr(msg), "suppressed", suppressed)
	default:
		attrs := []any{"layer", "memberlist"}
		if suppressed > 0 {
			attrs = append(attrs, "suppressed", suppressed)
		}
		w.log.Log(context.Background(), level, msg, attrs...)
	}
}

// fromAddr is the address in memberlist's "from=ADDR" suffix, or "".
func fromAddr(msg string) string {
	i := strings.Index(msg, "from=")
	if i < 0 {
		return ""
	}
	addr, _, _ := strings.Cut(msg[i+len("from="):], " ")
	return addr
}
