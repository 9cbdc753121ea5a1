package vfs

import (
	"errors"
	"io/fs"
	"runtime"

	"golang.org/x/sys/unix"
)

// A batch from a peer mostly brings files new here, many to a directory:
// deciding each one begins with an lstat that finds nothing, a failed
// lookup in the kernel that costs about as much as a successful one. The
// batch's second question about a directory reads the directory's entries
// instead, if it is small (listedMax), and later questions about names not
// among them are answered from memory. The listing is as old as the
// question that read it, so it serves only decisions checked again before
// anything is replaced (a commit lstats again, or links without replacing).

// listedMax is the largest directory (st_size) that is listed: reading a
// big one whole would cost more than the lookups it spares.
const listedMax = 64 << 10

// LstatListed is Lstat for a decision that is checked again before it
// takes effect: a name absent from its directory's listing (see above) is
// fs.ErrNotExist without a look at the disk.
func (ds *Dirs) LstatListed(rel string) (fs.FileInfo, error) {
	d, name, err := ds.Parent(rel, false)
	if err != nil {
		return nil, err
	}
	if d.listedAbsent(name) {
		return nil, &fs.PathError{Op: "lstat", Path: rel, Err: fs.ErrNotExist}
	}
	return d.Lstat(name)
}

// listedAbsent reports whether name is known to be absent from the
// directory's listing, reading the listing on the second call.
func (d *Dir) listedAbsent(name string) bool {
	d.listMu.Lock()
	defer d.listMu.Unlock()
	d.asked++
	if d.asked == 2 && d.size <= listedMax {
		d.names, _ = d.list()
	}
	if d.names == nil {
		return false
	}
	_, ok := d.names[name]
	return !ok
}

// list reads the names in the directory through a descriptor of its own
// (the handle's offset is left alone), nil on any error.
func (d *Dir) list() (map[string]struct{}, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	runtime.KeepAlive(d.file)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	names := map[string]struct{}{}
	buf := make([]byte, 16<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		var found []string
		_, _, found = unix.ParseDirent(buf[:n], -1, found)
		for _, name := range found {
			names[name] = struct{}{}
		}
		if len(names) > listedMax/8 {
			return nil, errors.New("directory grew past the listing bound")
		}
	}
}
