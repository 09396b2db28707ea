package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/redistest"
	"mailgw/internal/testkit"
	"mailgw/route"
	"mailgw/verify"
	"mailgw/web"
)

const testConfig = `
hostname: mx.example.com
http: {public_url: "https://help.example.com"}
outbound: {smarthost: "relay.example.com:25", from: "Example Support <support@example.com>"}
access:
  internal_domains: [example.com]
  external_accounts: anyone
  signup: verify
verify: {ttl: 48h, cooldown: 10m}
spaces:
  - {key: IT, name: IT help, addresses: [it@example.com]}
  - {key: BILL, name: "Billing & <Accounts>", addresses: [billing@example.com]}
`

var linkRE = regexp.MustCompile(`https://help\.example\.com/verify/([A-Za-z0-9_-]{43})`)

// eachBackend runs f against miniredis and a durable redis-server, so that
// an outage simulated by Stop and Start keeps the data.
func eachBackend(t *testing.T, f func(t *testing.T, b *testkit.Backend)) {
	t.Helper()
	testkit.EachBackend(t, testkit.RealOptions{
		Server: redistest.Options{AppendOnly: true, ExtraArgs: []string{"--appendfsync", "always"}},
		// No retries and a short dial timeout, so an outage answers fast.
		Client: func(o *redis.Options) { o.MaxRetries, o.DialTimeout = -1, 200*time.Millisecond },
	}, f)
}

// fail makes Redis fail until the returned function is called.
func fail(t *testing.T, b *testkit.Backend) (msg string, restore func()) {
	t.Helper()
	if b.Mini != nil {
		msg = "LOADING secret internal detail"
		b.Mini.SetError(msg)
		return msg, func() { b.Mini.SetError("") }
	}
	b.Real.Stop()
	return "connection refused", b.Real.Start
}

// mailSender captures verification mail.
type mailSender struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (m *mailSender) Send(_ context.Context, _, _ string, msg []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	return nil
}

// site is a verification service behind the web handler.
type site struct {
	t      *testing.T
	be     *testkit.Backend
	ctx    context.Context
	cfg    *config.Config
	clock  *testkit.Clock
	svc    *verify.Service
	h      *ingest.Handler
	store  *route.Store
	dir    *identify.Directory
	sender *mailSender
	srv    *httptest.Server
}

func newSite(t *testing.T, b *testkit.Backend, checks map[string]web.Check) *site {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	s := &site{t: t, be: b, ctx: ctx, cfg: cfg, clock: testkit.NewClock(time.Date(2026, 3, 2, 10, 15, 0, 0, time.UTC)),
		store: ingest.NewStore(cfg, b.RDB), dir: identify.NewDirectory(b.RDB, cfg.Redis.Prefix, 0), sender: &mailSender{}}
	s.svc, err = verify.New(cfg, b.RDB, s.store, zerolog.Nop(), verify.Options{
		Prefix: cfg.Redis.Prefix, Timeout: time.Second, PublicURL: cfg.HTTP.PublicURL,
		From: cfg.Outbound.From, Hostname: cfg.Hostname, Sender: s.sender, Now: s.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.h, err = ingest.New(cfg, b.RDB, zerolog.Nop(), ingest.Options{Verifier: s.svc, Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewServer(web.New(web.Options{Verifier: s.svc, Ready: checks}, zerolog.Nop()).Handler())
	t.Cleanup(s.srv.Close)
	return s
}

// pending holds a message from addr to the given support addresses and
// returns the token of the verification link mailed for it.
func (s *site) pending(addr, id string, rcpts ...string) string {
	s.t.Helper()
	raw := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: Printer\r\nMessage-ID: <%s>\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\nJammed.\r\n",
		addr, strings.Join(rcpts, ", "), id)
	res := s.h.Handle(s.ctx, ingest.Envelope{Channel: ingest.ChannelSMTP, Recipients: rcpts}, []byte(raw))
	for _, d := range res.Decisions {
		if d.Outcome != identify.Held {
			s.t.Fatalf("%s: %+v, want held", id, d)
		}
	}
	s.sender.mu.Lock()
	before := len(s.sender.msgs)
	s.sender.mu.Unlock()
	if _, err := s.svc.DeliverDue(s.ctx); err != nil {
		s.t.Fatal(err)
	}
	s.sender.mu.Lock()
	defer s.sender.mu.Unlock()
	if len(s.sender.msgs) != before+1 {
		s.t.Fatalf("%d verification mails sent, want 1", len(s.sender.msgs)-before)
	}
	// The link sits in the HTML part unencoded enough to find: the text
	// part may wrap it with quoted-printable soft breaks.
	body := strings.ReplaceAll(string(s.sender.msgs[len(s.sender.msgs)-1]), "=\r\n", "")
	m := linkRE.FindStringSubmatch(body)
	if m == nil {
		s.t.Fatalf("no link in\n%s", body)
	}
	return m[1]
}

// response is a page as the browser gets it.
type response struct {
	status int
	header http.Header
	body   string
	url    string
}

func (s *site) do(method, path string) response {
	s.t.Helper()
	return s.request(s.srv, method, path, nil)
}

// request sends method path to srv, edited by edit when it is not nil.
func (s *site) request(srv *httptest.Server, method, path string, edit func(*http.Request)) response {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.ctx, method, srv.URL+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if edit != nil {
		edit(req)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	checkSecurityHeaders(s.t, method+" "+path, resp.Header)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b), url: req.URL.String()}
}

func (s *site) stream(space string) int {
	s.t.Helper()
	n, err := s.be.RDB.XLen(s.ctx, s.store.StreamKey(space)).Result()
	if err != nil {
		s.t.Fatal(err)
	}
	return int(n)
}

func (s *site) status(addr string) string {
	s.t.Helper()
	c, err := s.dir.Customer(s.ctx, addr)
	if err != nil {
		return ""
	}
	return c.Status
}

// checkSecurityHeaders checks what every response must carry.
func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, want)
		}
	}
	for k, want := range map[string]string{
		"Referrer-Policy":        "no-referrer",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-store",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s %q, want %q", what, k, got, want)
		}
	}
}

// voidElements have no end tag.
var voidElements = map[string]bool{
	"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true, "img": true,
	"input": true, "link": true, "meta": true, "source": true, "track": true, "wbr": true,
}

// page checks that body is a well-formed, accessible HTML page (doctype,
// balanced tags, lang, a title, labelled buttons) and returns its tree.
func page(t *testing.T, body string) *html.Node {
	t.Helper()
	z := html.NewTokenizer(strings.NewReader(body))
	var stack []string
	first := true
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if z.Err() != io.EOF {
				t.Fatalf("tokenize: %v", z.Err())
			}
			break
		}
		tok := z.Token()
		if first && tt != html.TextToken {
			if tt != html.DoctypeToken || !strings.EqualFold(tok.Data, "html") {
				t.Errorf("page does not start with <!DOCTYPE html> but %s", tok)
			}
			first = false
		}
		switch tt {
		case html.StartTagToken:
			if !voidElements[tok.Data] {
				stack = append(stack, tok.Data)
			}
		case html.EndTagToken:
			if len(stack) == 0 || stack[len(stack)-1] != tok.Data {
				t.Fatalf("</%s> closes %v:\n%s", tok.Data, stack, body)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		t.Fatalf("unclosed elements %v:\n%s", stack, body)
	}
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	root := find(doc, atom.Html)
	if root == nil || attr(root, "lang") == "" {
		t.Errorf("no lang attribute on <html>")
	}
	if title := find(doc, atom.Title); title == nil || strings.TrimSpace(text(title)) == "" {
		t.Errorf("no title")
	}
	if h1 := find(doc, atom.H1); h1 == nil || strings.TrimSpace(text(h1)) == "" {
		t.Errorf("no heading")
	}
	for _, b := range findAll(doc, atom.Button) {
		if strings.TrimSpace(text(b)) == "" && attr(b, "aria-label") == "" {
			t.Errorf("a button has no label")
		}
	}
	return doc
}

func find(n *html.Node, a atom.Atom) *html.Node {
	if all := findAll(n, a); len(all) > 0 {
		return all[0]
	}
	return nil
}

func findAll(n *html.Node, a atom.Atom) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.DataAtom == a {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text is the text content of n, whitespace collapsed.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

// dump renders every key with its value, TTLs left out.
func dump(t *testing.T, ctx context.Context, rdb *redis.Client) string {
	t.Helper()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		typ := rdb.Type(ctx, k).Val()
		var v any
		switch typ {
		case "string":
			v = rdb.Get(ctx, k).Val()
		case "hash":
			v = rdb.HGetAll(ctx, k).Val()
		case "list":
			v = rdb.LRange(ctx, k, 0, -1).Val()
		case "set":
			m := rdb.SMembers(ctx, k).Val()
			sort.Strings(m)
			v = m
		case "zset":
			v = rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
		case "stream":
			v = rdb.XRange(ctx, k, "-", "+").Val()
		}
		fmt.Fprintf(&b, "%s %s %v\n", k, typ, v)
	}
	return b.String()
}
