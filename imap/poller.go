// Package imap drains support mailboxes over IMAP (RFC 9051, RFC 3501) with
// go-imap v2: it searches once for unseen mail and works through it by UID
// in batches (RFC 4315 UIDPLUS where the server has it), runs each batch's
// messages through ingest concurrently, as if they had been sent to the
// mailbox's support address, one sender's messages in order, and only
// after Redis took a message moves it (RFC 6851 MOVE) to the processed
// folder or marks it \Seen; rejected mail goes to the rejected folder.
// A lease in Redis makes one instance drain a mailbox at a time; IDLE
// (RFC 2177) wakes it for new mail, with a poll as fallback.
package imap

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/metrics"
)

// Handler is the part of ingest.Handler the poller needs. The poller
// calls it from several goroutines at once.
type Handler interface {
	Handle(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result
}

// Options tune a Poller; zero values get defaults.
type Options struct {
	Prefix          string        // Redis key prefix
	RedisTimeout    time.Duration // per Redis call
	MaxMessageBytes int64
	LeaseTTL        time.Duration // 15 s: how soon another instance takes over a dead one's mailbox
	BackoffMin      time.Duration // 1 s
	BackoffMax      time.Duration // 2 min
	CommandTimeout  time.Duration // 2 min: a server silent for longer is taken as gone
	Instance        string        // lease owner; default host, pid and a random suffix
	Debug           io.Writer     // raw IMAP traffic, for tests under -v
	// Metrics receives the poller's gauges and counters; nil counts nothing.
	Metrics *metrics.Registry
}

// Poller drains one configured mailbox.
type Poller struct {
	cfg      config.IMAP
	password string
	h        Handler
	rdb      redis.UniversalClient
	opt      Options
	log      zerolog.Logger
	metrics  pollerMetrics
}

// pollerMetrics are shared by the pollers of a process, one series per
// mailbox name.
type pollerMetrics struct {
	connected     *metrics.GaugeVec
	caughtUp      *metrics.GaugeVec
	sessionErrors *metrics.CounterVec
	failures      *metrics.CounterVec
}

func newPollerMetrics(r *metrics.Registry) pollerMetrics {
	return pollerMetrics{
		connected: r.GaugeVec("mailgw_imap_connected",
			"1 while the poller holds the mailbox's lease and a selected IMAP session, else 0.", "mailbox"),
		caughtUp: r.GaugeVec("mailgw_imap_caught_up_timestamp_seconds",
			"When the poller last found nothing left to take from the mailbox, as a Unix time; alert when it falls behind.", "mailbox"),
		sessionErrors: r.CounterVec("mailgw_imap_session_errors_total",
			"IMAP sessions that ended in an error and were reconnected after a backoff.", "mailbox"),
		failures: r.CounterVec("mailgw_imap_message_failures_total",
			"Messages that could not be handled, by whether the failure made them poison (moved aside).", "mailbox", "poison"),
	}
}

// Password reads the mailbox password from the environment or a file.
func Password(m config.IMAP) (string, error) {
	if m.PasswordFile != "" {
		b, err := os.ReadFile(m.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("imap: %s: password_file: %w", m.Name, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	pw, ok := os.LookupEnv(m.PasswordEnv)
	if !ok {
		return "", fmt.Errorf("imap: %s: environment variable %s is not set", m.Name, m.PasswordEnv)
	}
	return pw, nil
}

// New returns a poller for one mailbox.
func New(m config.IMAP, password string, h Handler, rdb redis.UniversalClient, log zerolog.Logger, opt Options) *Poller {
	if m.Workers <= 0 {
		m.Workers = config.DefaultIMAPWorkers
	}
	if opt.Prefix == "" {
		opt.Prefix = "mailgw:"
	}
	if opt.RedisTimeout <= 0 {
		opt.RedisTimeout = 5 * time.Second
	}
	if opt.MaxMessageBytes <= 0 {
		opt.MaxMessageBytes = config.DefaultMaxMessageBytes
	}
	if opt.LeaseTTL <= 0 {
		opt.LeaseTTL = 15 * time.Second
	}
	if opt.BackoffMin <= 0 {
		opt.BackoffMin = time.Second
	}
	if opt.BackoffMax <= 0 {
		opt.BackoffMax = 2 * time.Minute
	}
	if opt.CommandTimeout <= 0 {
		opt.CommandTimeout = 2 * time.Minute
	}
	if opt.Instance == "" {
		host, _ := os.Hostname()
		var r [4]byte
		_, _ = rand.Read(r[:])
		opt.Instance = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(r[:]))
	}
	p := &Poller{cfg: m, password: password, h: h, rdb: rdb, opt: opt,
		log:     log.With().Str("component", "imap").Str("mailbox", m.Name).Logger(),
		metrics: newPollerMetrics(opt.Metrics)}
	// The series exist from the start, so an alert on a mailbox that never
	// connects has something to fire on.
	p.metrics.connected.Set(0, m.Name)
	return p
}

func (p *Poller) key(what string) string { return p.opt.Prefix + "imap:" + p.cfg.Name + ":" + what }

func (p *Poller) rctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, p.opt.RedisTimeout)
}

// Run drains the mailbox until ctx ends, reconnecting with exponential
// backoff and jitter. A message being handled when ctx ends is finished
// (its write and its flag or move), so a stop loses and doubles nothing.
func (p *Poller) Run(ctx context.Context) {
	backoff := p.opt.BackoffMin
	for ctx.Err() == nil {
		leased, err := p.acquire(ctx)
		switch {
		case err != nil:
			p.log.Warn().Err(err).Msg("lease")
		case !leased:
			p.sleep(ctx, jitter(p.opt.LeaseTTL/3))
			continue
		default:
			progressed, err := p.session(ctx)
			p.releaseLease()
			if ctx.Err() != nil {
				return
			}
			if progressed {
				backoff = p.opt.BackoffMin
			}
			p.log.Warn().Err(err).Dur("retry_in", backoff).Msg("session ended")
			p.metrics.sessionErrors.Inc(p.cfg.Name)
		}
		p.sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, p.opt.BackoffMax)
	}
}

func (p *Poller) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// jitter spreads retries of several instances: d ± 25 %.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + mathrand.Float64()/2))
}

var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// acquireScript takes a free lease, or one this instance still holds (after
// a Redis outage it need not wait for its own lease to expire).
var acquireScript = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

func (p *Poller) acquire(ctx context.Context) (bool, error) {
	ctx, cancel := p.rctx(ctx)
	defer cancel()
	n, err := acquireScript.Run(ctx, p.rdb, []string{p.key("lease")}, p.opt.Instance, p.opt.LeaseTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("imap: acquire lease: %w", err)
	}
	return n == 1, nil
}

func (p *Poller) renew(ctx context.Context) (bool, error) {
	ctx, cancel := p.rctx(ctx)
	defer cancel()
	n, err := renewScript.Run(ctx, p.rdb, []string{p.key("lease")}, p.opt.Instance, p.opt.LeaseTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("imap: renew lease: %w", err)
	}
	return n == 1, nil
}

func (p *Poller) releaseLease() {
	ctx, cancel := p.rctx(context.Background())
	defer cancel()
	_ = releaseScript.Run(ctx, p.rdb, []string{p.key("lease")}, p.opt.Instance).Err()
}

// errLeaseLost ends a session whose lease another instance now holds.
var errLeaseLost = errors.New("imap: lease lost")

// session holds the lease while it connects and drains the mailbox; it
// reports whether it moved any message on.
func (p *Poller) session(ctx context.Context) (progressed bool, err error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		t := time.NewTicker(p.opt.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				ok, err := p.renew(sctx)
				if err == nil && !ok {
					cancel(errLeaseLost)
					return
				}
				// A failed renewal (Redis down) keeps polling: the lease
				// expires on its own if Redis stays away, and nothing can
				// be written meanwhile anyway.
			}
		}
	}()

	newMail := make(chan struct{}, 1)
	c, err := p.dial(newMail)
	if err != nil {
		return false, err
	}
	defer c.Close()
	if err := c.Login(p.cfg.Username, p.password).Wait(); err != nil {
		return false, fmt.Errorf("imap: login as %s: %w", p.cfg.Username, err)
	}
	for _, folder := range []string{p.cfg.Processed, p.cfg.Rejected} {
		if folder == "" {
			continue
		}
		var ie *goimap.Error
		if err := c.Create(folder, nil).Wait(); err != nil && !(errors.As(err, &ie) && ie.Code == goimap.ResponseCodeAlreadyExists) {
			// Servers without ALREADYEXISTS answer a plain NO; SELECT
			// and MOVE will tell if the folder is really missing.
			p.log.Debug().Err(err).Str("folder", folder).Msg("create folder")
		}
	}
	sel, err := c.Select(p.cfg.Mailbox, nil).Wait()
	if err != nil {
		return false, fmt.Errorf("imap: select %s: %w", p.cfg.Mailbox, err)
	}
	mb := &mailbox{
		c:        c,
		sel:      sel,
		keywords: slices.Contains(sel.PermanentFlags, goimap.FlagWildcard),
		move:     c.Caps().Has(goimap.CapMove),
	}
	p.log.Info().Uint32("uidvalidity", sel.UIDValidity).Uint32("messages", sel.NumMessages).Bool("move", mb.move).Msg("connected")
	p.metrics.connected.Set(1, p.cfg.Name)
	defer p.metrics.connected.Set(0, p.cfg.Name)
	if err := p.finishMoves(mb); err != nil {
		return false, err
	}

	for {
		if cause := context.Cause(sctx); cause != nil {
			return progressed, cause
		}
		n, more, err := p.drain(sctx, mb)
		progressed = progressed || n > 0
		if err != nil {
			if cause := context.Cause(sctx); cause != nil {
				return progressed, cause
			}
			return progressed, err
		}
		if more {
			continue
		}
		p.metrics.caughtUp.Set(float64(time.Now().Unix()), p.cfg.Name)
		if err := p.wait(sctx, c, newMail); err != nil {
			return progressed, err
		}
	}
}

// wait returns when new mail may have arrived: IDLE's EXISTS, or the poll
// interval, whichever is first. Polling doubles as IDLE's restart, well
// before the 29 minutes after which servers may drop an idle client.
func (p *Poller) wait(ctx context.Context, c *imapclient.Client, newMail <-chan struct{}) error {
	poll := time.NewTimer(p.cfg.PollInterval.D())
	defer poll.Stop()
	if !p.cfg.IDLE || !c.Caps().Has(goimap.CapIdle) {
		if err := c.Noop().Wait(); err != nil {
			return fmt.Errorf("imap: noop: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-poll.C:
		case <-newMail:
		case <-c.Closed():
			return errors.New("imap: connection closed")
		}
		return nil
	}
	idle, err := c.Idle()
	if err != nil {
		return fmt.Errorf("imap: idle: %w", err)
	}
	select {
	case <-ctx.Done():
	case <-poll.C:
	case <-newMail:
	case <-c.Closed():
		return errors.New("imap: connection closed while idle")
	}
	if err := idle.Close(); err != nil {
		return fmt.Errorf("imap: end idle: %w", err)
	}
	if err := idle.Wait(); err != nil {
		return fmt.Errorf("imap: idle: %w", err)
	}
	return nil
}

// dial connects as configured. Every read must see data within
// CommandTimeout plus the poll interval, so a server that stops answering
// (or a dropped connection no FIN reported) ends the session.
func (p *Poller) dial(newMail chan<- struct{}) (*imapclient.Client, error) {
	opts := &imapclient.Options{
		DebugWriter: p.opt.Debug,
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					select {
					case newMail <- struct{}{}:
					default:
					}
				}
			},
		},
	}
	raw, err := net.DialTimeout("tcp", p.cfg.Addr, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("imap: dial %s: %w", p.cfg.Addr, err)
	}
	conn := &deadlineConn{Conn: raw, timeout: p.opt.CommandTimeout + p.cfg.PollInterval.D()}
	host, _, _ := net.SplitHostPort(p.cfg.Addr)
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	switch p.cfg.TLS {
	case config.TLSImplicit:
		return imapclient.New(tls.Client(conn, tc), opts), nil
	case config.TLSStartTLS:
		opts.TLSConfig = tc
		c, err := imapclient.NewStartTLS(conn, opts)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("imap: starttls: %w", err)
		}
		return c, nil
	}
	return imapclient.New(conn, opts), nil
}

type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(b)
}

// mailbox is a session's selected mailbox.
type mailbox struct {
	c        *imapclient.Client
	sel      *goimap.SelectData
	keywords bool // it takes keywords of ours (PERMANENTFLAGS \*)
	move     bool // the server has RFC 6851 MOVE
}

// cursor is the poller's position in the mailbox.
type cursor struct {
	uidValidity uint32
	lastUID     goimap.UID
}

func (p *Poller) loadCursor(ctx context.Context) (cursor, error) {
	ctx, cancel := p.rctx(ctx)
	defer cancel()
	m, err := p.rdb.HGetAll(ctx, p.key("cursor")).Result()
	if err != nil {
		return cursor{}, fmt.Errorf("imap: read cursor: %w", err)
	}
	v, _ := strconv.ParseUint(m["uidvalidity"], 10, 32)
	l, _ := strconv.ParseUint(m["last_uid"], 10, 32)
	return cursor{uint32(v), goimap.UID(l)}, nil
}

func (p *Poller) saveCursor(ctx context.Context, c cursor) error {
	ctx, cancel := p.rctx(ctx)
	defer cancel()
	if err := p.rdb.HSet(ctx, p.key("cursor"), "uidvalidity", c.uidValidity, "last_uid", uint32(c.lastUID), "updated_at", time.Now().UTC().Format(time.RFC3339)).Err(); err != nil {
		return fmt.Errorf("imap: save cursor: %w", err)
	}
	return nil
}

// errDeferred ends a drain whose message ingest deferred (Redis down):
// the message stays unseen and is tried after a backoff.
var errDeferred = errors.New("imap: message deferred, left in the mailbox")

// drain handles what one search finds, in batches of BatchSize: unseen
// mail, and (once the cursor knows where it was) any newer than the
// cursor even if a person read it meanwhile. One search serves the whole
// backlog: searching again for every batch would have the server list,
// and go-imap parse, every remaining UID each time. more says the search
// found more than a batch, so new mail may have come meanwhile.
func (p *Poller) drain(ctx context.Context, mb *mailbox) (n int, more bool, err error) {
	cur, err := p.loadCursor(ctx)
	if err != nil {
		return 0, false, err
	}
	if cur.uidValidity != mb.sel.UIDValidity {
		if cur.uidValidity != 0 {
			// UIDs of the old validity mean nothing now: rescan what is
			// unseen; dedupe by Message-ID keeps it from doubling.
			p.log.Warn().Uint32("old", cur.uidValidity).Uint32("new", mb.sel.UIDValidity).Msg("UIDVALIDITY changed: rescanning")
		}
		// Mail already here is found because it is unseen; from here on,
		// new mail is found by UID even if someone reads it first.
		cur = cursor{uidValidity: mb.sel.UIDValidity}
		if mb.sel.UIDNext > 1 {
			cur.lastUID = mb.sel.UIDNext - 1
		}
		if err := p.saveCursor(ctx, cur); err != nil {
			return 0, false, err
		}
		if err := p.resetFailures(ctx); err != nil {
			return 0, false, err
		}
	}
	criteria := &goimap.SearchCriteria{NotFlag: []goimap.Flag{goimap.FlagSeen}}
	if cur.lastUID > 0 {
		// "n:*" matches the highest UID even when it is below n, hence
		// the NOT 1:last.
		var newer, older goimap.UIDSet
		newer.AddRange(cur.lastUID+1, 0)
		older.AddRange(1, cur.lastUID)
		criteria = &goimap.SearchCriteria{Or: [][2]goimap.SearchCriteria{{
			*criteria,
			{UID: []goimap.UIDSet{newer}, Not: []goimap.SearchCriteria{{UID: []goimap.UIDSet{older}}}},
		}}}
	}
	criteria.NotFlag = append(criteria.NotFlag, goimap.FlagDeleted)
	data, err := mb.c.UIDSearch(criteria, nil).Wait()
	if err != nil {
		return 0, false, fmt.Errorf("imap: search: %w", err)
	}
	uids, err := allUIDs(data)
	if err != nil {
		return 0, false, err
	}
	if len(uids) == 0 {
		return 0, false, nil
	}
	slices.Sort(uids)
	n, err = p.work(ctx, mb, cur, uids)
	return n, len(uids) > p.cfg.BatchSize && err == nil, err
}

// allUIDs reads a search result; a server that answers with a dynamic set
// would make go-imap panic, so that is an error here.
func allUIDs(data *goimap.SearchData) (uids []goimap.UID, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("imap: unusable search result: %v", r)
		}
	}()
	return data.AllUIDs(), nil
}

// outcome of one message, as the mailbox sees it.
type outcome int

const (
	done     outcome = iota // queued, held or ignored: seen or processed
	refused                 // rejected: to the rejected folder
	deferred                // Redis failed: leave it unseen, start no more
	later                   // rate limited: leave it unseen, go on with the others
	failed                  // could not be handled: counts towards poison
)

// work handles uids batch by batch and returns how many it settled. The
// IMAP commands overlap the handlers: the next batch's FETCH goes out
// while this batch's last messages are handled, and this batch's MOVE
// while the next batch is handled; its answer is awaited, and the cursor
// moved, once the next FETCH has been read to its end. go-imap stalls
// every answer behind a FETCH whose bodies nobody reads, so a command's
// answer is only awaited when no FETCH is outstanding.
func (p *Poller) work(ctx context.Context, mb *mailbox, cur cursor, uids []goimap.UID) (int, error) {
	n := 0
	gap := false
	var pending *settlement
	land := func() error {
		if pending == nil {
			return nil
		}
		s := pending
		pending = nil
		<-s.done
		if s.err != nil {
			return s.err
		}
		n += s.n
		if s.last <= cur.lastUID {
			return nil
		}
		cur.lastUID = s.last
		return p.saveCursor(context.WithoutCancel(ctx), cur)
	}
	next := func() []goimap.UID {
		b := uids[:min(len(uids), p.cfg.BatchSize)]
		uids = uids[len(b):]
		return b
	}
	batch := next()
	fetch := p.fetch(mb.c, batch)
	for {
		r := p.newRun(ctx)
		r.read(fetch)
		if err := land(); err != nil {
			r.halt()
			r.wait()
			return n, err
		}
		var nextBatch []goimap.UID
		var nextFetch *imapclient.FetchCommand
		if len(uids) > 0 && r.fetchErr == nil && !r.stopped() {
			nextBatch = next()
			nextFetch = p.fetch(mb.c, nextBatch)
		}
		r.wait()
		toProcessed, toRejected, last := r.tally(batch, &gap)
		pending = p.settle(mb, toProcessed, toRejected, last)
		if nextFetch != nil && !r.stopped() {
			batch, fetch = nextBatch, nextFetch
			continue
		}
		if nextFetch != nil {
			// Stopped after the FETCH went out: read it, handle none.
			_ = nextFetch.Close()
		}
		if err := land(); err != nil {
			return n, err
		}
		switch {
		case r.fetchErr != nil:
			return n, fmt.Errorf("imap: fetch: %w", r.fetchErr)
		case r.halted.Load() && ctx.Err() == nil:
			return n, errDeferred
		}
		return n, nil
	}
}

// fetch asks for the bodies of uids, without marking them read and at
// most one byte over the size limit.
func (p *Poller) fetch(c *imapclient.Client, uids []goimap.UID) *imapclient.FetchCommand {
	section := &goimap.FetchItemBodySection{Peek: true, Partial: &goimap.SectionPartial{Offset: 0, Size: p.opt.MaxMessageBytes + 1}}
	return c.Fetch(goimap.UIDSetNum(uids...), &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{section}})
}

func readMessage(msg *imapclient.FetchMessageData, limit int64) (goimap.UID, []byte, error) {
	var uid goimap.UID
	var raw []byte
	var err error
	for item := msg.Next(); item != nil; item = msg.Next() {
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			uid = it.UID
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil {
				err = errors.New("imap: empty body section")
				continue
			}
			raw, err = io.ReadAll(io.LimitReader(it.Literal, limit))
			if err == nil && raw == nil {
				raw = []byte{}
			}
		}
	}
	if err == nil && raw == nil {
		err = errors.New("imap: server sent no message body")
	}
	return uid, raw, err
}

// handle runs one message through ingest. A panic is a failure of that
// message, not of the poller.
func (p *Poller) handle(ctx context.Context, uid goimap.UID, raw []byte) (o outcome) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error().Uint32("uid", uint32(uid)).Str("panic", fmt.Sprint(r)).Msg("panic while handling a message")
			o = failed
		}
	}()
	res := p.h.Handle(ctx, ingest.Envelope{
		Channel:    ingest.ChannelIMAP,
		Recipients: []string{p.cfg.Address},
		RemoteAddr: p.cfg.Addr,
	}, raw)
	o = refused
	for _, d := range res.Decisions {
		switch {
		case d.Outcome == identify.Deferred && d.Reason == identify.ReasonRateLimited:
			o = later
		case d.Outcome == identify.Deferred:
			return deferred
		case o != later && (d.Outcome == identify.Queued || d.Outcome == identify.Held || d.Outcome == identify.Ignored):
			o = done
		}
	}
	return o
}

// fail counts a failure of uid; at MaxFailures the message is poison and
// is moved aside so it never blocks the messages after it.
func (p *Poller) fail(ctx context.Context, uid goimap.UID, cause error) (poison bool, err error) {
	rctx, cancel := p.rctx(ctx)
	defer cancel()
	n, err := p.rdb.HIncrBy(rctx, p.key("failures"), strconv.FormatUint(uint64(uid), 10), 1).Result()
	if err != nil {
		return false, fmt.Errorf("imap: count failure: %w", err)
	}
	ev := p.log.Warn()
	if n >= int64(p.cfg.MaxFailures) {
		ev = p.log.Error()
		poison = true
		_ = p.rdb.HDel(rctx, p.key("failures"), strconv.FormatUint(uint64(uid), 10)).Err()
	}
	ev.Err(cause).Uint32("uid", uint32(uid)).Int64("failures", n).Bool("poison", poison).Msg("message could not be handled")
	p.metrics.failures.Inc(p.cfg.Name, strconv.FormatBool(poison))
	return poison, nil
}

func (p *Poller) resetFailures(ctx context.Context) error {
	ctx, cancel := p.rctx(ctx)
	defer cancel()
	return p.rdb.Del(ctx, p.key("failures")).Err()
}

// settlement is a batch's settle under way.
type settlement struct {
	done chan struct{}
	err  error      // read once done is closed
	n    int        // messages settled
	last goimap.UID // the cursor once the settle succeeded; 0: unchanged
}

// settle marks or moves what was handled: only now, after ingest wrote
// it. It sends the commands and waits for their answers in a goroutine.
func (p *Poller) settle(mb *mailbox, toProcessed, toRejected goimap.UIDSet, last goimap.UID) *settlement {
	s := &settlement{done: make(chan struct{}), last: last}
	go func() {
		defer close(s.done)
		for _, d := range []struct {
			set     goimap.UIDSet
			folder  string
			keyword goimap.Flag
		}{{toProcessed, p.cfg.Processed, keywordProcessed}, {toRejected, p.cfg.Rejected, keywordRejected}} {
			if len(d.set) == 0 {
				continue
			}
			if err := p.moveOrMark(mb, d.set, d.folder, d.keyword); err != nil {
				s.err = err
				return
			}
			uids, _ := d.set.Nums()
			s.n += len(uids)
		}
	}()
	return s
}

// Keywords that mark mail flagged \Seen on its way to a folder on a
// server without MOVE: a crash between the flag and the COPY would leave
// seen mail in the mailbox that no search for unseen mail finds again, so
// each session first finishes the moves its keywords name.
const (
	keywordProcessed goimap.Flag = "$MailgwProcessed"
	keywordRejected  goimap.Flag = "$MailgwRejected"
)

// moveOrMark moves handled mail to folder, or flags it \Seen when there is
// no folder. RFC 6851 MOVE is atomic: a message is either still in the
// mailbox, unseen and found again, or in the folder; it arrives there as
// it was, unseen. Without MOVE go-imap copies, flags \Deleted and
// expunges, so the mail is flagged \Seen and with a keyword first.
func (p *Poller) moveOrMark(mb *mailbox, set goimap.UIDSet, folder string, keyword goimap.Flag) error {
	if folder != "" && mb.move {
		if _, err := mb.c.Move(set, folder).Wait(); err != nil {
			return fmt.Errorf("imap: move to %s: %w", folder, err)
		}
		return nil
	}
	flags := []goimap.Flag{goimap.FlagSeen}
	if folder != "" && mb.keywords {
		flags = append(flags, keyword)
	}
	store := mb.c.Store(set, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: flags}, nil)
	if err := store.Close(); err != nil {
		return fmt.Errorf("imap: mark seen: %w", err)
	}
	if folder == "" {
		return nil
	}
	if _, err := mb.c.Move(set, folder).Wait(); err != nil {
		return fmt.Errorf("imap: move to %s: %w", folder, err)
	}
	return nil
}

// finishMoves moves mail a previous session flagged but did not move (on
// a server without MOVE, or by an earlier version that flagged first).
func (p *Poller) finishMoves(mb *mailbox) error {
	if !mb.keywords {
		return nil
	}
	for _, f := range []struct {
		folder  string
		keyword goimap.Flag
	}{{p.cfg.Processed, keywordProcessed}, {p.cfg.Rejected, keywordRejected}} {
		if f.folder == "" {
			continue
		}
		data, err := mb.c.UIDSearch(&goimap.SearchCriteria{Flag: []goimap.Flag{f.keyword}}, nil).Wait()
		if err != nil {
			return fmt.Errorf("imap: search %s: %w", f.keyword, err)
		}
		uids, err := allUIDs(data)
		if err != nil {
			return err
		}
		if len(uids) == 0 {
			continue
		}
		p.log.Warn().Int("messages", len(uids)).Str("folder", f.folder).Msg("finishing moves an earlier session left undone")
		if _, err := mb.c.Move(goimap.UIDSetNum(uids...), f.folder).Wait(); err != nil {
			return fmt.Errorf("imap: move to %s: %w", f.folder, err)
		}
	}
	return nil
}
