package conflict

import (
	"fmt"
	"time"
)

// Stamp is a hybrid-logical-clock timestamp: the high 48 bits are wall-clock
// milliseconds since the Unix epoch, the low 16 bits a logical counter that
// orders events within one millisecond or while a node's clock lags behind a
// stamp it has seen. Stamps compare as plain integers.
type Stamp uint64

const logicalBits = 16

// MakeStamp builds a stamp from wall-clock milliseconds and a logical counter.
func MakeStamp(ms uint64, logical uint16) Stamp { return Stamp(ms<<logicalBits | uint64(logical)) }

// Millis returns the wall-clock part in milliseconds since the Unix epoch.
func (s Stamp) Millis() uint64 { return uint64(s) >> logicalBits }

// Logical returns the logical counter.
func (s Stamp) Logical() uint16 { return uint16(s) }

// Time returns the wall-clock part as a time.Time.
func (s Stamp) Time() time.Time { return time.UnixMilli(int64(s.Millis())).UTC() }

func (s Stamp) String() string {
	return fmt.Sprintf("%s+%d", s.Time().Format("2006-01-02T15:04:05.000Z"), s.Logical())
}

// Clock is a hybrid logical clock. It is not safe for concurrent use; its
// owner serialises calls. The wall clock is an input so that tests control it.
type Clock struct {
	last Stamp
}

// Now returns a stamp greater than every stamp this clock has issued or
// observed, and not behind wall time now.
func (c *Clock) Now(now time.Time) Stamp {
	wall := MakeStamp(uint64(max(now.UnixMilli(), 0)), 0)
	if wall > c.last {
		c.last = wall
	} else {
		c.last++
	}
	return c.last
}

// Observe advances the clock past a stamp received from another node, so
// that this node's next change is ordered after everything it has seen.
func (c *Clock) Observe(s Stamp) {
	if s > c.last {
		c.last = s
	}
}

// Last returns the most recent stamp issued or observed.
func (c *Clock) Last() Stamp { return c.last }
