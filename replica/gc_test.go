package replica

import (
	"testing"
	"time"

	"lockstep/conflict"
	"lockstep/index"
)

func TestForgettable(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) conflict.Stamp {
		return conflict.MakeStamp(uint64(now.Add(-ago).UnixMilli()), 0)
	}
	cases := []struct {
		name    string
		rec     index.Record
		through uint64
		want    bool
	}{
		{"confirmed and old", index.Record{Deleted: true, Sequence: 5, Stamp: at(2 * time.Hour)}, 5, true},
		{"not confirmed by every peer", index.Record{Deleted: true, Sequence: 6, Stamp: at(2 * time.Hour)}, 5, false},
		{"confirmed but recent", index.Record{Deleted: true, Sequence: 5, Stamp: at(time.Minute)}, 9, false},
		{"a live record", index.Record{Sequence: 1, Stamp: at(2 * time.Hour)}, 9, false},
	}
	for _, tc := range cases {
		if got := Forgettable(&tc.rec, tc.through, now, time.Hour); got != tc.want {
			t.Errorf("%s: Forgettable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestGCInterval(t *testing.T) {
	for _, tc := range []struct{ retention, want time.Duration }{
		{720 * time.Hour, time.Hour},
		{time.Hour, 15 * time.Minute},
		{time.Second, time.Second},
	} {
		if got := gcInterval(tc.retention); got != tc.want {
			t.Errorf("gcInterval(%s) = %s, want %s", tc.retention, got, tc.want)
		}
	}
}
