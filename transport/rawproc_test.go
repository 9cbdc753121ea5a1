package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"lockstep/identity"
)

// The test binary doubles as one end of a raw quic-go link in a process of
// its own, so that the link can be measured the way two daemons use it: two
// processes, each with its own Go runtime, sharing the machine's cores. One
// process in which both ends share a runtime, as in BenchmarkRawQUICStream,
// gives a figure no pair of daemons on the same machine can reach.
//
// Run the test binary with
//
//	LOCKSTEP_RAWQUIC=receive LOCKSTEP_RAWQUIC_SELF=DIR LOCKSTEP_RAWQUIC_PEER=DIR
//
// and it prints the UDP address it listens on, reads one stream to its end,
// answers one byte and exits; with
//
//	LOCKSTEP_RAWQUIC=send ... LOCKSTEP_RAWQUIC_ADDR=HOST:PORT LOCKSTEP_RAWQUIC_BYTES=N
//
// it sends N bytes of random data in 64 KiB writes, waits for that byte and
// prints "elapsed <seconds>", from its first write to the answer. SELF and
// PEER are identity directories (identity.Create); each end pins the other.
// Both use this package's TLS and QUIC settings. With
//
//	LOCKSTEP_RAWQUIC=link LOCKSTEP_RAWQUIC_BYTES=N
//
// it makes both identities in a scratch directory, runs a receiver and a
// sender as above and prints "elapsed <seconds> cpu <seconds>", the CPU
// time of both: the end-to-end benchmarks measure the link this way.
const rawRoleEnv = "LOCKSTEP_RAWQUIC"

func TestMain(m *testing.M) {
	role := os.Getenv(rawRoleEnv)
	if role == "" {
		os.Exit(m.Run())
	}
	if err := rawProcess(role); err != nil {
		fmt.Fprintf(os.Stderr, "rawquic %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func rawProcess(role string) error {
	switch role {
	case "link":
		return rawLinkProcess()
	case "send", "receive":
	default:
		return fmt.Errorf("%s=%q: want link, send or receive", rawRoleEnv, role)
	}
	self, err := identity.Load(os.Getenv(rawRoleEnv + "_SELF"))
	if err != nil {
		return err
	}
	peer, err := identity.Load(os.Getenv(rawRoleEnv + "_PEER"))
	if err != nil {
		return err
	}
	tr, err := New(Config{Identity: self, Handler: func(context.Context, *Conn) {}, Peers: []Peer{{ID: peer.ID, Name: "peer"}}})
	if err != nil {
		return err
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	qt := &quic.Transport{Conn: udp}
	defer qt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if role == "send" {
		n, err := strconv.ParseInt(os.Getenv(rawRoleEnv+"_BYTES"), 10, 64)
		if err != nil {
			return fmt.Errorf("%s_BYTES: %w", rawRoleEnv, err)
		}
		return rawSend(ctx, tr, qt, peer.ID, os.Getenv(rawRoleEnv+"_ADDR"), n)
	}
	return rawReceive(ctx, tr, qt)
}

func rawReceive(ctx context.Context, tr *Transport, qt *quic.Transport) error {
	ln, err := qt.Listen(tr.serverTLS(), tr.quicConfig())
	if err != nil {
		return err
	}
	fmt.Println(qt.Conn.LocalAddr())
	qc, err := ln.Accept(ctx)
	if err != nil {
		return err
	}
	s, err := qc.AcceptStream(ctx)
	if err != nil {
		return err
	}
	buf := make([]byte, benchChunk)
	for {
		_, err := s.Read(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if _, err := s.Write([]byte{1}); err != nil {
		return err
	}
	s.Close()
	// The sender closes the connection once it has the byte.
	<-qc.Context().Done()
	return nil
}

func rawSend(ctx context.Context, tr *Transport, qt *quic.Transport, peer identity.NodeID, addr string, n int64) error {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	var presented identity.NodeID
	qc, err := qt.Dial(ctx, raddr, tr.clientTLS(Peer{ID: peer, Name: "peer"}, &presented), tr.quicConfig())
	if err != nil {
		return err
	}
	defer qc.CloseWithError(0, "")
	s, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	data := randomChunk(benchChunk)
	start := time.Now()
	for left := n; left > 0; left -= int64(len(data)) {
		if _, err := s.Write(data[:min(int64(len(data)), left)]); err != nil {
			return err
		}
	}
	s.Close()
	if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
		return err
	}
	fmt.Printf("elapsed %.6f\n", time.Since(start).Seconds())
	return nil
}

func rawLinkProcess() error {
	n, err := strconv.ParseInt(os.Getenv(rawRoleEnv+"_BYTES"), 10, 64)
	if err != nil {
		return fmt.Errorf("%s_BYTES: %w", rawRoleEnv, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "lockstep-rawquic")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	elapsed, cpu, err := rawLink(exe, dir, n)
	if err != nil {
		return err
	}
	fmt.Printf("elapsed %.6f cpu %.6f\n", elapsed.Seconds(), cpu.Seconds())
	return nil
}

// rawLink runs a raw quic-go transfer of n bytes between two processes of
// the test binary at exe and returns how long it took and the CPU time
// both processes used.
func rawLink(exe, dir string, n int64) (elapsed, cpu time.Duration, err error) {
	a, b := dir+"/a", dir+"/b"
	for _, d := range []string{a, b} {
		if _, _, err := identity.Create(d, "raw"); err != nil {
			return 0, 0, err
		}
	}
	env := func(self, peer string, extra ...string) []string {
		var base []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, rawRoleEnv) {
				base = append(base, kv)
			}
		}
		return append(append(base, rawRoleEnv+"_SELF="+self, rawRoleEnv+"_PEER="+peer), extra...)
	}
	recv := exec.Command(exe)
	recv.Env = env(b, a, rawRoleEnv+"=receive")
	recv.Stderr = os.Stderr
	out, err := recv.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := recv.Start(); err != nil {
		return 0, 0, err
	}
	defer recv.Process.Kill()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("receiver's address: %w", err)
	}
	send := exec.Command(exe)
	send.Env = env(a, b, rawRoleEnv+"=send", rawRoleEnv+"_ADDR="+strings.TrimSpace(addr), rawRoleEnv+"_BYTES="+strconv.FormatInt(n, 10))
	send.Stderr = os.Stderr
	res, err := send.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("sender: %w", err)
	}
	if err := recv.Wait(); err != nil {
		return 0, 0, fmt.Errorf("receiver: %w", err)
	}
	var secs float64
	if _, err := fmt.Sscanf(string(res), "elapsed %g", &secs); err != nil {
		return 0, 0, fmt.Errorf("sender said %q: %w", res, err)
	}
	cpu = send.ProcessState.UserTime() + send.ProcessState.SystemTime() + recv.ProcessState.UserTime() + recv.ProcessState.SystemTime()
	return time.Duration(secs * float64(time.Second)), cpu, nil
}

// BenchmarkRawQUICProcesses sets a raw quic-go stream between two
// processes against the same stream inside one process, alternating in
// transfers of 256 MiB, and reports both rates and processes/in-process.
func BenchmarkRawQUICProcesses(b *testing.B) {
	exe, err := os.Executable()
	mustf(b, err, "executable")
	const transfer = 256 << 20
	pump := rawPump(b)
	var inProc, procs, procsCPU time.Duration
	for i := range b.N {
		timed(&inProc, func() { pump(transfer / benchChunk) })
		took, cpu, err := rawLink(exe, b.TempDir()+"/"+strconv.Itoa(i), transfer)
		mustf(b, err, "raw link")
		procs += took
		procsCPU += cpu
	}
	mb := float64(b.N) * transfer / 1e6
	b.ReportMetric(mb/inProc.Seconds(), "in-process-MB/s")
	b.ReportMetric(mb/procs.Seconds(), "processes-MB/s")
	b.ReportMetric(float64(procsCPU.Microseconds())/mb, "processes-cpu-µs/MB")
	b.ReportMetric(inProc.Seconds()/procs.Seconds(), "processes/in-process")
}
