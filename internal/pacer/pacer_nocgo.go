//go:build !(cgo && linux)

package pacer

import "time"

// Pacer is one sending thread; in this build there is none.
type Pacer struct{}

// Available says whether New can start a thread in this build.
func Available() bool { return false }

// New returns ErrUnavailable: the thread needs cgo.
func New(fd int) (*Pacer, error) { return nil, ErrUnavailable }

// SetRealtime returns ErrUnavailable unless priority is 0 (off).
func (p *Pacer) SetRealtime(policy Policy, priority int) error {
	if err := checkRealtime(policy, priority); err != nil || priority == 0 {
		return err
	}
	return ErrUnavailable
}

// Start returns ErrUnavailable.
func (p *Pacer) Start(Schedule) error { return ErrUnavailable }

// Renew returns false.
func (p *Pacer) Renew(time.Duration) bool { return false }

// Stop does nothing.
func (p *Pacer) Stop() {}

// Stats returns zeros.
func (p *Pacer) Stats() Stats { return Stats{} }

// Close does nothing.
func (p *Pacer) Close() {}
