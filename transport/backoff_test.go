package transport

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestBackoff(t *testing.T) {
	const min, max = 500 * time.Millisecond, 30 * time.Second
	tests := []struct {
		attempt int
		jitter  float64
		want    time.Duration
	}{
		{0, 0.9, 0},
		{1, 0, 250 * time.Millisecond},
		{1, 0.5, 375 * time.Millisecond},
		{2, 0, 500 * time.Millisecond},
		{3, 0.999999, 2 * time.Second},
		{6, 0, 8 * time.Second},
		{7, 0, 15 * time.Second}, // 32s capped at 30s
		{8, 0, 15 * time.Second},
		{8, 0.999999, 30 * time.Second},
		{1000, 0.5, 22500 * time.Millisecond},
	}
	for _, tt := range tests {
		got := backoff(tt.attempt, min, max, tt.jitter)
		if d := got - tt.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("backoff(%d, jitter %v) = %v, want %v", tt.attempt, tt.jitter, got, tt.want)
		}
	}
}

// TestRedialerSchedule drives the redial loop on a fake clock.
func TestRedialerSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var dials []time.Duration
		var conn chan struct{} // the current connection; nil: none
		failures := 6
		start := time.Now()
		logs := &logBuffer{}
		d := redialer{
			min: time.Second, max: 8 * time.Second, stable: 10 * time.Second,
			jitter: func() float64 { return 0.5 },
			log:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			current: func() <-chan struct{} {
				mu.Lock()
				defer mu.Unlock()
				if conn == nil {
					return nil
				}
				return conn
			},
			dial: func(ctx context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				dials = append(dials, time.Since(start))
				if len(dials) <= failures {
					return errors.New("connection refused")
				}
				conn = make(chan struct{})
				return nil
			},
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { d.run(ctx); close(done) }()

		// Six failures, then a connection: at 0, then 0.75, 1.5, 3, 6, 6, 6
		// seconds apart (doubling from 1s, capped at 8s, jitter 0.5).
		time.Sleep(time.Minute)
		synctest.Wait()
		want := []time.Duration{0, 750 * time.Millisecond, 2250 * time.Millisecond, 5250 * time.Millisecond,
			11250 * time.Millisecond, 17250 * time.Millisecond, 23250 * time.Millisecond}
		mu.Lock()
		if !equalDurations(dials, want) {
			t.Fatalf("dial times %v, want %v", dials, want)
		}
		// The connection lives for a minute, then drops: redial at once.
		close(conn)
		conn = nil
		failures = 100
		mu.Unlock()
		synctest.Wait()
		mu.Lock()
		if n := len(dials); n != 8 || dials[7] != time.Minute {
			t.Fatalf("after a long-lived connection dropped: dials %v, want an immediate one at 1m", dials)
		}
		mu.Unlock()
		// A connection established by the peer while waiting stops dialing.
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		conn = make(chan struct{})
		n := len(dials)
		mu.Unlock()
		time.Sleep(time.Hour)
		synctest.Wait()
		mu.Lock()
		if len(dials) != n {
			t.Fatalf("dialed %d times while connected", len(dials)-n)
		}
		mu.Unlock()
		cancel()
		<-done
		// Repeated identical failures are logged once per outage at
		// warning level: two outages, two warnings.
		if w := len(logs.lines("level=WARN")); w != 2 {
			t.Fatalf("%d warnings for one repeated failure:\n%s", w, logs)
		}
		if !strings.Contains(logs.String(), "connection refused") {
			t.Fatal("the failure was not logged")
		}
	})
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fakeBuffers is a socket whose buffers the kernel caps at limit (doubled,
// as Linux reports) unless forcing is allowed.
type fakeBuffers struct {
	limit      int
	allowForce bool
	rcv, snd   int
}

func (f *fakeBuffers) SetReadBuffer(n int) error  { f.rcv = 2 * minInt(n, f.limit); return nil }
func (f *fakeBuffers) SetWriteBuffer(n int) error { f.snd = 2 * minInt(n, f.limit); return nil }
func (f *fakeBuffers) ReadBuffer() (int, error)   { return f.rcv, nil }
func (f *fakeBuffers) WriteBuffer() (int, error)  { return f.snd, nil }
func (f *fakeBuffers) ForceReadBuffer(n int) error {
	if !f.allowForce {
		return errors.New("operation not permitted")
	}
	f.rcv = 2 * n
	return nil
}
func (f *fakeBuffers) ForceWriteBuffer(n int) error {
	if !f.allowForce {
		return errors.New("operation not permitted")
	}
	f.snd = 2 * n
	return nil
}

func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func TestRaiseBuffers(t *testing.T) {
	t.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "") // restored after the test
	os.Unsetenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING")
	for _, tt := range []struct {
		name     string
		f        fakeBuffers
		warnings int
	}{
		{"sysctl allows it", fakeBuffers{limit: 4 << 20, rcv: 212992, snd: 212992}, 0},
		{"forced as root", fakeBuffers{limit: 212992, allowForce: true}, 0},
		{"not allowed", fakeBuffers{limit: 212992}, 1},
	} {
		logs := &logBuffer{}
		raiseBuffers(&tt.f, slog.New(slog.NewTextHandler(logs, nil)))
		warn := logs.lines("level=WARN")
		if len(warn) != tt.warnings {
			t.Errorf("%s: %d warnings, want %d:\n%s", tt.name, len(warn), tt.warnings, logs)
			continue
		}
		if tt.warnings == 1 && os.Getenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING") != "true" {
			t.Errorf("%s: quic-go's own buffer warning was not silenced", tt.name)
		}
		if tt.warnings == 1 && (!strings.Contains(warn[0], `\"net.core.rmem_max = 7500000\"`) || !strings.Contains(warn[0], `\"net.core.wmem_max = 7500000\"`) || !strings.Contains(warn[0], sysctlFile)) {
			t.Errorf("%s: warning does not name the sysctls: %s", tt.name, warn[0])
		}
		if tt.warnings == 0 && (tt.f.rcv < wantSocketBuffer || tt.f.snd < wantSocketBuffer) {
			t.Errorf("%s: buffers %d/%d not raised", tt.name, tt.f.rcv, tt.f.snd)
		}
	}
}

func TestBufferSysctls(t *testing.T) {
	for _, tt := range []struct {
		rcv, snd int
		want     string
	}{
		{wantSocketBuffer, wantSocketBuffer, ""},
		{2 * wantSocketBuffer, 16 << 20, ""},
		{425984, wantSocketBuffer, "net.core.rmem_max = 7500000"},
		{wantSocketBuffer, 425984, "net.core.wmem_max = 7500000"},
		{425984, 425984, "net.core.rmem_max = 7500000; net.core.wmem_max = 7500000"},
	} {
		if got := strings.Join(bufferSysctls(tt.rcv, tt.snd), "; "); got != tt.want {
			t.Errorf("bufferSysctls(%d, %d) = %q, want %q", tt.rcv, tt.snd, got, tt.want)
		}
	}
}
