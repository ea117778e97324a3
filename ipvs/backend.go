package ipvs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// Backend reads and writes an IPVS table. Implementations: Kernel (real
// IPVS) and Memory (unit tests). Errors for a missing or duplicate object
// wrap syscall.ESRCH/ENOENT or EEXIST, as the kernel's do.
type Backend interface {
	// Services lists every service in the table (one dump), without
	// destinations, with stats.
	Services(ctx context.Context) ([]Service, error)
	// Destinations lists the destinations of one service (one dump).
	Destinations(ctx context.Context, k ServiceKey) ([]Destination, error)
	CreateService(ctx context.Context, s *Service) error
	UpdateService(ctx context.Context, s *Service) error
	DeleteService(ctx context.Context, k ServiceKey) error
	CreateDestination(ctx context.Context, k ServiceKey, d *Destination) error
	UpdateDestination(ctx context.Context, k ServiceKey, d *Destination) error
	DeleteDestination(ctx context.Context, k ServiceKey, d DestKey) error
}

// Memory is an in-memory Backend for unit tests. It behaves like the kernel
// for the calls above (EEXIST, ESRCH, ENOENT) and counts reads and writes.
type Memory struct {
	mu       sync.Mutex
	services map[ServiceKey]*Service
	order    []ServiceKey // creation order, like the kernel's hash walk is not; fine for tests

	// Reads and Writes count calls (for "zero writes" assertions).
	Reads, Writes int
	// FailWrite, if set, is called before each write; a non-nil error is
	// returned instead of performing it.
	FailWrite func(op string, k ServiceKey) error
}

// NewMemory returns an empty in-memory table.
func NewMemory() *Memory { return &Memory{services: map[ServiceKey]*Service{}} }

func (m *Memory) Services(ctx context.Context) ([]Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Reads++
	out := make([]Service, 0, len(m.order))
	for _, k := range m.order {
		s := *m.services[k]
		s.Destinations = nil
		out = append(out, s)
	}
	return out, nil
}

func (m *Memory) Destinations(ctx context.Context, k ServiceKey) ([]Destination, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Reads++
	s, ok := m.services[k]
	if !ok {
		return nil, fmt.Errorf("list destinations of %s: %w", k, syscall.ESRCH)
	}
	return append([]Destination(nil), s.Destinations...), nil
}

func (m *Memory) write(op string, k ServiceKey) error {
	m.Writes++
	if m.FailWrite != nil {
		return m.FailWrite(op, k)
	}
	return nil
}

// stored is what the kernel keeps of a service's settings.
func stored(s *Service) Service {
	return Service{Key: s.Key, Scheduler: s.Scheduler, Flags: s.normFlags() | FlagHashed,
		Timeout: s.Timeout, Netmask: s.netmaskPrefix()}
}

func (m *Memory) CreateService(ctx context.Context, s *Service) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.write("create-service", s.Key); err != nil {
		return err
	}
	if _, ok := m.services[s.Key]; ok {
		return fmt.Errorf("create %s: %w", s.Key, syscall.EEXIST)
	}
	n := stored(s)
	m.services[s.Key] = &n
	m.order = append(m.order, s.Key)
	return nil
}

func (m *Memory) UpdateService(ctx context.Context, s *Service) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.write("update-service", s.Key); err != nil {
		return err
	}
	old, ok := m.services[s.Key]
	if !ok {
		return fmt.Errorf("update %s: %w", s.Key, syscall.ESRCH)
	}
	n := stored(s)
	n.Destinations = old.Destinations
	*old = n
	return nil
}

func (m *Memory) DeleteService(ctx context.Context, k ServiceKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.write("delete-service", k); err != nil {
		return err
	}
	if _, ok := m.services[k]; !ok {
		return fmt.Errorf("delete %s: %w", k, syscall.ESRCH)
	}
	delete(m.services, k)
	for i, o := range m.order {
		if o == k {
			m.order = append(m.order[:i], m.order[i+1:]...)
			break
		}
	}
	return nil
}

func (m *Memory) findDest(k ServiceKey, d DestKey) (*Service, int, error) {
	s, ok := m.services[k]
	if !ok {
		return nil, -1, fmt.Errorf("service %s: %w", k, syscall.ESRCH)
	}
	for i := range s.Destinations {
		if s.Destinations[i].Key() == d {
			return s, i, nil
		}
	}
	return s, -1, nil
}

func (m *Memory) CreateDestination(ctx context.Context, k ServiceKey, d *Destination) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.write("create-destination", k); err != nil {
		return err
	}
	s, i, err := m.findDest(k, d.Key())
	if err != nil {
		return err
	}
	if i >= 0 {
		return fmt.Errorf("create destination %s of %s: %w", d.Key(), k, syscall.EEXIST)
	}
	if familyOf(d.Addr) != k.Family {
		return fmt.Errorf("create destination %s of %s: %w", d.Key(), k, syscall.EINVAL)
	}
	n := *d
	n.ActiveConns, n.InactiveConns, n.Stats = 0, 0, Stats{}
	s.Destinations = append(s.Destinations, n)
	return nil
}

func (m *Memory) UpdateDestination(ctx context.Context, k ServiceKey, d *Destination) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.write("update-destination", k); err != nil {
		return err
	}
	s, i, err := m.findDest(k, d.Key())
	if err != nil {
		return err
	}
	if i < 0 {
		return fmt.Errorf("update destination %s of %s: %w", d.Key(), k, syscall.ENOENT)
	}
	cur := &s.Destinations[i]
	cur.Weight, cur.Forwarding, cur.UpperThreshold, cur.LowerThreshold = d.Weight, d.Forwarding, d.UpperThreshold, d.LowerThreshold
	return nil
}

func (m *Memory) DeleteDestination(ctx context.Context, k ServiceKey, d DestKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.write("delete-destination", k); err != nil {
		return err
	}
	s, i, err := m.findDest(k, d)
	if err != nil {
		return err
	}
	if i < 0 {
		return fmt.Errorf("delete destination %s of %s: %w", d, k, syscall.ENOENT)
	}
	s.Destinations = append(s.Destinations[:i], s.Destinations[i+1:]...)
	return nil
}

// ErrNotAvailable is returned by NewKernel when the kernel has no IPVS.
var ErrNotAvailable = errors.New("IPVS is not available in this kernel: load the ip_vs module")
