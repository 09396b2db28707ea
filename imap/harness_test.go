package imap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/proctest"
	"mailgw/internal/redistest"
)

const (
	testUser     = "support@example.com"
	testPassword = "correct horse"
)

// Server capabilities: a modern server, and a bare IMAP4rev1 one on which
// go-imap falls back to COPY, STORE \Deleted and EXPUNGE.
var (
	capsMove = goimap.CapSet{goimap.CapIMAP4rev1: {}, goimap.CapMove: {}, goimap.CapUIDPlus: {}}
	capsRev1 = goimap.CapSet{goimap.CapIMAP4rev1: {}}
)

// ---------------------------------------------------------------------------
// IMAP server

// memServer is go-imap's in-memory server on 127.0.0.1, with a spy on the
// commands the poller sends and a way to drop or restart it.
type memServer struct {
	t    testing.TB
	mem  *imapmemserver.Server
	user *imapmemserver.User
	caps goimap.CapSet
	addr string

	mu    sync.Mutex
	srv   *imapserver.Server
	conns []net.Conn

	searches    atomic.Int64           // UID SEARCH commands
	mailSearch  atomic.Int64           // of those, searches for mail to handle (not for keywords)
	stores      atomic.Int64           // STORE commands
	moveHook    atomic.Pointer[func()] // runs before each MOVE, may block
	idling      atomic.Int64           // IDLE commands in progress
	fetchMu     sync.Mutex
	bodyFetches [][]goimap.UID // UID sets of FETCHes asking for a body
}

func newMemServer(t testing.TB, caps goimap.CapSet) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser(testUser, testPassword)
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &memServer{t: t, mem: mem, user: user, caps: caps, addr: ln.Addr().String()}
	s.serve(ln)
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *memServer) serve(ln net.Listener) {
	logw := io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			s.mu.Lock()
			s.conns = append(s.conns, c.NetConn())
			s.mu.Unlock()
			return &spySession{SessionIMAP4rev2: s.mem.NewSession().(imapserver.SessionIMAP4rev2), s: s}, nil, nil
		},
		Caps:         s.caps,
		InsecureAuth: true, // plain text on loopback
		Logger:       log.New(logw, "imapserver: ", 0),
	})
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// stop closes the listener and every connection.
func (s *memServer) stop() {
	s.mu.Lock()
	srv := s.srv
	s.conns = nil
	s.mu.Unlock()
	_ = srv.Close()
}

// restart stops the server and starts a new one on the same port with the
// same mailboxes.
func (s *memServer) restart() {
	s.t.Helper()
	s.stop()
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("listen again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// dropConnections closes every connection from the server side, as a
// server restart or a NAT timeout would, and keeps listening.
func (s *memServer) dropConnections() {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (s *memServer) fetches() [][]goimap.UID {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	return append([][]goimap.UID(nil), s.bodyFetches...)
}

// spySession counts what the poller asks the in-memory server for.
type spySession struct {
	imapserver.SessionIMAP4rev2
	s *memServer
}

func (ss *spySession) Search(kind imapserver.NumKind, criteria *goimap.SearchCriteria, options *goimap.SearchOptions) (*goimap.SearchData, error) {
	ss.s.searches.Add(1)
	if slices.Contains(criteria.NotFlag, goimap.FlagDeleted) {
		ss.s.mailSearch.Add(1)
	}
	return ss.SessionIMAP4rev2.Search(kind, criteria, options)
}

func (ss *spySession) Store(w *imapserver.FetchWriter, numSet goimap.NumSet, flags *goimap.StoreFlags, options *goimap.StoreOptions) error {
	ss.s.stores.Add(1)
	return ss.SessionIMAP4rev2.Store(w, numSet, flags, options)
}

func (ss *spySession) Fetch(w *imapserver.FetchWriter, numSet goimap.NumSet, options *goimap.FetchOptions) error {
	if len(options.BodySection) > 0 {
		var uids []goimap.UID
		if set, ok := numSet.(goimap.UIDSet); ok {
			uids, _ = set.Nums()
		}
		ss.s.fetchMu.Lock()
		ss.s.bodyFetches = append(ss.s.bodyFetches, uids)
		ss.s.fetchMu.Unlock()
	}
	return ss.SessionIMAP4rev2.Fetch(w, numSet, options)
}

func (ss *spySession) Move(w *imapserver.MoveWriter, numSet goimap.NumSet, dest string) error {
	if hook := ss.s.moveHook.Load(); hook != nil {
		(*hook)()
	}
	return ss.SessionIMAP4rev2.Move(w, numSet, dest)
}

func (ss *spySession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	ss.s.idling.Add(1)
	defer ss.s.idling.Add(-1)
	return ss.SessionIMAP4rev2.Idle(w, stop)
}

// client logs in to the server as a person's mail client would.
func (s *memServer) client(t testing.TB) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(s.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(testUser, testPassword).Wait(); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// add appends a message to a mailbox.
func (s *memServer) add(t testing.TB, mailbox string, raw []byte, flags ...goimap.Flag) {
	t.Helper()
	c := s.client(t)
	defer c.Close()
	cmd := c.Append(mailbox, int64(len(raw)), &goimap.AppendOptions{Flags: flags})
	if _, err := cmd.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("append to %s: %v", mailbox, err)
	}
}

// stored is a message as the mailbox holds it.
type stored struct {
	UID  goimap.UID
	ID   string // Message-ID without angle brackets
	Seen bool
	Size int64
}

// list returns the messages of a mailbox in UID order, and whether the
// mailbox exists.
func (s *memServer) list(t testing.TB, mailbox string) ([]stored, bool) {
	t.Helper()
	c := s.client(t)
	defer c.Close()
	sel, err := c.Select(mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		var ie *goimap.Error
		if errors.As(err, &ie) && ie.Code == goimap.ResponseCodeNonExistent {
			return nil, false
		}
		t.Fatalf("select %s: %v", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return nil, true
	}
	msgs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true, Envelope: true, RFC822Size: true}).Collect()
	if err != nil {
		t.Fatalf("fetch %s: %v", mailbox, err)
	}
	var out []stored
	for _, m := range msgs {
		st := stored{UID: m.UID, Size: m.RFC822Size}
		if m.Envelope != nil {
			st.ID = m.Envelope.MessageID
		}
		for _, f := range m.Flags {
			if f == goimap.FlagSeen {
				st.Seen = true
			}
		}
		out = append(out, st)
	}
	return out, true
}

// uidValidity returns a mailbox's UIDVALIDITY.
func (s *memServer) uidValidity(t testing.TB, mailbox string) uint32 {
	t.Helper()
	c := s.client(t)
	defer c.Close()
	sel, err := c.Select(mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return sel.UIDValidity
}

// ids lists the Message-IDs of a mailbox, with "+seen" appended to those
// flagged \Seen, so one comparison checks both.
func (s *memServer) ids(t testing.TB, mailbox string) []string {
	t.Helper()
	msgs, _ := s.list(t, mailbox)
	out := []string{}
	for _, m := range msgs {
		id := m.ID
		if m.Seen {
			id += "+seen"
		}
		out = append(out, id)
	}
	return out
}

// ---------------------------------------------------------------------------
// Messages

// mail builds a small message from carol, a known customer, to the IT
// space; extra header fields go before the body.
func mail(id string, extra ...string) []byte {
	return mailFrom("Carol <carol@example.com>", id, "Printer "+id, "The printer on floor 3 is jammed.\r\n", extra...)
}

func mailFrom(from, id, subject, body string, extra ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: IT <it@example.com>\r\nSubject: %s\r\nDate: Tue, 24 Nov 2026 08:00:00 +0000\r\nMessage-ID: <%s>\r\n", from, subject, id)
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body)
	return []byte(b.String())
}

// header returns the first value of a header field of a (possibly
// truncated) message.
func header(raw []byte, name string) string {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line == "\r" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func messageID(raw []byte) string {
	return strings.Trim(header(raw, "Message-ID"), "<>")
}

// ---------------------------------------------------------------------------
// Handlers

// call is one Handle call as a handler saw it.
type call struct {
	ID       string
	Raw      []byte
	Env      ingest.Envelope
	Outcome  string // what the handler answered, or "panic"
	Instance string // the poller that called, when wrapped by instanceHandler
}

// fakeHandler answers what a message's X-Want header says (queued when
// there is none: queued, held, ignored, rejected, deferred or panic),
// unless override returns an answer. It records every call.
type fakeHandler struct {
	mu       sync.Mutex
	calls    []call
	override func(id string) string // may block; "" keeps the header's answer
}

func (f *fakeHandler) setOverride(fn func(id string) string) {
	f.mu.Lock()
	f.override = fn
	f.mu.Unlock()
}

func (f *fakeHandler) Handle(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result {
	c := call{ID: messageID(raw), Raw: bytes.Clone(raw), Env: env, Outcome: header(raw, "X-Want")}
	if c.Outcome == "" {
		c.Outcome = string(identify.Queued)
	}
	f.mu.Lock()
	override := f.override
	f.mu.Unlock()
	if override != nil {
		if o := override(c.ID); o != "" {
			c.Outcome = o
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	if c.Outcome == "panic" {
		panic("fake handler: cannot handle " + c.ID)
	}
	return ingest.Result{MessageID: c.ID, From: "carol@example.com", Decisions: []ingest.SpaceDecision{{
		Space: "IT", Recipient: "it@example.com", Decision: identify.Decision{Outcome: identify.Outcome(c.Outcome)},
	}}}
}

func (f *fakeHandler) all() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// order lists the Message-IDs handed to the handler, in call order.
func (f *fakeHandler) order() []string {
	var out []string
	for _, c := range f.all() {
		out = append(out, c.ID)
	}
	return out
}

// count returns how often id was handed to the handler, and how often of
// those with an answer other than deferred.
func (f *fakeHandler) count(id string) (all, settled int) {
	for _, c := range f.all() {
		if c.ID == id {
			all++
			if c.Outcome != string(identify.Deferred) {
				settled++
			}
		}
	}
	return all, settled
}

// recorder wraps a handler (the real one, mostly) and records each call
// with the result it got.
type recorder struct {
	h       Handler
	mu      sync.Mutex
	calls   []call
	results []ingest.Result
	before  func(id string) // optional, runs before the wrapped handler
}

func (r *recorder) Handle(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result {
	id := messageID(raw)
	if r.before != nil {
		r.before(id)
	}
	res := r.h.Handle(ctx, env, raw)
	o := ""
	for _, d := range res.Decisions {
		o += string(d.Outcome) + "/" + string(d.Reason) + " "
	}
	r.mu.Lock()
	r.calls = append(r.calls, call{ID: id, Raw: bytes.Clone(raw), Env: env, Outcome: strings.TrimSpace(o)})
	r.results = append(r.results, res)
	r.mu.Unlock()
	return res
}

func (r *recorder) all() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// outcomes lists "id outcome/reason" per call.
func (r *recorder) outcomes() []string {
	var out []string
	for _, c := range r.all() {
		out = append(out, c.ID+" "+c.Outcome)
	}
	return out
}

const testConfig = `
hostname: mx.example.com
access:
  internal_domains: [example.com]
  external_accounts: listed_domains
  external_domains: [partner.example]
  signup: verify
spaces:
  - {key: IT, name: IT help, addresses: [it@example.com]}
customers:
  - {email: carol@example.com, name: Carol}
agents: [agent@example.com]
`

// realHandler is the real ingest.Handler on rdb; adjust may change the
// configuration first.
func realHandler(t testing.TB, rdb redis.UniversalClient, adjust func(*config.Config)) (*ingest.Handler, *config.Config) {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(cfg)
	}
	if err := identify.NewDirectory(rdb, cfg.Redis.Prefix, 0).Seed(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	h, err := ingest.New(cfg, rdb, zerolog.Nop(), ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return h, cfg
}

// ---------------------------------------------------------------------------
// Poller set-up

// rig is one test's world: an IMAP server, a Redis, and the poller's
// configuration and log.
type rig struct {
	t    *testing.T
	srv  *memServer
	rdb  *redis.Client
	mr   *miniredis.Miniredis
	logs *proctest.SyncBuffer
	cfg  config.IMAP
	opt  Options
}

func newRig(t *testing.T, caps goimap.CapSet) *rig {
	t.Helper()
	srv := newMemServer(t, caps)
	rdb, mr := redistest.Mini(t)
	r := &rig{t: t, srv: srv, rdb: rdb, mr: mr, logs: &proctest.SyncBuffer{}}
	r.cfg = config.IMAP{
		Name:         "support",
		Addr:         srv.addr,
		TLS:          config.TLSNone,
		Username:     testUser,
		Mailbox:      "INBOX",
		Address:      "it@example.com",
		Rejected:     "Rejected",
		PollInterval: config.Duration(100 * time.Millisecond),
		BatchSize:    50,
		MaxFailures:  2,
	}
	r.opt = Options{
		RedisTimeout: time.Second,
		LeaseTTL:     600 * time.Millisecond,
		BackoffMin:   20 * time.Millisecond,
		BackoffMax:   200 * time.Millisecond,
		Instance:     "test-a",
	}
	if testing.Verbose() {
		r.opt.Debug = os.Stderr
	}
	return r
}

// poller builds a poller from the rig's current configuration.
func (r *rig) poller(h Handler) *Poller {
	var w io.Writer = r.logs
	if testing.Verbose() {
		w = io.MultiWriter(r.logs, os.Stderr)
	}
	return New(r.cfg, testPassword, h, r.rdb, zerolog.New(w).Level(zerolog.DebugLevel), r.opt)
}

// running is a poller's Run in a goroutine.
type running struct {
	t      testing.TB
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs p until the test ends or stop is called.
func start(t testing.TB, p *Poller) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		p.Run(ctx)
	}()
	t.Cleanup(r.stop)
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.t.Errorf("Run did not return within 10 s of its context ending")
	}
}

// waitFor polls cond every 20 ms for at most 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quiet waits until the poller has searched the mailbox twice more, so a
// message it would wrongly handle again has had its chance.
func (r *rig) quiet() {
	r.t.Helper()
	n := r.srv.searches.Load()
	waitFor(r.t, "two more searches", func() bool { return r.srv.searches.Load() >= n+2 })
}

func (r *rig) cursor(p *Poller) map[string]string {
	r.t.Helper()
	m, err := r.rdb.HGetAll(context.Background(), p.key("cursor")).Result()
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

// logEntry is one zerolog line.
type logEntry map[string]any

func (r *rig) entries() []logEntry {
	var out []logEntry
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if line == "" {
			continue
		}
		var e logEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			r.t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// logged returns the entries with this level and message.
func (r *rig) logged(level, msg string) []logEntry {
	var out []logEntry
	for _, e := range r.entries() {
		if e["level"] == level && e["message"] == msg {
			out = append(out, e)
		}
	}
	return out
}
