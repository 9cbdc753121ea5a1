package transport

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"lockstep/protocol"
)

// backoff returns the delay before dial attempt number attempt (0 for the
// first): none for the first, then min, 2·min, 4·min, ... capped at max,
// each scaled by a factor in [0.5, 1) from jitter ∈ [0, 1) so that nodes
// restarted together do not redial in lockstep.
func backoff(attempt int, min, max time.Duration, jitter float64) time.Duration {
	if attempt <= 0 {
		return 0
	}
	d := min
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = minDur(d, max)
	return d/2 + time.Duration(float64(d/2)*jitter)
}

func minDur(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// redialer keeps one peer connected: whenever current reports no
// connection it calls dial, pacing failed attempts with backoff. A
// connection that lived at least stable resets the pacing, so a link that
// drops after a long life is redialed at once.
type redialer struct {
	min, max, stable time.Duration
	jitter           func() float64 // nil: math/rand/v2
	// current returns a channel closed when the peer's connection ends,
	// or nil when it has none.
	current func() <-chan struct{}
	// dial makes one attempt; on success the new connection is current.
	dial func(ctx context.Context) error
	log  *slog.Logger
}

func (d *redialer) run(ctx context.Context) {
	jitter := d.jitter
	if jitter == nil {
		jitter = rand.Float64
	}
	attempt := 0
	lastErr := ""
	for ctx.Err() == nil {
		if done := d.current(); done != nil {
			start := time.Now()
			select {
			case <-done:
			case <-ctx.Done():
				return
			}
			if time.Since(start) >= d.stable {
				attempt = 0
			}
			continue
		}
		if wait := backoff(attempt, d.min, d.max, jitter()); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return
			}
			if d.current() != nil { // the peer dialed us meanwhile
				continue
			}
		}
		attempt++
		err := d.dial(ctx)
		switch {
		case err == nil:
			lastErr = ""
		case ctx.Err() != nil:
			return
		case errors.Is(err, errRefused) || errors.Is(err, protocol.ErrDuplicate):
			// A refusal was logged where it happened; a duplicate is the
			// normal outcome of both nodes dialing at once.
			d.log.Debug("cannot connect", "op", "dial", "err", err, "attempt", attempt)
		case err.Error() != lastErr:
			// Log a failure once; repeats of the same one only at debug
			// level, so an unreachable peer does not flood the log.
			lastErr = err.Error()
			d.log.Warn("cannot connect", "op", "dial", "err", err, "attempt", attempt)
		default:
			d.log.Debug("cannot connect", "op", "dial", "err", err, "attempt", attempt)
		}
	}
}
