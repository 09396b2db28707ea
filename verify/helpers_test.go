package verify_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/proctest"
	"mailgw/internal/testkit"
	"mailgw/route"
	"mailgw/verify"
)

// testConfig is the site every verification test runs on: anyone may get a
// portal account, and new senders verify their address.
const testConfig = `
hostname: mx.example.com
http: {public_url: "https://help.example.com"}
outbound: {smarthost: "relay.example.com:25", from: "Example Support <support@example.com>"}
access:
  internal_domains: [example.com]
  external_accounts: anyone
  signup: verify
  blocked: ["spam.example", "*.bad.example", "blocked@example.org"]
verify: {ttl: 48h, cooldown: 10m}
spaces:
  - {key: IT, name: IT help, addresses: [it@example.com]}
  - {key: BILL, name: Billing, addresses: [billing@example.com]}
customers:
  - {email: carol@example.com, name: Carol}
agents: [agent@example.com]
`

// linkRE finds a verification link of testConfig's public URL.
var linkRE = regexp.MustCompile(`https://help\.example\.com/verify/([A-Za-z0-9_-]+)`)

// start is where every test's clock begins: a quarter past an hour, so
// that the next hourly rate-limit window is 45 minutes away.
var start = time.Date(2026, 3, 2, 10, 15, 0, 0, time.UTC)

// eachBackend runs f against miniredis and a redis-server with go-redis
// defaults.
func eachBackend(t *testing.T, f func(t *testing.T, b *testkit.Backend)) {
	t.Helper()
	testkit.EachBackend(t, testkit.RealOptions{}, f)
}

// fastForward lets d pass for Redis's key expiry, as the test clock
// advances: miniredis has FastForward; for a real server every key with a
// TTL has it shortened by d, or is deleted when d covers it.
func fastForward(t *testing.T, b *testkit.Backend, d time.Duration) {
	t.Helper()
	if b.Mini != nil {
		b.Mini.FastForward(d)
		return
	}
	ctx := context.Background()
	iter := b.RDB.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		ttl, err := b.RDB.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", k, err)
		}
		switch {
		case ttl <= 0: // no expiry (-1) or gone meanwhile (-2)
		case ttl <= d:
			b.RDB.Del(ctx, k)
		default:
			b.RDB.PExpire(ctx, k, ttl-d)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
}

// attempt is one call of a capturing Sender.
type attempt struct {
	From, To string
	Msg      []byte
	Err      error // what the Sender returned
}

// captureSender records every delivery and returns the queued errors
// first, then nil.
type captureSender struct {
	mu       sync.Mutex
	attempts []attempt
	errs     []error
	always   error // returned once errs is used up, when set
}

func (c *captureSender) Send(_ context.Context, from, to string, msg []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	switch {
	case len(c.errs) > 0:
		err, c.errs = c.errs[0], c.errs[1:]
	case c.always != nil:
		err = c.always
	}
	c.attempts = append(c.attempts, attempt{From: from, To: to, Msg: append([]byte(nil), msg...), Err: err})
	return err
}

// sent returns the deliveries that succeeded.
func (c *captureSender) sent() []attempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []attempt
	for _, a := range c.attempts {
		if a.Err == nil {
			out = append(out, a)
		}
	}
	return out
}

func (c *captureSender) tries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.attempts)
}

// fixture is one site: config, Redis, clock, verification service with a
// capturing sender, and the ingest handler that calls it.
type fixture struct {
	t      *testing.T
	be     *testkit.Backend
	cfg    *config.Config
	clock  *testkit.Clock
	store  *route.Store
	dir    *identify.Directory
	sender *captureSender
	svc    *verify.Service
	h      *ingest.Handler
	logs   *proctest.SyncBuffer
	ctx    context.Context
}

type fixtureOptions struct {
	mod    func(*config.Config) // adjusts the parsed testConfig
	sender verify.Sender        // nil: the fixture's captureSender
	noSend bool                 // no Sender at all
}

func newFixture(t *testing.T, b *testkit.Backend, opt fixtureOptions) *fixture {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	if opt.mod != nil {
		opt.mod(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	if err := identify.NewDirectory(b.RDB, cfg.Redis.Prefix, 0).Seed(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		t: t, be: b, cfg: cfg, clock: testkit.NewClock(start), sender: &captureSender{}, logs: &proctest.SyncBuffer{}, ctx: ctx,
		store: ingest.NewStore(cfg, b.RDB),
		dir:   identify.NewDirectory(b.RDB, cfg.Redis.Prefix, 0),
	}
	var sender verify.Sender = f.sender
	switch {
	case opt.noSend:
		sender = nil
	case opt.sender != nil:
		sender = opt.sender
	}
	log := zerolog.New(f.logs)
	f.svc, err = verify.New(cfg, b.RDB, f.store, log, verify.Options{
		Prefix: cfg.Redis.Prefix, Timeout: cfg.Redis.Timeout.D(), PublicURL: cfg.HTTP.PublicURL,
		From: cfg.Outbound.From, Hostname: cfg.Hostname, Sender: sender, Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.h, err = ingest.New(cfg, b.RDB, log, ingest.Options{Verifier: f.svc, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// advance moves the test clock and Redis's expiry together.
func (f *fixture) advance(d time.Duration) {
	f.t.Helper()
	f.clock.Add(d)
	fastForward(f.t, f.be, d)
}

// mailFrom builds a plain-text message.
func mailFrom(from, to, id, subject string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <%s>\r\n", from, to, subject, id)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe printer on floor 3 is jammed.\r\n")
	return []byte(b.String())
}

// handle runs one message through ingest to the given support addresses
// and returns its decisions.
func (f *fixture) handle(raw []byte, rcpts ...string) []ingest.SpaceDecision {
	f.t.Helper()
	env := ingest.Envelope{Channel: ingest.ChannelSMTP, MailFrom: "sender@sender.example", Recipients: rcpts}
	return f.h.Handle(f.ctx, env, raw).Decisions
}

// hold sends a new message from addr to the IT space and checks it is held.
func (f *fixture) hold(addr, id string, rcpts ...string) {
	f.t.Helper()
	if len(rcpts) == 0 {
		rcpts = []string{"it@example.com"}
	}
	ds := f.handle(mailFrom(addr, strings.Join(rcpts, ", "), id, "Printer "+id), rcpts...)
	if len(ds) != len(rcpts) {
		f.t.Fatalf("%s: %d decisions, want %d: %+v", id, len(ds), len(rcpts), ds)
	}
	for _, d := range ds {
		if d.Outcome != identify.Held || d.Reason != identify.ReasonPendingVerification {
			f.t.Fatalf("%s to %s: %s %s (%s), want held pending_verification", id, d.Space, d.Outcome, d.Reason, d.Detail)
		}
	}
}

// deliver runs DeliverDue and returns how many mails it tried.
func (f *fixture) deliver() int {
	f.t.Helper()
	n, err := f.svc.DeliverDue(f.ctx)
	if err != nil {
		f.t.Fatalf("DeliverDue: %v", err)
	}
	return n
}

// outbox returns how many mails wait in the outbox.
func (f *fixture) outbox() int64 {
	f.t.Helper()
	n, err := f.be.RDB.ZCard(f.ctx, f.cfg.Redis.Prefix+"outbox").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// status returns the account status of addr, "" when there is none.
func (f *fixture) status(addr string) string {
	f.t.Helper()
	c, err := f.dir.Customer(f.ctx, addr)
	if errors.Is(err, identify.ErrNotFound) {
		return ""
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return c.Status
}

func (f *fixture) holds(addr string) []route.Held {
	f.t.Helper()
	h, err := f.store.Holds(f.ctx, addr)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

// stream returns the entries of a space's stream.
func (f *fixture) stream(space string) []redis.XMessage {
	f.t.Helper()
	msgs, err := f.store.ReadStream(f.ctx, space, "0", 0, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return msgs
}

// logEntries returns the decision log entries with the given reason.
func (f *fixture) logEntries(reason string) []route.Entry {
	f.t.Helper()
	all, err := f.store.ReadLog(f.ctx, "0", 0, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []route.Entry
	for _, e := range all {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// tokenKey is where Redis keeps a token: its SHA-256 only.
func (f *fixture) tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return f.cfg.Redis.Prefix + "token:" + hex.EncodeToString(sum[:])
}

// deliverOne delivers the outbox and returns the one new mail it sent.
func (f *fixture) deliverOne() attempt {
	f.t.Helper()
	before := len(f.sender.sent())
	f.deliver()
	sent := f.sender.sent()
	if len(sent) != before+1 {
		f.t.Fatalf("%d mails sent, want 1", len(sent)-before)
	}
	return sent[len(sent)-1]
}

// parsedMail is a verification mail taken apart.
type parsedMail struct {
	Header     mail.Header
	Text, HTML string
}

// parseMail splits a multipart/alternative mail into its decoded parts.
func parseMail(t *testing.T, raw []byte) parsedMail {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("read mail: %v\n%s", err, raw)
	}
	out := parsedMail{Header: m.Header}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q (%v), want multipart/alternative", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("mail part: %v", err)
		}
		var body io.Reader = p
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			body = quotedprintable.NewReader(p)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatalf("mail part: %v", err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch ct {
		case "text/plain":
			out.Text = string(b)
		case "text/html":
			out.HTML = string(b)
		default:
			t.Fatalf("unexpected part %q", ct)
		}
	}
	if out.Text == "" || out.HTML == "" {
		t.Fatalf("mail lacks a text or an HTML part:\n%s", raw)
	}
	return out
}

// tokenOf returns the token of the verification link in a mail, checking
// that the text and HTML parts carry the same link.
func tokenOf(t *testing.T, raw []byte) string {
	t.Helper()
	m := parseMail(t, raw)
	tm := linkRE.FindStringSubmatch(m.Text)
	hm := linkRE.FindStringSubmatch(m.HTML)
	if tm == nil || hm == nil {
		t.Fatalf("no link in text (%v) or HTML (%v) part:\n%s\n%s", tm != nil, hm != nil, m.Text, m.HTML)
	}
	if tm[1] != hm[1] {
		t.Fatalf("text links %s, HTML links %s", tm[1], hm[1])
	}
	return tm[1]
}

// dump renders every key of Redis with its value, to compare before and
// after a call that must change nothing. TTLs are left out: they tick.
func dump(t *testing.T, ctx context.Context, rdb *redis.Client) map[string]string {
	t.Helper()
	out := map[string]string{}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		case "set":
			var m []string
			m, err = rdb.SMembers(ctx, k).Result()
			sort.Strings(m)
			v = m
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "stream":
			v, err = rdb.XRange(ctx, k, "-", "+").Result()
		default:
			t.Fatalf("key %s has type %s", k, typ)
		}
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		out[k] = typ + " " + fmt.Sprint(v)
	}
	return out
}

// sameDump fails the test when two dumps differ.
func sameDump(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for k, v := range after {
		if before[k] != v {
			t.Errorf("%s changed %s:\nbefore %s\nafter  %s", what, k, before[k], v)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("%s removed %s", what, k)
		}
	}
}

// field returns a stream entry's field.
func field(m redis.XMessage, name string) string {
	s, _ := m.Values[name].(string)
	return s
}
