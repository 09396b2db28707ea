package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"mailgw/identify/mailaddr"
	"mailgw/ingest"
	"mailgw/route"
)

// followWait is how long one blocking read waits before it is issued again;
// a bounded wait keeps Ctrl-C and a lost connection noticed.
const followWait = 5 * time.Second

func runLog(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("log", flag.ContinueOnError)
	var g globalFlags
	g.register(fs)
	var f route.LogFilter
	follow := fs.Bool("follow", false, "keep printing new decisions")
	fs.StringVar(&f.Space, "space", "", "only decisions for this space `KEY`")
	fs.StringVar(&f.Reason, "reason", "", "only decisions with this `reason` code")
	fs.StringVar(&f.Outcome, "outcome", "", "only decisions with this outcome (queued, held, ignored, rejected, deferred)")
	fs.StringVar(&f.From, "from", "", "only decisions about mail from this `address`")
	fs.StringVar(&f.MessageID, "message-id", "", "only decisions about this Message-ID (without angle brackets)")
	n := fs.Int64("n", 50, "how many of the newest matching decisions to print first")
	asJSON := fs.Bool("json", false, "print one JSON object per decision")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if f.From != "" {
		na, err := mailaddr.Normalize(f.From)
		if err != nil {
			return usageError{err}
		}
		f.From = na
	}
	f.MessageID = route.BareMessageID(f.MessageID)
	a, err := openApp(ctx, g, stderr, false)
	if err != nil {
		return err
	}
	defer a.close()
	store := ingest.NewStore(a.cfg, a.rdb)
	print := func(e route.Entry) error {
		if *asJSON {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintf(stdout, "%s  %-8s %-9s %-22s %-6s %-8s %s  %s  %s\n",
			e.Time.UTC().Format(time.RFC3339), e.Channel, e.Outcome, e.Reason, dash(e.Space), dash(e.Request), dash(e.From), e.MessageID, e.Detail)
		return err
	}
	entries, last, err := store.LastLog(ctx, *n, f.Match)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := print(e); err != nil {
			return err
		}
	}
	if !*follow {
		return nil
	}
	for {
		batch, err := store.ReadLog(ctx, last, 100, followWait)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, e := range batch {
			last = e.ID
			if f.Match(e) {
				if err := print(e); err != nil {
					return err
				}
			}
		}
	}
}

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	var g globalFlags
	g.register(fs)
	space := fs.String("space", "", "the space `KEY` whose request stream to follow (required)")
	n := fs.Int64("n", 10, "how many of the newest entries to print first")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *space == "" {
		return usagef("--space is required")
	}
	a, err := openApp(ctx, g, stderr, false)
	if err != nil {
		return err
	}
	defer a.close()
	key := strings.ToUpper(*space)
	known := false
	for _, s := range a.cfg.Spaces {
		known = known || s.Key == key
	}
	if !known {
		return usagef("no space %q in the config", *space)
	}
	store := ingest.NewStore(a.cfg, a.rdb)
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	msgs, last, err := store.LastStream(ctx, key, *n)
	if err != nil {
		return err
	}
	for {
		for _, m := range msgs {
			last = m.ID
			m.Values["stream_id"] = m.ID
			if err := enc.Encode(m.Values); err != nil {
				return err
			}
		}
		msgs, err = store.ReadStream(ctx, key, last, 100, followWait)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
	}
}
