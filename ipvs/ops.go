package ipvs

import (
	"context"
	"fmt"
)

// opKind is one kind of write to an IPVS table.
type opKind uint8

const (
	opCreateService opKind = iota
	opUpdateService
	opDeleteService
	opCreateDest
	opUpdateDest
	opDeleteDest
)

// op is one planned write. svc is set for service creates and updates,
// dest for destination creates and updates; key always; dkey for
// destination deletes.
type op struct {
	kind opKind
	key  ServiceKey
	svc  *Service
	dest *Destination
	dkey DestKey
}

func (o *op) String() string {
	switch o.kind {
	case opCreateService:
		return "create service " + o.key.String()
	case opUpdateService:
		return "update service " + o.key.String()
	case opDeleteService:
		return "delete service " + o.key.String()
	case opCreateDest:
		return fmt.Sprintf("create destination %s of %s", o.dest.Key(), o.key)
	case opUpdateDest:
		return fmt.Sprintf("update destination %s of %s", o.dest.Key(), o.key)
	case opDeleteDest:
		return fmt.Sprintf("delete destination %s of %s", o.dkey, o.key)
	}
	return "unknown operation"
}

// batcher is implemented by backends that can send many writes at once
// (Kernel: many netlink messages per sendmsg). The kernel runs them in
// order; the result has one error (or nil) per op.
type batcher interface {
	applyBatch(ctx context.Context, ops []op) []error
}

// execOps performs ops in order, batched when the backend can.
func execOps(ctx context.Context, b Backend, ops []op) []error {
	if len(ops) == 0 {
		return nil
	}
	if bb, ok := b.(batcher); ok {
		return bb.applyBatch(ctx, ops)
	}
	errs := make([]error, len(ops))
	for i := range ops {
		errs[i] = execOne(ctx, b, &ops[i])
	}
	return errs
}

func execOne(ctx context.Context, b Backend, o *op) error {
	switch o.kind {
	case opCreateService:
		return b.CreateService(ctx, o.svc)
	case opUpdateService:
		return b.UpdateService(ctx, o.svc)
	case opDeleteService:
		return b.DeleteService(ctx, o.key)
	case opCreateDest:
		return b.CreateDestination(ctx, o.key, o.dest)
	case opUpdateDest:
		return b.UpdateDestination(ctx, o.key, o.dest)
	case opDeleteDest:
		return b.DeleteDestination(ctx, o.key, o.dkey)
	}
	return fmt.Errorf("unknown operation %d", o.kind)
}
