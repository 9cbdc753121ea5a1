package replica

import (
	"slices"
	"testing"
	"time"
)

func TestLeastRecentIdle(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type ent struct {
		last  time.Time
		inUse bool
	}
	idle := func(e ent) (time.Time, bool) { return e.last, !e.inUse }
	for _, tc := range []struct {
		name   string
		m      map[string]ent
		want   string
		found  bool
		before []string // idle since before t0+2s
	}{
		{"empty", nil, "", false, nil},
		{"all in use", map[string]ent{"a": {t0, true}, "b": {t0, true}}, "", false, nil},
		{"oldest idle", map[string]ent{"a": {t0.Add(3 * time.Second), false}, "b": {t0.Add(time.Second), false}, "c": {t0, true}}, "b", true, []string{"b"}},
		{"in use skipped", map[string]ent{"a": {t0, true}, "b": {t0.Add(5 * time.Second), false}}, "b", true, nil},
		{"several before", map[string]ent{"a": {t0, false}, "b": {t0.Add(time.Second), false}, "c": {t0.Add(2 * time.Second), false}}, "a", true, []string{"a", "b"}},
	} {
		got, found := leastRecentIdle(tc.m, idle)
		if got != tc.want || found != tc.found {
			t.Errorf("%s: leastRecentIdle = %q, %v; want %q, %v", tc.name, got, found, tc.want, tc.found)
		}
		before := idleBefore(tc.m, t0.Add(2*time.Second), idle)
		slices.Sort(before)
		if !slices.Equal(before, tc.before) {
			t.Errorf("%s: idleBefore = %v, want %v", tc.name, before, tc.before)
		}
	}
}
