package replica

import (
	"sync"
	"time"

	"lockstep/conflict"
)

// signal wakes every goroutine waiting on it: waiters take C() and select
// on it; Notify closes that channel and installs a fresh one. It never
// blocks and never loses a wake-up for a waiter that took C() before.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

// C returns the channel closed by the next Notify.
func (s *signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// Notify wakes every current waiter.
func (s *signal) Notify() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

// Clock is the node's hybrid logical clock, shared by its folders and safe
// for concurrent use.
type Clock struct {
	mu sync.Mutex
	c  conflict.Clock
}

// Now returns a new stamp.
func (c *Clock) Now(now time.Time) conflict.Stamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c.Now(now)
}

// Observe advances the clock past a stamp seen from a peer.
func (c *Clock) Observe(s conflict.Stamp) {
	c.mu.Lock()
	c.c.Observe(s)
	c.mu.Unlock()
}
