package main

import (
	"context"
	"fmt"
	"io"
)

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g, err := parseGlobalOnly("check", args, stderr)
	if err != nil {
		return err
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
