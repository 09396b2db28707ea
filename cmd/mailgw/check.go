package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var g globalFlags
	g.register(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	cfg, demo, err := loadConfig(g.config)
	if err != nil {
		return err
	}
	out, err := cfg.YAML()
	if err != nil {
		return err
	}
	if demo {
		fmt.Fprintln(stdout, "# built-in demo config (no --config and no MAILGW_CONFIG)")
	}
	_, err = stdout.Write(out)
	return err
}
