package browser_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"

	"mailgw/internal/proctest"
)

const (
	hostname      = "mx.example.com"
	chromiumPath  = "/usr/bin/chromium"
	installAdvice = "run scripts/test.sh, which installs it"
	readyTimeout  = 10 * time.Second // bound on a new mailgw answering SMTP and HTTP
	ioTimeout     = 10 * time.Second // per SMTP conversation and per HTTP request
	mailTimeout   = 20 * time.Second // bound on the verification mail reaching the sink
	navTimeout    = 15 * time.Second // bound on one page load in the browser
	bindAttempts  = 5                // fresh ports tried when mailgw cannot bind
)

// mailgwBin is the binary TestMain builds; every test runs it.
var mailgwBin string

func TestMain(m *testing.M) {
	os.Exit(proctest.RunMailgwTests(m, "mailgw-browser-", &mailgwBin))
}

// syncBuffer is a bytes.Buffer safe for a child's writer and the test.
type syncBuffer = proctest.SyncBuffer

// ---- the smarthost ----

// sinkMessage is one message the sink accepted.
type sinkMessage struct {
	From string
	To   []string
	Data []byte
}

// sink is an SMTP server on 127.0.0.1 that keeps every message it is
// given: mailgw's smarthost.
type sink struct {
	Addr string

	mu   sync.Mutex
	msgs []sinkMessage
	more chan struct{} // closed and replaced when a message arrives
}

func startSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{more: make(chan struct{})}
	srv := smtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.ReadTimeout = ioTimeout
	srv.WriteTimeout = ioTimeout
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 10
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})
	return s
}

// NewSession implements smtp.Backend.
func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s}, nil }

func (s *sink) add(m sinkMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.more)
	s.more = make(chan struct{})
}

// messagesTo returns the messages with rcpt among their recipients and a
// channel closed when the next message arrives.
func (s *sink) messagesTo(rcpt string) ([]sinkMessage, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sinkMessage
	for _, m := range s.msgs {
		for _, to := range m.To {
			if strings.EqualFold(to, rcpt) {
				out = append(out, m)
				break
			}
		}
	}
	return out, s.more
}

// waitFor waits up to mailTimeout for a message to rcpt and returns the
// first one.
func (s *sink) waitFor(t testing.TB, rcpt string) sinkMessage {
	t.Helper()
	deadline := time.After(mailTimeout)
	for {
		msgs, more := s.messagesTo(rcpt)
		if len(msgs) > 0 {
			return msgs[0]
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("no mail for %s reached the smarthost within %v", rcpt, mailTimeout)
		}
	}
}

type sinkSession struct {
	sink *sink
	from string
	to   []string
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.sink.add(sinkMessage{From: ss.from, To: ss.to, Data: b})
	return nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

// verificationMail is what a test reads from a verification mail.
type verificationMail struct {
	Header mail.Header
	Text   string // the decoded text/plain part
	HTML   string // the decoded text/html part
	Link   string // the link in the text part
}

// parseVerification decodes a verification mail and finds the link to
// publicURL in its text part.
func parseVerification(t testing.TB, raw []byte, publicURL string) verificationMail {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("verification mail does not parse: %v\n%s", err, raw)
	}
	v := verificationMail{Header: msg.Header}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("verification mail has Content-Type %q (%v), want multipart/alternative", msg.Header.Get("Content-Type"), err)
	}
	// multipart.Reader decodes quoted-printable parts itself.
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("verification mail: %v", err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("verification mail part: %v", err)
		}
		switch pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); pt {
		case "text/plain":
			v.Text = string(body)
		case "text/html":
			v.HTML = string(body)
		}
	}
	if v.Text == "" {
		t.Fatalf("verification mail has no text/plain part:\n%s", raw)
	}
	re := regexp.MustCompile(regexp.QuoteMeta(publicURL) + `/verify/[A-Za-z0-9_-]+`)
	links := re.FindAllString(v.Text, -1)
	if len(links) != 1 {
		t.Fatalf("text part of the verification mail has %d links to %s/verify/, want 1:\n%s", len(links), publicURL, v.Text)
	}
	v.Link = links[0]
	return v
}

// ---- mailgw ----

// adminToken opens the decision-log page of every gateway under test.
const adminToken = "browser-test-admin-token-5f1e"

// gwOptions configure one mailgw under test.
type gwOptions struct {
	RedisURL  string
	Smarthost string // host:port of the sink
	VerifyTTL string // verify.ttl, e.g. "48h"
}

const configTemplate = `hostname: %s
redis: {url: %q}
smtp: {listen: "127.0.0.1:%d"}
http: {listen: "127.0.0.1:%d", public_url: "http://127.0.0.1:%d", admin_token_env: MAILGW_ADMIN_TOKEN}
outbound:
  smarthost: %q
  from: "Example Support <support@example.com>"
  tls: none
access:
  internal_domains: [example.com]
  signup: verify
verify: {ttl: %s}
spaces:
  - {key: IT, name: IT help, addresses: [it@example.com], channel_access: open}
`

// gateway is one "mailgw serve" started by a test.
type gateway struct {
	SMTPAddr  string // 127.0.0.1:PORT
	PublicURL string // http://127.0.0.1:PORT, also where it listens for HTTP

	proc *proctest.Mailgw
}

// startGateway writes a config for opts and runs "mailgw serve" on free
// ports, trying other ports if the child cannot bind.
func startGateway(t *testing.T, opts gwOptions) *gateway {
	t.Helper()
	for attempt := 1; ; attempt++ {
		smtpPort, httpPort := proctest.MustFreePort(t), proctest.MustFreePort(t)
		cfg := filepath.Join(t.TempDir(), "mailgw.yaml")
		text := fmt.Sprintf(configTemplate, hostname, opts.RedisURL, smtpPort, httpPort, httpPort, opts.Smarthost, opts.VerifyTTL)
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		g := &gateway{proc: proctest.StartMailgwEnv(t, mailgwBin, []string{"MAILGW_ADMIN_TOKEN=" + adminToken}, "serve", "--config", cfg)}
		g.SMTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(smtpPort))
		g.PublicURL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
		err := g.waitReady()
		if err == nil {
			return g
		}
		if g.proc.BindFailed() && attempt < bindAttempts {
			t.Logf("mailgw could not bind its ports, trying others")
			continue
		}
		t.Fatalf("mailgw (SMTP %s, HTTP %s): %v", g.SMTPAddr, g.PublicURL, err)
	}
}

// waitReady waits until mailgw greets on SMTP and answers /healthz, the
// child exits, or readyTimeout passes.
func (g *gateway) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	err := g.proc.WaitReady(readyTimeout, 20*time.Millisecond, func() error {
		if err := proctest.ProbeSMTPGreeting(g.SMTPAddr, hostname); err != nil {
			return err
		}
		return probeHealth(client, g.PublicURL+"/healthz")
	})
	if err != nil {
		return fmt.Errorf("mailgw %w", err)
	}
	return nil
}

func probeHealth(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// countLogLines counts mailgw's stderr lines that contain every one of
// parts (its log is JSON, one object a line).
func (g *gateway) countLogLines(parts ...string) int {
	n := 0
lines:
	for _, line := range strings.Split(g.proc.Stderr.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		n++
	}
	return n
}

// send delivers one message over SMTP with go-smtp's client and returns
// the text of the 250 reply to DATA.
func send(t testing.TB, addr, from, to string, msg []byte) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	c := smtp.NewClient(conn)
	if err := c.Hello("client.example.com"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatalf("MAIL FROM:<%s>: %v", from, err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		t.Fatalf("RCPT TO:<%s>: %v", to, err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatalf("DATA: %v", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	_ = c.Quit()
	return resp.StatusText
}

// message builds a plain-text message with CRLF line ends.
func message(from, to, messageID, subject, body string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\n", from, to, subject)
	b.WriteString("Date: Tue, 24 Nov 2026 08:00:00 +0000\r\n")
	fmt.Fprintf(&b, "Message-ID: <%s>\r\n", messageID)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString(body + "\r\n")
	return []byte(b.String())
}

// httpGet fetches url with a plain client and returns the status and body.
func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	return httpDo(t, http.MethodGet, url)
}

func httpDo(t testing.TB, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := (&http.Client{Timeout: ioTimeout}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, string(body)
}

// ---- Chromium ----

// startBrowser starts a headless Chromium with a fresh profile and returns
// the context of its first tab. The browser lives until ctx ends or the
// test's cleanup closes it; its output is shown when the test failed.
func startBrowser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	requireChromium(t)
	var out syncBuffer
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// A tab in the background runs as one in front: the test uses
		// two.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		// Reloading the page a POST returned posts again without asking.
		chromedp.Flag("disable-prompt-on-repost", true),
		// Going back always fetches the page again, rather than
		// sometimes restoring it from the back/forward cache, so what the
		// test sees after Back does not depend on Chromium's heuristics.
		chromedp.Flag("disable-features", "BackForwardCache,Translate,OptimizationHints,MediaRouter"),
		chromedp.WindowSize(1024, 768),
		chromedp.CombinedOutput(&out),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser to exit
		if t.Failed() {
			t.Logf("chromium output%s", proctest.LastLines(out.String(), 30))
		}
	})
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("start %s: %v\nits output%s", chromiumPath, err, proctest.LastLines(out.String(), 30))
	}
	return tabCtx
}

// requireChromium fails the test when Debian's Chromium is missing: a
// skipped test would hide defects.
func requireChromium(t testing.TB) {
	t.Helper()
	if fi, err := os.Stat(chromiumPath); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s is not installed: %s", chromiumPath, installAdvice)
	}
}

// screenshot saves a PNG of the tab's viewport in the test's temporary
// directory and, when MAILGW_SCREENSHOTS names a directory, there too.
func screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("MAILGW_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("MAILGW_SCREENSHOTS: %v", err)
		}
		keep := filepath.Join(dir, name)
		if err := os.WriteFile(keep, png, 0o644); err != nil {
			t.Fatalf("MAILGW_SCREENSHOTS: %v", err)
		}
		t.Logf("screenshot: %s", keep)
	}
	return path
}
