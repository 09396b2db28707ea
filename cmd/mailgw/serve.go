package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/imap"
	"mailgw/ingest"
	"mailgw/metrics"
	"mailgw/route"
	"mailgw/smtp"
	"mailgw/verify"
	"mailgw/web"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g, err := parseGlobalOnly("serve", args, stderr)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, g, stderr, true)
	if err != nil {
		return err
	}
	defer a.close()
	cfg := a.cfg
	setMemoryLimit(a)
	if path := os.Getenv("MAILGW_CPUPROFILE"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop()
	}

	reg := metrics.NewRegistry()
	metrics.RegisterProcess(reg)
	registerRedisMetrics(reg, a.rdb)
	var sender verify.Sender
	if cfg.Outbound.Smarthost != "" {
		if sender, err = verify.NewSmarthost(cfg.Outbound, cfg.Hostname, os.Getenv(cfg.Outbound.PasswordEnv)); err != nil {
			return usageError{err}
		}
	}
	vs, err := a.verifier(sender, reg)
	if err != nil {
		return usageError{err}
	}
	adminToken, err := readAdminToken(cfg.HTTP.AdminTokenEnv)
	if err != nil {
		return usageError{err}
	}
	store := ingest.NewStore(cfg, a.rdb)
	if err := store.LoadScripts(ctx); err != nil {
		return err
	}
	logWriter := route.NewLogWriter(store, a.log, route.NewMetrics(reg))
	batchCtx, stopBatcher := context.WithCancel(context.Background())
	defer stopBatcher()
	batcher := route.NewBatcher(batchCtx, a.rdb, 2, cfg.Redis.Timeout.D())
	h, err := ingest.New(cfg, a.rdb, a.log, ingest.Options{Verifier: vs, LogWriter: logWriter, Batcher: batcher, Metrics: reg})
	if err != nil {
		return usageError{err}
	}
	srv, err := smtp.New(cfg.SMTP, cfg.Hostname, cfg.Spaces, h, a.log)
	if err != nil {
		return usageError{err}
	}
	srv.Instrument(reg)
	smtpLn, err := smtp.Listen(cfg.SMTP)
	if err != nil {
		return err
	}
	httpLn, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		smtpLn.Close()
		return fmt.Errorf("http: %w", err)
	}
	var accepting atomic.Bool
	accepting.Store(true)
	checks := map[string]web.Check{
		"redis": func(ctx context.Context) error { return a.rdb.Ping(ctx).Err() },
		"smtp": func(context.Context) error {
			if !accepting.Load() {
				return errors.New("not accepting")
			}
			return nil
		},
	}
	httpSrv := &http.Server{
		Handler: web.New(web.Options{
			Verifier: vs, Ready: checks, Metrics: reg,
			AdminToken: adminToken, DecisionLog: store,
		}, a.log).Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
	}
	a.log.Info().Str("smtp", smtpLn.Addr().String()).Str("http", httpLn.Addr().String()).Bool("lmtp", cfg.SMTP.LMTP).Msg("listening")
	if a.demo {
		printDemoHint(stdout, smtpLn.Addr(), cfg.Spaces[0].Addresses[0])
	}

	workCtx, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	go vs.Run(workCtx, time.Second)
	pollersDone, err := startPollers(workCtx, a, h, reg)
	if err != nil {
		return err
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(smtpLn) }()
	go func() {
		if err := httpSrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			served <- fmt.Errorf("http: %w", err)
		}
	}()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	accepting.Store(false)
	a.log.Info().Dur("grace", cfg.SMTP.ShutdownGrace.D()).Msg("shutting down: draining transactions in flight")
	dctx, cancel := context.WithTimeout(context.Background(), cfg.SMTP.ShutdownGrace.D())
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		a.log.Warn().Err(err).Msg("drain incomplete: remaining connections closed")
	}
	if err := httpSrv.Shutdown(dctx); err != nil {
		a.log.Warn().Err(err).Msg("http drain incomplete")
	}
	stopWork()
	// Each poller finishes the message in hand: its write and its flag.
	select {
	case <-pollersDone:
	case <-dctx.Done():
		a.log.Warn().Msg("imap pollers did not stop in time")
	}
	logWriter.Close(dctx)
	a.log.Info().Msg("stopped")
	return nil
}

// minAdminToken is the shortest admin token accepted: the pages show who
// wrote in and why, so a guessable token is refused at start.
const minAdminToken = 16

// readAdminToken reads the admin token from the variable http.admin_token_env
// names; "" when none is configured. A configured but short or empty
// token stops the start rather than leaving the pages open or silently off.
func readAdminToken(env string) (string, error) {
	if env == "" {
		return "", nil
	}
	tok := strings.TrimSpace(os.Getenv(env))
	if len(tok) < minAdminToken {
		return "", fmt.Errorf("http.admin_token_env: $%s must hold a token of at least %d characters", env, minAdminToken)
	}
	return tok, nil
}

// registerRedisMetrics exposes the client's connection pool: timeouts
// and a pool at its limit explain 451s before Redis itself looks unwell.
func registerRedisMetrics(reg *metrics.Registry, rdb redis.UniversalClient) {
	stat := func(read func(*redis.PoolStats) uint32) func() float64 {
		return func() float64 { return float64(read(rdb.PoolStats())) }
	}
	reg.CounterFunc("mailgw_redis_pool_hits_total", "Times a free Redis connection was found in the pool.", stat(func(s *redis.PoolStats) uint32 { return s.Hits }))
	reg.CounterFunc("mailgw_redis_pool_misses_total", "Times no free Redis connection was in the pool and one was dialled.", stat(func(s *redis.PoolStats) uint32 { return s.Misses }))
	reg.CounterFunc("mailgw_redis_pool_timeouts_total", "Times waiting for a Redis connection from the pool timed out.", stat(func(s *redis.PoolStats) uint32 { return s.Timeouts }))
	reg.GaugeFunc("mailgw_redis_pool_connections", "Redis connections in the pool.", stat(func(s *redis.PoolStats) uint32 { return s.TotalConns }))
	reg.GaugeFunc("mailgw_redis_pool_idle_connections", "Idle Redis connections in the pool.", stat(func(s *redis.PoolStats) uint32 { return s.IdleConns }))
}

// setMemoryLimit gives the garbage collector a target near what the
// in-flight budget allows, so that garbage from large messages does not
// pile up until the heap has doubled. Below that limit the collector runs
// at a quarter of its default rate: a gateway's heap is mostly short-lived
// message buffers, and collecting them less often saves CPU on every
// message. GOMEMLIMIT and GOGC, if set, win.
func setMemoryLimit(a *app) {
	if os.Getenv("GOMEMLIMIT") == "" {
		limit := a.cfg.SMTP.MaxInflightBytes + 64<<20
		debug.SetMemoryLimit(limit)
		a.log.Info().Int64("bytes", limit).Msg("memory limit for the garbage collector")
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

// startCPUProfile writes a CPU profile to path until the returned function
// is called: for measuring a running server under real load.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// startPollers runs one poller per configured mailbox; the returned
// channel closes when all have stopped after ctx ends.
func startPollers(ctx context.Context, a *app, h *ingest.Handler, reg *metrics.Registry) (<-chan struct{}, error) {
	var wg sync.WaitGroup
	for _, m := range a.cfg.IMAP {
		pw, err := imap.Password(m)
		if err != nil {
			return nil, usageError{err}
		}
		p := imap.New(m, pw, h, a.rdb, a.log, imap.Options{
			Prefix:          a.cfg.Redis.Prefix,
			RedisTimeout:    a.cfg.Redis.Timeout.D(),
			MaxMessageBytes: a.cfg.SMTP.MaxMessageBytes,
			Metrics:         reg,
		})
		wg.Go(func() { p.Run(ctx) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done, nil
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
