package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCheckLimits(t *testing.T) {
	pkg := kernelLimits{MaxUserWatches: 1 << 20, MaxUserInstances: 1024, MaxQueuedEvents: 65536}
	tests := []struct {
		name               string
		have               kernelLimits
		watches, instances int
		want               []string // sysctl lines
	}{
		{"packaged values, small tree", pkg, 20000, 3, nil},
		{"kernel defaults", kernelLimits{8192, 128, 16384}, 20000, 3, []string{
			"fs.inotify.max_user_watches = 1048576",
			"fs.inotify.max_queued_events = 65536",
		}},
		{"many folders", kernelLimits{8192, 128, 16384}, 100, 65, []string{
			"fs.inotify.max_user_instances = 1024",
			"fs.inotify.max_queued_events = 65536",
		}},
		{"half the instances", kernelLimits{MaxUserInstances: 128}, 0, 64, nil},
		{"under 80% of the limit", kernelLimits{MaxUserWatches: 100000}, 80000, 1, nil},
		{"over 80% of the limit", kernelLimits{MaxUserWatches: 100000}, 80001, 1, []string{"fs.inotify.max_user_watches = 1048576"}},
		{"a huge tree wants twice its size", pkg, 900000, 1, []string{"fs.inotify.max_user_watches = 2097152"}},
		{"instances leave room for others", kernelLimits{MaxUserInstances: 4}, 0, 3, []string{"fs.inotify.max_user_instances = 1024"}},
		{"more instances than the recommended value", kernelLimits{MaxUserInstances: 1024}, 0, 600, []string{"fs.inotify.max_user_instances = 2048"}},
		{"unreadable limits are not judged", kernelLimits{}, 1 << 30, 1 << 20, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, w := range checkLimits(tt.have, tt.watches, tt.instances) {
				got = append(got, w.Line())
				if !strings.Contains(w.String(), w.Line()) || !strings.Contains(w.String(), sysctlFile) {
					t.Errorf("warning %q does not name %q and %s", w, w.Line(), sysctlFile)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("lines %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCeilPow2(t *testing.T) {
	for n, want := range map[int]int{0: 1, 1: 1, 2: 2, 3: 4, 1024: 1024, 1025: 2048} {
		if got := ceilPow2(n); got != want {
			t.Errorf("ceilPow2(%d) = %d, want %d", n, got, want)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The running daemon counts its watches once they are set up and warns of
// a limit too low for them.
func TestKernelLimitsWarning(t *testing.T) {
	cfg, _ := newNode(t)
	logs := &syncBuffer{}
	d, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	d.readLimits = func() kernelLimits {
		return kernelLimits{MaxUserWatches: 1, MaxUserInstances: 1024, MaxQueuedEvents: 65536}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "kernel limit too low") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning within 10s:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if n := strings.Count(out, "kernel limit too low"); n != 1 || !strings.Contains(out, `sysctl="fs.inotify.max_user_watches = 1048576"`) {
		t.Fatalf("want one warning naming fs.inotify.max_user_watches = 1048576:\n%s", out)
	}
}
