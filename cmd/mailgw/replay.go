package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/replay"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type replayDecision struct {
	Space   string `json:"space"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason"`
	Request string `json:"request"`
}

type replayLine struct {
	File      string           `json:"file"`
	MessageID string           `json:"message_id"`
	From      string           `json:"from"`
	Decisions []replayDecision `json:"decisions"`
	Error     string           `json:"error,omitempty"`
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var g globalFlags
	g.register(fs)
	var to stringList
	fs.Var(&to, "to", "deliver to this `address` instead of the header recipients (repeatable)")
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	dryRun := fs.Bool("dry-run", false, "decide without writing anything")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: mailgw replay [--config FILE] [--to ADDR] [--json] [--dry-run] PATH...")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usagef("no files or folders to replay")
	}
	files, err := replay.Files(fs.Args())
	if err != nil {
		return usageError{err}
	}
	a, err := openApp(ctx, g, stderr, true)
	if err != nil {
		return err
	}
	defer a.close()
	opts := ingest.Options{DryRun: *dryRun}
	if !*dryRun {
		v, err := a.verifier(nil, nil)
		if err != nil {
			return usageError{err}
		}
		opts.Verifier = v
	}
	h, err := ingest.New(a.cfg, a.rdb, a.log, opts)
	if err != nil {
		return usageError{err}
	}

	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	if !*asJSON {
		fmt.Fprintln(tw, "FILE\tSPACE\tOUTCOME\tREASON\tREQUEST\tFROM")
	}
	failed := 0
	err = replay.Run(ctx, h, files, to, a.cfg.SMTP.MaxMessageBytes, func(r replay.Result) error {
		line := replayLine{File: r.File, MessageID: r.MessageID, From: r.From, Decisions: []replayDecision{}}
		if r.Err != nil {
			failed++
			line.Error = r.Err.Error()
			a.log.Error().Err(r.Err).Str("file", r.File).Msg("replay: cannot read file")
		}
		for _, d := range r.Decisions {
			if d.Outcome == identify.Deferred {
				failed++
			}
			line.Decisions = append(line.Decisions, replayDecision{d.Space, string(d.Outcome), string(d.Reason), d.Request})
		}
		if *asJSON {
			return enc.Encode(line)
		}
		if line.Error != "" {
			fmt.Fprintf(tw, "%s\t-\terror\t%s\t\t\n", line.File, line.Error)
		}
		for _, d := range line.Decisions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", line.File, dash(d.Space), d.Outcome, d.Reason, dash(d.Request), dash(line.From))
		}
		return nil
	})
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d message(s) could not be read or were deferred; see the log above", failed)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
