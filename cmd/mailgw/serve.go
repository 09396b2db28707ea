package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"

	"mailgw/ingest"
	"mailgw/smtp"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var g globalFlags
	g.register(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	a, err := openApp(ctx, g, stderr, true)
	if err != nil {
		return err
	}
	defer a.close()
	h, err := ingest.New(a.cfg, a.rdb, a.log, ingest.Options{})
	if err != nil {
		return usageError{err}
	}
	srv, err := smtp.New(a.cfg.SMTP, a.cfg.Hostname, a.cfg.Spaces, h, a.log)
	if err != nil {
		return usageError{err}
	}
	ln, err := smtp.Listen(a.cfg.SMTP)
	if err != nil {
		return err
	}
	a.log.Info().Str("listen", ln.Addr().String()).Bool("lmtp", a.cfg.SMTP.LMTP).Msg("smtp: listening")
	if a.demo {
		printDemoHint(stdout, ln.Addr(), a.cfg.Spaces[0].Addresses[0])
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	a.log.Info().Dur("grace", a.cfg.SMTP.ShutdownGrace.D()).Msg("shutting down: draining transactions in flight")
	dctx, cancel := context.WithTimeout(context.Background(), a.cfg.SMTP.ShutdownGrace.D())
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		a.log.Warn().Err(err).Msg("drain incomplete: remaining connections closed")
	}
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	a.log.Info().Msg("stopped")
	return nil
}

func printDemoHint(w io.Writer, addr net.Addr, support string) {
	host, port, _ := net.SplitHostPort(addr.String())
	domain := support[strings.LastIndexByte(support, '@')+1:]
	fmt.Fprintf(w, `mailgw demo is listening on %s (embedded Redis: nothing is kept).
Send it a request from a known customer:

  swaks --server %s --port %s --from carol@%s --to %s --header 'Subject: Printer on fire'

Each decision is logged on stderr as one JSON line.
`, addr, host, port, domain, support)
}
