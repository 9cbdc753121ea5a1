package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lockstep/config"
	"lockstep/control"
	"lockstep/daemon"
	"lockstep/index"
)

var resyncCommand = command{
	name: "resync",
	summary: `Rebuild this node's copy of a folder (every folder without --folder) from the
cluster, after a rebuild, a lost index or a restore from backup. The node's index
of the folder is rebuilt from disk, then the cluster's version of every file is
taken: files already identical on disk are adopted without transfer; local files
that differ or that the cluster lacks are moved to the conflict store (see
'lockstep conflicts'), never pushed to peers.

With a running daemon the resync starts at once. Without one (for example
because its index is corrupt) the index is set aside if it cannot be read, and
the resync runs when 'lockstep run' starts. Progress is shown until the folder
is in sync again; --no-wait returns once the resync is started.`,
	run: runResync,
}

func runResync(ctx context.Context, e env, fs *flag.FlagSet, args []string) error {
	cfgPath := configFlag(fs)
	folder := fs.String("folder", "", "resync only the folder with this `id`")
	noWait := fs.Bool("no-wait", false, "return once the resync is started")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *folder != "" && !hasFolder(cfg, *folder) {
		return usagef("no folder %q in %s", *folder, *cfgPath)
	}
	client := control.NewClient(cfg.Node.Control)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	resp, err := client.Resync(rctx, control.ResyncRequest{Folder: *folder})
	cancel()
	var folders []string
	switch {
	case errors.Is(err, control.ErrNoDaemon):
		if folders, err = resyncOffline(e, cfg, *folder); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "no daemon is running: the resync of %s starts when 'lockstep run' starts\n", strings.Join(folders, ", "))
		if *noWait {
			return nil
		}
		fmt.Fprintln(e.stdout, "waiting for the daemon (Ctrl-C stops waiting; the resync still happens)")
	case err != nil:
		return err
	default:
		folders = resp.Folders
		fmt.Fprintf(e.stdout, "resync started: %s\n", strings.Join(folders, ", "))
		if *noWait {
			return nil
		}
	}
	return followResync(ctx, e, client, folders)
}

func hasFolder(cfg *config.Config, id string) bool {
	for _, f := range cfg.Folders {
		if f.ID == id {
			return true
		}
	}
	return false
}

// resyncOffline prepares a resync for the next start of the daemon: it
// writes the folders' markers, and when the index cannot be read, sets it
// aside, which makes every folder resync.
func resyncOffline(e env, cfg *config.Config, folder string) ([]string, error) {
	dataDir := cfg.Node.DataDir
	all := folder == ""
	ix, err := index.Open(dataDir, index.Options{})
	switch {
	case errors.Is(err, index.ErrCorrupt):
		dir := filepath.Join(dataDir, index.Subdir)
		aside := fmt.Sprintf("%s.corrupt-%s", dir, time.Now().UTC().Format("20060102-150405"))
		if err := os.Rename(dir, aside); err != nil {
			return nil, fmt.Errorf("set the corrupt index aside: %w", err)
		}
		fmt.Fprintf(e.stdout, "the index could not be read; moved it to %s (delete it once the resync is done); every folder will be resynced\n", aside)
		all = true
	case err != nil:
		return nil, err
	default:
		if err := ix.Close(); err != nil {
			return nil, err
		}
	}
	var folders []string
	for _, f := range cfg.Folders {
		if !all && f.ID != folder {
			continue
		}
		marker := daemon.ResyncMarker(dataDir, f.ID)
		if err := os.MkdirAll(filepath.Dir(marker), 0o700); err != nil {
			return nil, err
		}
		body := fmt.Sprintf("resync of folder %s requested %s\n", f.ID, time.Now().UTC().Format(time.RFC3339))
		if err := os.WriteFile(marker, []byte(body), 0o600); err != nil {
			return nil, fmt.Errorf("write resync marker: %w", err)
		}
		folders = append(folders, f.ID)
	}
	return folders, nil
}

// followResync shows the folders' progress until each is in sync again:
// its resync finished, the folder idle, and every connected peer holding
// all of it.
func followResync(ctx context.Context, e env, client *control.Client, folders []string) error {
	tty := isTerminal(e.stdout)
	p := &progress{out: e.stdout, tty: tty, start: time.Now()}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := client.Status(sctx, "")
		cancel()
		if err != nil && !errors.Is(err, control.ErrNoDaemon) {
			return err
		}
		if err == nil {
			done, err := p.show(st, folders)
			if err != nil {
				return err
			}
			if done {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			p.finishLine()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// progress prints resync progress: one rewritten line per poll on a
// terminal, a plain line every few seconds otherwise.
type progress struct {
	out       io.Writer
	tty       bool
	start     time.Time
	lastPrint time.Time
	lastLen   int
}

func (p *progress) show(st control.Status, folders []string) (bool, error) {
	byID := map[string]control.FolderStatus{}
	for _, f := range st.Folders {
		byID[f.ID] = f
	}
	var parts []string
	allDone := true
	for _, id := range folders {
		f, ok := byID[id]
		if !ok {
			return false, fmt.Errorf("the daemon has no folder %q", id)
		}
		if f.State == control.StatePaused || f.State == control.StateError {
			p.finishLine()
			return false, fmt.Errorf("folder %s is %s: %s", id, f.State, f.Error)
		}
		line, done := resyncLine(f, time.Since(p.start))
		allDone = allDone && done
		parts = append(parts, line)
	}
	line := strings.Join(parts, " | ")
	now := time.Now()
	switch {
	case allDone:
		p.finishLine()
		fmt.Fprintf(p.out, "in sync: %s\n", line)
	case p.tty:
		pad := ""
		if n := p.lastLen - len(line); n > 0 {
			pad = strings.Repeat(" ", n)
		}
		fmt.Fprintf(p.out, "\r%s%s", line, pad)
		p.lastLen = len(line)
	case now.Sub(p.lastPrint) >= 2*time.Second:
		fmt.Fprintln(p.out, line)
		p.lastPrint = now
	}
	return allDone, nil
}

func (p *progress) finishLine() {
	if p.tty && p.lastLen > 0 {
		fmt.Fprintln(p.out)
		p.lastLen = 0
	}
}

// resyncLine describes one folder's resync; done reports whether the folder
// is in sync again.
func resyncLine(f control.FolderStatus, elapsed time.Duration) (string, bool) {
	r := f.Resync
	if r == nil {
		pending := int64(0)
		for _, p := range f.Peers {
			if p.Connected {
				pending += p.PendingFiles
			}
		}
		if f.State == control.StateIdle && pending == 0 {
			return fmt.Sprintf("%s: %d files, %s", f.ID, f.Files, humanBytes(f.Bytes)), true
		}
		return fmt.Sprintf("%s: %s, %d versions not yet confirmed by peers", f.ID, f.State, pending), false
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s %d/%d files %s/%s", f.ID, r.Phase, bar(r.BytesDone, r.BytesTotal, 20),
		r.FilesDone, r.FilesTotal, humanBytes(r.BytesDone), humanBytes(r.BytesTotal))
	fmt.Fprintf(&b, ", adopted %d, fetched %s, set aside %d", r.FilesAdopted, humanBytes(r.BytesFetched), r.SetAside)
	if secs := elapsed.Seconds(); secs >= 1 && r.BytesDone > 0 {
		rate := float64(r.BytesDone) / secs
		fmt.Fprintf(&b, ", %s/s", humanBytes(int64(rate)))
		if left := r.BytesTotal - r.BytesDone; left > 0 {
			fmt.Fprintf(&b, ", ETA %s", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	return b.String(), false
}

// bar draws a progress bar of width cells.
func bar(done, total int64, width int) string {
	filled := 0
	if total > 0 {
		filled = int(min(done, total) * int64(width) / total)
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
