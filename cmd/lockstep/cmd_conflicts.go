package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"lockstep/control"
)

var conflictsCommand = command{
	name:    "conflicts",
	summary: "List the versions that lost a conflict and where each losing copy is kept.",
	run:     runConflicts,
}

func runConflicts(ctx context.Context, e env, fs *flag.FlagSet, args []string) error {
	cfgPath := configFlag(fs)
	asJSON := fs.Bool("json", false, "print the list as JSON")
	folder := fs.String("folder", "", "list only the folder with this `id`")
	client, err := clientFor(e, fs, args, cfgPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := client.Conflicts(ctx, *folder)
	if err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			list = []control.Conflict{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(e.stdout, "no conflicts")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FOLDER\tPATH\tWINNER\tLOSER\tTIME\tCOPY")
	for _, c := range list {
		copyPath := c.Copy
		if copyPath == "" {
			copyPath = "(kept on " + c.Loser + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Folder, c.Path, c.Winner, c.Loser, c.Time.Local().Format(time.DateTime), copyPath)
	}
	return tw.Flush()
}
