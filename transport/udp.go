package transport

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// wantSocketBuffer is the UDP buffer size quic-go asks for (7 MiB; see its
// sys_conn_buffers.go). Raising it first, with the same target, means that
// quic-go finds it large enough and stays silent, and that a failure is
// reported once, here, with the sysctl that fixes it.
const wantSocketBuffer = 7 << 20

// bufferConn is the part of a UDP socket raiseBuffers needs.
type bufferConn interface {
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
	ReadBuffer() (int, error)
	WriteBuffer() (int, error)
	// ForceReadBuffer and ForceWriteBuffer bypass the sysctl limit where
	// the process may (Linux, CAP_NET_ADMIN).
	ForceReadBuffer(int) error
	ForceWriteBuffer(int) error
}

// raiseBuffers grows the socket's receive and send buffers to
// wantSocketBuffer and logs one warning if the kernel does not allow it.
func raiseBuffers(c bufferConn, log *slog.Logger) {
	rcv := raise(c.ReadBuffer, c.SetReadBuffer, c.ForceReadBuffer)
	snd := raise(c.WriteBuffer, c.SetWriteBuffer, c.ForceWriteBuffer)
	lines := bufferSysctls(rcv, snd)
	if len(lines) == 0 {
		log.Debug("UDP socket buffers raised", "op", "listen", "recv", rcv, "send", snd)
		return
	}
	quoted := make([]string, len(lines))
	for i, l := range lines {
		quoted[i] = strconv.Quote(l)
	}
	log.Warn(fmt.Sprintf("UDP socket buffers are smaller than QUIC wants (%d bytes), which limits throughput: add %s to %s, run 'sysctl --system', then restart lockstep",
		wantSocketBuffer, strings.Join(quoted, " and "), sysctlFile),
		"op", "listen", "recv", rcv, "send", snd, "want", wantSocketBuffer)
	// quic-go would print the same complaint through the standard
	// logger; this warning replaces it.
	if _, set := os.LookupEnv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING"); !set {
		os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	}
}

// sysctlFile is where an operator sets the kernel limits lockstep needs.
const sysctlFile = "/etc/sysctl.d/60-lockstep.conf"

// sysctlSocketBuffer is the value the package's sysctl file gives
// net.core.rmem_max and wmem_max: a little above wantSocketBuffer.
const sysctlSocketBuffer = 7500000

// bufferSysctls returns the sysctl.d lines that would let the socket have
// the buffers QUIC wants, given the sizes it got: none when both suffice.
func bufferSysctls(rcv, snd int) []string {
	var out []string
	if rcv < wantSocketBuffer {
		out = append(out, fmt.Sprintf("net.core.rmem_max = %d", sysctlSocketBuffer))
	}
	if snd < wantSocketBuffer {
		out = append(out, fmt.Sprintf("net.core.wmem_max = %d", sysctlSocketBuffer))
	}
	return out
}

// raise returns the buffer size after trying to reach wantSocketBuffer.
// Linux reports twice the size set (the kernel's bookkeeping overhead),
// which is what quic-go compares too.
func raise(get func() (int, error), set, force func(int) error) int {
	if n, err := get(); err == nil && n >= wantSocketBuffer {
		return n
	}
	_ = set(wantSocketBuffer)
	if n, err := get(); err == nil && n >= wantSocketBuffer {
		return n
	}
	_ = force(wantSocketBuffer)
	n, _ := get()
	return n
}

// udpBuffers adapts a *net.UDPConn.
type udpBuffers struct{ *net.UDPConn }

func (u udpBuffers) sockopt(f func(fd int) (int, error)) (int, error) {
	rc, err := u.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var serr error
	if err := rc.Control(func(fd uintptr) { n, serr = f(int(fd)) }); err != nil {
		return 0, err
	}
	return n, serr
}

func (u udpBuffers) ReadBuffer() (int, error) {
	return u.sockopt(func(fd int) (int, error) { return syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
}

func (u udpBuffers) WriteBuffer() (int, error) {
	return u.sockopt(func(fd int) (int, error) { return syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF) })
}

func (u udpBuffers) ForceReadBuffer(n int) error {
	_, err := u.sockopt(func(fd int) (int, error) { return 0, forceSockopt(fd, soRcvBufForce, n) })
	return err
}

func (u udpBuffers) ForceWriteBuffer(n int) error {
	_, err := u.sockopt(func(fd int) (int, error) { return 0, forceSockopt(fd, soSndBufForce, n) })
	return err
}
