package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"lockstep/control"
)

var resumeCommand = command{
	name: "resume",
	summary: `Re-check paused folders and rescan them. A folder pauses when its root is
missing or replaced, or when a scan finds too much of it deleted at once
(delete_guard); with --accept-deletes those deletions go through to every node.`,
	run: runResume,
}

func runResume(ctx context.Context, e env, fs *flag.FlagSet, args []string) error {
	cfgPath := configFlag(fs)
	folder := fs.String("folder", "", "resume only the folder with this `id`")
	accept := fs.Bool("accept-deletes", false, "let the deletions held back by the guard propagate")
	client, err := clientFor(e, fs, args, cfgPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Resume(ctx, control.ResumeRequest{Folder: *folder, AcceptDeletes: *accept}); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "rescan requested; see 'lockstep status'")
	return nil
}
