package ipvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
)

// Report says what one pass did.
type Report struct {
	Creates int // services and destinations created
	Updates int // services and destinations updated in place
	Deletes int // services and destinations deleted
	Errors  int // writes or reads that failed
	Reads   int // dumps made (1 service dump + 1 per owned service read)
}

// Writes is the number of successful changes made.
func (r Report) Writes() int { return r.Creates + r.Updates + r.Deletes }

func (r Report) String() string {
	return fmt.Sprintf("%d created, %d updated, %d deleted, %d errors, %d reads", r.Creates, r.Updates, r.Deletes, r.Errors, r.Reads)
}

// maxErrors bounds the errors joined into a pass's error.
const maxErrors = 10

// Reconciler makes a Backend hold a desired Table. It owns the services
// of the latest desired table and those of earlier tables it applied (so
// a virtual server removed from the site is deleted); it never reads the
// destinations of, or writes to, any other service.
type Reconciler struct {
	b   Backend
	log *slog.Logger

	mu    sync.Mutex
	owned map[ServiceKey]bool
}

// NewReconciler returns a reconciler over b. log may be nil.
func NewReconciler(b Backend, log *slog.Logger) *Reconciler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{b: b, log: log, owned: map[ServiceKey]bool{}}
}

type passErrs struct {
	r    *Report
	errs []error
}

func (p *passErrs) add(err error) {
	p.r.Errors++
	if len(p.errs) < maxErrors {
		p.errs = append(p.errs, err)
	}
}

func (p *passErrs) err() error {
	if p.r.Errors > len(p.errs) {
		p.errs = append(p.errs, fmt.Errorf("and %d more errors", p.r.Errors-len(p.errs)))
	}
	return errors.Join(p.errs...)
}

// Apply makes one pass: it dumps the services once, reads the destinations
// of the declared services that exist, plans only the differences and
// writes them in order: services first (create or update in place), then
// their destinations (create and update before delete, so a service never
// runs empty during a swap), then deletes the services it owned that are
// no longer declared. The Kernel backend sends the writes in batches. A
// failed write does not stop the others; all errors are returned joined
// and the next pass retries. An invalid desired table is rejected before
// anything is read or written.
func (r *Reconciler) Apply(ctx context.Context, desired Table) (Report, error) {
	if err := desired.Validate(); err != nil {
		return Report{}, fmt.Errorf("invalid IPVS table: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep Report
	pe := &passErrs{r: &rep}

	current, err := r.b.Services(ctx)
	rep.Reads++
	if err != nil {
		rep.Errors++
		return rep, fmt.Errorf("list IPVS services: %w", err)
	}
	have := make(map[ServiceKey]*Service, len(current))
	for i := range current {
		have[current[i].Key] = &current[i]
	}
	var ops []op
	declared := make(map[ServiceKey]bool, len(desired.Services))
	for i := range desired.Services {
		want := &desired.Services[i]
		declared[want.Key] = true
		r.owned[want.Key] = true
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		cur, ok := have[want.Key]
		if !ok {
			ops = append(ops, op{kind: opCreateService, key: want.Key, svc: want})
			ops = planDests(ops, want, nil)
			continue
		}
		if !sameSettings(cur, want) {
			ops = append(ops, op{kind: opUpdateService, key: want.Key, svc: want})
		}
		dests, err := r.b.Destinations(ctx, want.Key)
		rep.Reads++
		if err != nil {
			pe.add(fmt.Errorf("list destinations of %s: %w", want.Key, err))
			continue
		}
		ops = planDests(ops, want, dests)
	}
	// Services owned before but no longer declared: delete if present.
	for k := range r.owned {
		if declared[k] {
			continue
		}
		if _, ok := have[k]; ok {
			ops = append(ops, op{kind: opDeleteService, key: k})
		} else {
			delete(r.owned, k)
		}
	}
	errs := execOps(ctx, r.b, ops)
	for i := range ops {
		o := &ops[i]
		if errs[i] != nil {
			pe.add(fmt.Errorf("%s: %w", o, errs[i]))
			continue
		}
		switch o.kind {
		case opCreateService:
			rep.Creates++
			r.log.Info("ipvs service created", "service", o.key.String(), "scheduler", o.svc.Scheduler)
		case opUpdateService:
			rep.Updates++
			r.log.Info("ipvs service updated", "service", o.key.String(), "scheduler", o.svc.Scheduler)
		case opDeleteService:
			rep.Deletes++
			delete(r.owned, o.key)
			r.log.Info("ipvs service deleted", "service", o.key.String())
		case opCreateDest:
			rep.Creates++
		case opUpdateDest:
			rep.Updates++
			r.log.Debug("ipvs destination updated", "service", o.key.String(), "destination", o.dest.Key().String(), "weight", o.dest.Weight)
		case opDeleteDest:
			rep.Deletes++
		}
	}
	if rep.Writes() > 0 || rep.Errors > 0 {
		r.log.Info("ipvs pass", "creates", rep.Creates, "updates", rep.Updates, "deletes", rep.Deletes, "errors", rep.Errors)
	}
	return rep, pe.err()
}

// planDests appends the destination writes that turn have into want.
func planDests(ops []op, want *Service, have []Destination) []op {
	cur := make(map[DestKey]*Destination, len(have))
	for i := range have {
		cur[have[i].Key()] = &have[i]
	}
	wanted := make(map[DestKey]bool, len(want.Destinations))
	for i := range want.Destinations {
		d := &want.Destinations[i]
		wanted[d.Key()] = true
		c, ok := cur[d.Key()]
		switch {
		case !ok:
			ops = append(ops, op{kind: opCreateDest, key: want.Key, dest: d})
		case !sameDest(c, d):
			ops = append(ops, op{kind: opUpdateDest, key: want.Key, dest: d})
		}
	}
	for i := range have {
		if k := have[i].Key(); !wanted[k] {
			ops = append(ops, op{kind: opDeleteDest, key: want.Key, dkey: k})
		}
	}
	return ops
}

// RemoveAll deletes every service this reconciler owns (the last desired
// table and earlier ones), leaving all others alone: shutdown with
// ipvs_on_stop = "remove". One service dump, then one delete per owned
// service present.
func (r *Reconciler) RemoveAll(ctx context.Context) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep Report
	pe := &passErrs{r: &rep}
	current, err := r.b.Services(ctx)
	rep.Reads++
	if err != nil {
		rep.Errors++
		return rep, fmt.Errorf("list IPVS services: %w", err)
	}
	var ops []op
	for i := range current {
		if k := current[i].Key; r.owned[k] {
			ops = append(ops, op{kind: opDeleteService, key: k})
		}
	}
	errs := execOps(ctx, r.b, ops)
	for i := range ops {
		if errs[i] != nil {
			pe.add(fmt.Errorf("%s: %w", &ops[i], errs[i]))
			continue
		}
		rep.Deletes++
	}
	if rep.Errors == 0 {
		clear(r.owned)
	}
	return rep, pe.err()
}

// Adopt marks services as owned without declaring them: typically the
// services a previous run of the daemon declared (the caller persists
// Owned), so that a virtual server removed while the daemon was down is
// deleted by the next pass instead of lingering as a foreign service.
func (r *Reconciler) Adopt(keys ...ServiceKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		r.owned[k] = true
	}
}

// Owned lists the keys of the services this reconciler owns.
func (r *Reconciler) Owned() []ServiceKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.AppendSeq(make([]ServiceKey, 0, len(r.owned)), maps.Keys(r.owned))
}

// Snapshot reads the whole table (every service, with destinations,
// weights, connection counts and counters) for status displays. It
// writes nothing. With onlyOwned, services of others are left out.
func (r *Reconciler) Snapshot(ctx context.Context, onlyOwned bool) (Table, error) {
	r.mu.Lock()
	owned := make(map[ServiceKey]bool, len(r.owned))
	for k := range r.owned {
		owned[k] = true
	}
	r.mu.Unlock()
	return ReadTable(ctx, r.b, func(k ServiceKey) bool { return !onlyOwned || owned[k] })
}

// ReadTable reads every service for which keep returns true (nil keeps
// all) with its destinations, sorted.
func ReadTable(ctx context.Context, b Backend, keep func(ServiceKey) bool) (Table, error) {
	svcs, err := b.Services(ctx)
	if err != nil {
		return Table{}, fmt.Errorf("list IPVS services: %w", err)
	}
	var t Table
	for _, s := range svcs {
		if keep != nil && !keep(s.Key) {
			continue
		}
		d, err := b.Destinations(ctx, s.Key)
		if err != nil {
			return Table{}, fmt.Errorf("list destinations of %s: %w", s.Key, err)
		}
		s.Destinations = d
		t.Services = append(t.Services, s)
	}
	t.Sort()
	return t, nil
}
