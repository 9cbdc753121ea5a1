//go:build !linux

package index

import "errors"

// releaseMapped is not available without /proc/self/maps: the mapped
// pages stay resident until the kernel reclaims them, and the pager stops
// after its first try.
func releaseMapped(string) (int64, error) { return 0, errors.ErrUnsupported }

// fileResident is not known without /proc: every look of the pager
// releases (and fails, which stops it).
func fileResident() (int64, error) { return 0, errors.ErrUnsupported }
