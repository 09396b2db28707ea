package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/metrics"
	"mailgw/verify"
)

// errHelp ends a command that printed its help.
var errHelp = errors.New("help requested")

// globalFlags are the flags every command that touches Redis takes.
type globalFlags struct {
	config string
}

func (g *globalFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "config", "", "config `file` (default $MAILGW_CONFIG, else the built-in demo)")
}

// parseFlags parses args, mapping flag errors to usage errors.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageError{err}
	}
	return nil
}

// parseGlobalOnly parses the arguments of a command that takes the global
// flags and nothing else.
func parseGlobalOnly(name string, args []string, stderr io.Writer) (globalFlags, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var g globalFlags
	g.register(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return g, err
	}
	if fs.NArg() > 0 {
		return g, usagef("unexpected arguments %q", fs.Args())
	}
	return g, nil
}

// app is what a command runs with: the config, a logger and Redis.
type app struct {
	cfg      *config.Config
	log      zerolog.Logger
	rdb      redis.UniversalClient
	embedded *miniredis.Miniredis
	demo     bool // running on the built-in demo config
}

// loadConfig reads --config, else $MAILGW_CONFIG, else the demo config.
func loadConfig(path string) (*config.Config, bool, error) {
	if path == "" {
		path = os.Getenv("MAILGW_CONFIG")
	}
	if path == "" {
		cfg := config.Demo()
		config.ApplyEnv(cfg, os.Getenv)
		if err := cfg.Validate(); err != nil {
			return nil, true, usageError{err}
		}
		return cfg, true, nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, false, usageError{err}
	}
	return cfg, false, nil
}

func newLogger(stderr io.Writer) zerolog.Logger {
	return zerolog.New(stderr).With().Timestamp().Logger()
}

// redisLog routes go-redis's own messages (failed dials while Redis is
// down) into the JSON log instead of plain lines on stderr.
type redisLog struct{ log zerolog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.log.Warn().Str("component", "redis").Msg(fmt.Sprintf(format, v...))
}

// openApp loads the config and connects to Redis, or starts the embedded
// one. seed writes the config's directory entries (customers, organizations,
// agents, space membership) first.
func openApp(ctx context.Context, g globalFlags, stderr io.Writer, seed bool) (*app, error) {
	cfg, demo, err := loadConfig(g.config)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: newLogger(stderr), demo: demo}
	redis.SetLogger(redisLog{a.log})
	if demo {
		a.log.Warn().Msg("no config given: using the built-in demo config (see mailgw check)")
	}
	if cfg.Redis.URL == "" {
		a.embedded, err = miniredis.Run()
		if err != nil {
			return nil, fmt.Errorf("start embedded redis: %w", err)
		}
		a.rdb = redis.NewClient(&redis.Options{Addr: a.embedded.Addr()})
		a.log.Warn().Msg("no redis.url: using an EMBEDDED in-process Redis; NOTHING SURVIVES A RESTART")
	} else {
		a.rdb, err = connect(cfg.Redis.URL)
		if err != nil {
			return nil, usageError{err}
		}
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.Redis.Timeout.D())
	defer cancel()
	if err := a.rdb.Ping(pctx).Err(); err != nil {
		a.close()
		return nil, fmt.Errorf("redis %s: %w", config.RedactURL(cfg.Redis.URL), err)
	}
	if seed {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := identify.NewDirectory(a.rdb, cfg.Redis.Prefix, cfg.Redis.Timeout.D()).Seed(sctx, cfg); err != nil {
			a.close()
			return nil, fmt.Errorf("seed directory: %w", err)
		}
	}
	return a, nil
}

// connect understands redis://, rediss:// and unix:// URLs for a single
// server; Sentinel and Cluster go through UniversalClient options.
func connect(url string) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	if opt.Protocol == 0 {
		// RESP2 unless the URL asks otherwise (?protocol=3): mailgw uses
		// no push notifications, and with RESP3 go-redis looks for them
		// before every reply it reads, some 4 % of the CPU under load.
		opt.Protocol = 2
	}
	return redis.NewClient(opt), nil
}

func (a *app) close() {
	if a.rdb != nil {
		a.rdb.Close()
	}
	if a.embedded != nil {
		a.embedded.Close()
	}
}

// verifier builds the verification stage; sender is nil except in serve,
// the one process that delivers the outbox.
func (a *app) verifier(sender verify.Sender, reg *metrics.Registry) (*verify.Service, error) {
	return verify.New(a.cfg, a.rdb, ingest.NewStore(a.cfg, a.rdb), a.log, verify.Options{
		Prefix:    a.cfg.Redis.Prefix,
		Timeout:   a.cfg.Redis.Timeout.D(),
		PublicURL: a.cfg.HTTP.PublicURL,
		From:      a.cfg.Outbound.From,
		Hostname:  a.cfg.Hostname,
		Sender:    sender,
		Metrics:   reg,
	})
}

func (a *app) directory() *identify.Directory {
	return identify.NewDirectory(a.rdb, a.cfg.Redis.Prefix, a.cfg.Redis.Timeout.D())
}
