// Command imapprof runs mailgw's IMAP poller in-process, wired as
// `mailgw serve` wires it (ingest with the background decision-log writer
// and the Redis batcher), until the IT stream holds -n entries, and says
// where the time went: in ingest.Handle (parse, decide, Redis) or waiting
// on the IMAP server, per IMAP command, as seen on the wire. With
// -cpuprofile it writes a CPU profile for `go tool pprof`.
//
// With -workers N it instead reads every message of the mailbox first
// (BODY.PEEK[], nothing changes) and then times only ingest.Handle on them
// with N goroutines: what the poller could reach if it handled the
// messages of a batch concurrently.
//
// It is an analysis aid for bench/imap.sh (docs/benchmarks.md, IMAP):
//
//	go run ./bench/imapprof -config mailgw.yaml -n 5000 -cpuprofile cpu.out
//	go run ./bench/imapprof -config mailgw.yaml -workers 8
//
// The config is bench/imap.sh's (KEEP=1 keeps it); the mailbox must be
// filled first (bench/imapload append) and Redis flushed.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/imap"
	"mailgw/ingest"
	"mailgw/route"
)

func main() {
	cfgPath := flag.String("config", "", "mailgw config with one imap: entry")
	n := flag.Int64("n", 5000, "stream entries to wait for")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to `file`")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after")
	workers := flag.Int("workers", 0, "only time ingest.Handle on the mailbox's messages, with `N` goroutines")
	flag.Parse()
	var err error
	if *workers > 0 {
		err = ingestOnly(*cfgPath, *workers, *timeout)
	} else {
		err = run(*cfgPath, *n, *cpuprofile, *timeout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "imapprof: %v\n", err)
		os.Exit(1)
	}
}

// setup is serve's wiring of ingest: the directory seeded, the decision
// log written in the background, Redis commands batched.
type setup struct {
	cfg       *config.Config
	rdb       *redis.Client
	h         *ingest.Handler
	logWriter *route.LogWriter
}

func wire(ctx context.Context, cfgPath string) (*setup, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	if len(cfg.IMAP) != 1 {
		return nil, fmt.Errorf("want one imap: entry, have %d", len(cfg.IMAP))
	}
	opt, err := redis.ParseURL(cfg.Redis.URL)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opt)
	if err := identify.NewDirectory(rdb, cfg.Redis.Prefix, cfg.Redis.Timeout.D()).Seed(ctx, cfg); err != nil {
		rdb.Close()
		return nil, err
	}
	log := zerolog.Nop()
	logWriter := route.NewLogWriter(ingest.NewStore(cfg, rdb), log, nil)
	batcher := route.NewBatcher(ctx, rdb, 2, cfg.Redis.Timeout.D())
	h, err := ingest.New(cfg, rdb, log, ingest.Options{LogWriter: logWriter, Batcher: batcher})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &setup{cfg: cfg, rdb: rdb, h: h, logWriter: logWriter}, nil
}

func run(cfgPath string, n int64, cpuprofile string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := wire(ctx, cfgPath)
	if err != nil {
		return err
	}
	defer st.rdb.Close()
	cfg, rdb, h, logWriter, log := st.cfg, st.rdb, st.h, st.logWriter, zerolog.Nop()
	m := cfg.IMAP[0]
	pw, err := imap.Password(m)
	if err != nil {
		return err
	}
	th := &timedHandler{h: h}
	wire := newWireTimer()
	p := imap.New(m, pw, th, rdb, log, imap.Options{
		Prefix:          cfg.Redis.Prefix,
		RedisTimeout:    cfg.Redis.Timeout.D(),
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		Debug:           wire,
	})
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	stream := cfg.Redis.Prefix + "{IT}:requests"
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() { p.Run(pctx) })
	for {
		l, err := rdb.XLen(ctx, stream).Result()
		if err != nil {
			return err
		}
		if l >= n {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	wall := time.Since(start)
	stop()
	wg.Wait()
	logWriter.Close(context.Background())

	th.mu.Lock()
	defer th.mu.Unlock()
	fmt.Printf("%d messages in %v: %.0f msg/s\n", n, wall.Round(time.Millisecond), float64(n)/wall.Seconds())
	fmt.Printf("ingest.Handle: %d calls, %v in all (%.0f%% of the wall time), %v each\n",
		th.calls, th.total.Round(time.Millisecond), 100*th.total.Seconds()/wall.Seconds(), (th.total / time.Duration(max(th.calls, 1))).Round(time.Microsecond))
	wire.report(wall)
	return nil
}

// ingestOnly reads the whole mailbox, then runs ingest.Handle on every
// message with the given number of goroutines.
func ingestOnly(cfgPath string, workers int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := wire(ctx, cfgPath)
	if err != nil {
		return err
	}
	defer st.rdb.Close()
	m := st.cfg.IMAP[0]
	pw, err := imap.Password(m)
	if err != nil {
		return err
	}
	c, err := imapclient.DialInsecure(m.Addr, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(m.Username, pw).Wait(); err != nil {
		return err
	}
	if _, err := c.Select(m.Mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return err
	}
	var all goimap.UIDSet
	all.AddRange(1, 0)
	bufs, err := c.Fetch(all, &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		return err
	}
	raws := make(chan []byte, len(bufs))
	for _, b := range bufs {
		raws <- b.BodySection[0].Bytes
	}
	close(raws)
	env := ingest.Envelope{Channel: ingest.ChannelIMAP, Recipients: []string{m.Address}, RemoteAddr: m.Addr}
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for raw := range raws {
				st.h.Handle(ctx, env, raw)
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	st.logWriter.Close(context.Background())
	fmt.Printf("ingest.Handle on %d messages with %d goroutines: %v, %.0f msg/s\n", len(bufs), workers, wall.Round(time.Millisecond), float64(len(bufs))/wall.Seconds())
	return nil
}

// timedHandler adds up the time spent in Handle.
type timedHandler struct {
	h     imap.Handler
	mu    sync.Mutex
	calls int
	total time.Duration
}

func (t *timedHandler) Handle(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result {
	start := time.Now()
	r := t.h.Handle(ctx, env, raw)
	d := time.Since(start)
	t.mu.Lock()
	t.calls++
	t.total += d
	t.mu.Unlock()
	return r
}

// wireTimer reads the poller's IMAP traffic (Options.Debug) and times each
// command from the moment it is written until its tagged answer is read.
// Dovecot's answers also say how long it worked on the command
// ("OK ... (0.001 + 0.000 + 0.002 secs)").
type wireTimer struct {
	mu      sync.Mutex
	pw      *io.PipeWriter
	pending map[string]pendingCmd // tag -> command
	stats   map[string]*cmdStat
	done    chan struct{}
}

type pendingCmd struct {
	name  string
	start time.Time
}

type cmdStat struct {
	count  int
	wall   time.Duration
	server time.Duration
}

var (
	commandLine = regexp.MustCompile(`^(T\d+) (UID [A-Z]+|[A-Z]+)`)
	serverSecs  = regexp.MustCompile(`\(([0-9.]+) \+ ([0-9.]+)(?: \+ ([0-9.]+))? secs\)`)
)

func newWireTimer() *wireTimer {
	pr, pw := io.Pipe()
	w := &wireTimer{pw: pw, pending: map[string]pendingCmd{}, stats: map[string]*cmdStat{}, done: make(chan struct{})}
	go w.scan(pr)
	return w
}

// Write receives both directions; lines are told apart by their form:
// commands start with the client's tag, answers with "* ", "+ " or a tag
// followed by OK, NO or BAD.
func (w *wireTimer) Write(b []byte) (int, error) { return w.pw.Write(b) }

func (w *wireTimer) scan(r io.Reader) {
	defer close(w.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Text()
		now := time.Now()
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[0], "T") && (f[1] == "OK" || f[1] == "NO" || f[1] == "BAD") {
			w.mu.Lock()
			if p, ok := w.pending[f[0]]; ok {
				delete(w.pending, f[0])
				s := w.stats[p.name]
				if s == nil {
					s = &cmdStat{}
					w.stats[p.name] = s
				}
				s.count++
				s.wall += now.Sub(p.start)
				if m := serverSecs.FindStringSubmatch(line); m != nil {
					for _, v := range m[1:] {
						var x float64
						fmt.Sscan(v, &x)
						s.server += time.Duration(x * float64(time.Second))
					}
				}
			}
			w.mu.Unlock()
			continue
		}
		if m := commandLine.FindStringSubmatch(line); m != nil {
			w.mu.Lock()
			w.pending[m[1]] = pendingCmd{name: m[2], start: now}
			w.mu.Unlock()
		}
	}
}

func (w *wireTimer) report(wall time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.stats))
	for k := range w.stats {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return w.stats[names[i]].wall > w.stats[names[j]].wall })
	fmt.Println("IMAP commands, from sending to the tagged answer (FETCH overlaps with ingest.Handle):")
	for _, k := range names {
		s := w.stats[k]
		fmt.Printf("  %-12s %5d × %8v = %8v (%4.1f%% of the wall time); Dovecot's own timing %v\n", k, s.count,
			(s.wall / time.Duration(s.count)).Round(time.Microsecond), s.wall.Round(time.Millisecond),
			100*s.wall.Seconds()/wall.Seconds(), s.server.Round(time.Millisecond))
	}
}
