package transport

import "syscall"

const (
	soRcvBufForce = syscall.SO_RCVBUFFORCE
	soSndBufForce = syscall.SO_SNDBUFFORCE
)

func forceSockopt(fd, opt, n int) error { return syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, opt, n) }
