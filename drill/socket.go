package drill

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-lb/vigil/director"
)

// ControlSocket is the Director behind a daemon's control socket (Path).
type ControlSocket struct {
	Path string
}

// Each request gets its own timeout, so a daemon that stops answering
// fails the drill instead of hanging it.
const (
	statusTimeout  = 5 * time.Second
	commandTimeout = 10 * time.Second
)

// Status asks the daemon for its status.
func (c ControlSocket) Status(ctx context.Context) (director.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	rep, err := director.Call(ctx, c.Path, director.Request{Op: "status"})
	if err != nil {
		return director.Status{}, err
	}
	if rep.Status == nil {
		return director.Status{}, fmt.Errorf("status reply on %s carries no status", c.Path)
	}
	return *rep.Status, nil
}

// Handover asks the daemon to resign instance and stay backup.
func (c ControlSocket) Handover(ctx context.Context, instance string) error {
	return c.command(ctx, "handover", instance)
}

// Resume asks the daemon to take its configured priority back for
// instance ("" for every instance).
func (c ControlSocket) Resume(ctx context.Context, instance string) error {
	return c.command(ctx, "resume", instance)
}

func (c ControlSocket) command(ctx context.Context, op, instance string) error {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	_, err := director.Call(ctx, c.Path, director.Request{Op: op, Instance: instance})
	return err
}
