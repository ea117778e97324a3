package director

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setNice gives every thread of the process niceness n (keepalived's
// vrrp_priority). Linux keeps niceness per thread and a new thread
// inherits its creator's, so setting all current threads covers the
// threads the Go runtime starts later too.
func setNice(n int) error {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("set niceness %d: list threads: %w", n, err)
	}
	var errs []error
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("set niceness %d: %w", n, errors.Join(errs...))
	}
	return nil
}
