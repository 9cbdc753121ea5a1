//go:build !linux

package transport

import "errors"

const (
	soRcvBufForce = 0
	soSndBufForce = 0
)

func forceSockopt(fd, opt, n int) error { return errors.New("not supported on this system") }
