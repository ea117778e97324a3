package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// memberlist drops packets and streams that fail authentication or carry
// another label before any delegate sees them, and reports them only as
// log lines. mlLog turns its log lines into slog records and counts those
// rejections; the rejection logs are rate-limited, since a misconfigured
// peer repeats them several times a second.

type rejectKind int

const (
	rejectNone rejectKind = iota
	rejectAuth
	rejectLabel
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
	}
	return rejectNone
}

// rejectLogEvery bounds how often one kind of rejection is logged.
const rejectLogEvery = 10 * time.Second

type mlLog struct {
	log   *slog.Logger
	auth  *atomic.Uint64
	label *atomic.Uint64
	now   func() time.Time
	mu    sync.Mutex
	last  map[rejectKind]time.Time
	quiet map[rejectKind]int // suppressed since last logged
}

// Write receives one memberlist log line ("[LEVEL] memberlist: text").
func (w *mlLog) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
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
	msg = strings.TrimPrefix(msg, "memberlist: ")
	kind := classify(msg)
	switch kind {
	case rejectAuth:
		w.auth.Add(1)
	case rejectLabel:
		w.label.Add(1)
	}
	if kind == rejectNone {
		w.log.Log(context.Background(), level, msg, "layer", "memberlist")
		return len(p), nil
	}
	w.mu.Lock()
	now := w.now()
	if last, ok := w.last[kind]; ok && now.Sub(last) < rejectLogEvery {
		w.quiet[kind]++
		w.mu.Unlock()
		return len(p), nil
	}
	suppressed := w.quiet[kind]
	w.last[kind], w.quiet[kind] = now, 0
	w.mu.Unlock()
	what := "dropped a message that failed authentication (wrong or missing cluster key?)"
	if kind == rejectLabel {
		what = "dropped a message from another site (cluster label differs)"
	}
	w.log.Warn(what, "layer", "memberlist", "detail", msg, "suppressed", suppressed)
	return len(p), nil
}
