package conflict

import (
	"testing"
	"time"
)

func TestClockMonotonic(t *testing.T) {
	var c Clock
	t0 := time.UnixMilli(1_000_000)
	a := c.Now(t0)
	b := c.Now(t0) // same millisecond
	if b <= a || b.Millis() != a.Millis() || b.Logical() != 1 {
		t.Fatalf("second stamp in one ms = %v after %v: want same ms, logical 1", b, a)
	}
	d := c.Now(t0.Add(-time.Second)) // wall clock stepped back
	if d <= b {
		t.Fatalf("stamp after clock step-back = %v, want > %v", d, b)
	}
	c.Observe(MakeStamp(5_000_000, 3)) // a peer far ahead
	e := c.Now(t0)
	if e <= MakeStamp(5_000_000, 3) {
		t.Fatalf("stamp after observing a later one = %v, want later", e)
	}
	f := c.Now(time.UnixMilli(6_000_000))
	if f != MakeStamp(6_000_000, 0) {
		t.Fatalf("stamp once wall time passes = %v, want wall time with logical 0", f)
	}
}

func TestStampParts(t *testing.T) {
	s := MakeStamp(1_700_000_000_123, 42)
	if s.Millis() != 1_700_000_000_123 || s.Logical() != 42 {
		t.Fatalf("parts of %d = %d, %d", s, s.Millis(), s.Logical())
	}
	if got := s.String(); got != "2023-11-14T22:13:20.123Z+42" {
		t.Fatalf("String = %q", got)
	}
}
