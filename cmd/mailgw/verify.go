package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"mailgw/identify"
	"mailgw/ingest"
)

// heldLine is one held request as "holds list --json" prints it.
type heldLine struct {
	Sender    string    `json:"sender"`
	Space     string    `json:"space"`
	MessageID string    `json:"message_id"`
	Subject   string    `json:"subject"`
	Channel   string    `json:"channel"`
	HeldAt    time.Time `json:"held_at"`
}

func runHolds(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	subs := map[string]*subcommand{
		"list": {
			usage: "list [--json]",
			flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print one JSON object per held request") },
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				customers, err := a.directory().Customers(ctx)
				if err != nil {
					return err
				}
				store := ingest.NewStore(a.cfg, a.rdb)
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				enc := json.NewEncoder(stdout)
				if !asJSON {
					fmt.Fprintln(tw, "SENDER\tSPACE\tHELD AT\tSUBJECT\tMESSAGE-ID")
				}
				for _, c := range customers {
					if c.Status != identify.StatusPending {
						continue
					}
					held, err := store.Holds(ctx, c.Email)
					if err != nil {
						return err
					}
					for _, h := range held {
						l := heldLine{c.Email, h.Space, h.MessageID, h.Subject, h.Channel, h.HeldAt}
						if asJSON {
							if err := enc.Encode(l); err != nil {
								return err
							}
							continue
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Sender, l.Space, l.HeldAt.UTC().Format(time.RFC3339), dash(l.Subject), l.MessageID)
					}
				}
				return tw.Flush()
			},
		},
	}
	return dispatch(ctx, "holds", subs, args, stdout, stderr)
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	subs := map[string]*subcommand{
		"resend": {
			usage: "resend ADDRESS   (mail a new verification link now, ignoring the cooldown)",
			nargs: 1,
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				addr, err := normalizeArg(fs.Arg(0))
				if err != nil {
					return err
				}
				v, err := a.verifier(nil, nil)
				if err != nil {
					return err
				}
				if err := v.Resend(ctx, addr); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s: new verification link queued\n", addr)
				return nil
			},
		},
	}
	return dispatch(ctx, "verify", subs, args, stdout, stderr)
}
