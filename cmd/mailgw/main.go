// Command mailgw is the email-ingestion gateway's command line: it parses
// flags, loads the config and hands over to the packages that do the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses (DESIGN §7).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// usageError is bad usage or a bad config: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

const usage = `mailgw: email-ingestion gateway for service desks

Usage:
  mailgw serve   [--config FILE]
  mailgw replay  [--config FILE] [--to ADDR] [--json] [--dry-run] PATH...
  mailgw check   [--config FILE]
  mailgw customers add|import|list|show|disable|enable|remove ...
  mailgw orgs    add|add-member|add-domain|link|list ...
  mailgw holds   list [--json]
  mailgw verify  resend ADDRESS
  mailgw log     [--config FILE] [--follow] [--space KEY] [--reason R] [--from ADDR] [--message-id ID] [-n N] [--json]
  mailgw tail    [--config FILE] --space KEY [-n N]

Without --config (or MAILGW_CONFIG) mailgw uses its built-in demo config;
without a Redis URL (redis.url or MAILGW_REDIS_URL) it uses an embedded
Redis whose data is lost when the command ends.
Run "mailgw COMMAND --help" for a command's flags.
`

type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

var commands = map[string]command{
	"serve":     runServe,
	"replay":    runReplay,
	"check":     runCheck,
	"customers": runCustomers,
	"orgs":      runOrgs,
	"holds":     runHolds,
	"verify":    runVerify,
	"log":       runLog,
	"tail":      runTail,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "mailgw: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "mailgw %s: %v\n", args[0], err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "mailgw %s: %v\n", args[0], err)
		return exitRuntime
	}
}
