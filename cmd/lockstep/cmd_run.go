package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"lockstep/daemon"
)

var runCommand = command{
	name: "run",
	summary: `Run the daemon in the foreground (for systemd Type=simple). Logs go to
stderr. SIGINT/SIGTERM stop it cleanly. SIGHUP reloads the configuration:
peers and per-folder settings apply at once; the log names each change,
and those that need a restart (the [node] table, adding or removing a
folder, a folder's path or mode).`,
	run: runRun,
}

func runRun(ctx context.Context, e env, fs *flag.FlagSet, args []string) error {
	cfgPath := configFlag(fs)
	level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToUpper(*level))); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", *level)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := loadDaemonConfig(*cfgPath)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lvl}))
	d, err := daemon.New(cfg, log)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				cfg, err := loadDaemonConfig(*cfgPath)
				if err == nil {
					err = d.Reload(cfg)
				}
				if err != nil {
					log.Error("SIGHUP: configuration not reloaded; still running the loaded one", "err", err)
				}
			}
		}
	}()
	return d.Run(ctx)
}
