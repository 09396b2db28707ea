package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/metrics"
	"mailgw/route"
)

// ioTimeout bounds every single wait on a connection or a server in these
// tests: a hang fails the test instead of stalling it.
const ioTimeout = 10 * time.Second

// testYAML is the configuration every test starts from: an open space IT
// and a restricted space BILL on example.com, a few customers and an agent.
const testYAML = `
hostname: mx.test.example
smtp:
  listen: "127.0.0.1:0"
access:
  internal_domains: [example.com]
  external_accounts: listed_domains
  external_domains: [partner.example]
  signup: verify
  blocked: ["spam.example"]
spaces:
  - {key: IT, name: IT help, addresses: [it@example.com], channel_access: open}
  - {key: BILL, name: Billing, addresses: [billing@example.com], channel_access: restricted, organizations: [Partner]}
organizations:
  - {name: Partner, domains: [partner.example], members: [bob@partner.example]}
customers:
  - {email: carol@example.com, name: Carol, type: internal}
  - {email: frank@partner.example, name: Frank, status: disabled}
agents: [agent@example.com]
`

// testConfig parses testYAML; callers override SMTP fields on the result.
func testConfig(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(testYAML))
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	return cfg
}

// syncBuffer is a log sink the server's goroutines write to while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// received is one message the fake handler was given.
type received struct {
	env ingest.Envelope
	raw []byte
}

// recorded is one decision the listener recorded before ingest.
type recorded struct {
	env ingest.Envelope
	sd  ingest.SpaceDecision
}

// fakeHandler implements Handler with scripted decisions. It keeps what it
// was given; script, when set, decides (and may block or panic), otherwise
// every routed recipient's space queues the message.
type fakeHandler struct {
	router *route.Router

	mu      sync.Mutex
	script  func(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result
	msgs    []received
	records []recorded
	seq     int
}

func newFakeHandler(t testing.TB, cfg *config.Config) *fakeHandler {
	t.Helper()
	r, err := route.NewRouter(cfg.Spaces)
	if err != nil {
		t.Fatalf("route.NewRouter: %v", err)
	}
	return &fakeHandler{router: r}
}

func (h *fakeHandler) setScript(f func(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.script = f
}

func (h *fakeHandler) Handle(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result {
	h.mu.Lock()
	h.msgs = append(h.msgs, received{env: env, raw: append([]byte(nil), raw...)})
	script := h.script
	h.mu.Unlock()
	if script != nil {
		return script(ctx, env, raw)
	}
	return h.queueAll(env)
}

// queueAll queues the message in the space of each recipient.
func (h *fakeHandler) queueAll(env ingest.Envelope) ingest.Result {
	h.mu.Lock()
	defer h.mu.Unlock()
	var res ingest.Result
	seen := map[string]bool{}
	for _, rcpt := range env.Recipients {
		sp, ok := h.router.Route(rcpt)
		if !ok || seen[sp.Key] {
			continue
		}
		seen[sp.Key] = true
		h.seq++
		res.Decisions = append(res.Decisions, ingest.SpaceDecision{Space: sp.Key, Recipient: rcpt, Decision: identify.Decision{
			Outcome: identify.Queued, Reason: identify.ReasonAccepted, Request: fmt.Sprintf("%s-%d", sp.Key, h.seq)}})
	}
	return res
}

func (h *fakeHandler) Record(_ context.Context, env ingest.Envelope, sd ingest.SpaceDecision) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, recorded{env: env, sd: sd})
}

func (h *fakeHandler) Router() *route.Router { return h.router }

func (h *fakeHandler) messages() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]received(nil), h.msgs...)
}

// takeMessages returns the messages received so far and forgets them.
func (h *fakeHandler) takeMessages() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.msgs
	h.msgs, h.records = nil, nil
	return out
}

func (h *fakeHandler) recordedDecisions() []recorded {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]recorded(nil), h.records...)
}

// blocker makes Handle wait inside ingest until released (or until the
// server's base context ends), to hold a message in flight.
type blocker struct {
	entered chan struct{} // one value per Handle call that started waiting
	release chan struct{} // closed to let every waiting Handle go on
	once    sync.Once
}

func newBlocker() *blocker {
	return &blocker{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (b *blocker) script(h *fakeHandler) func(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result {
	return func(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result {
		b.entered <- struct{}{}
		select {
		case <-b.release:
		case <-ctx.Done():
			return ingest.Result{Decisions: []ingest.SpaceDecision{{Space: "IT", Decision: identify.Decision{
				Outcome: identify.Deferred, Reason: identify.ReasonBackendUnavailable, Detail: ctx.Err().Error()}}}}
		}
		return h.queueAll(env)
	}
}

func (b *blocker) open() { b.once.Do(func() { close(b.release) }) }

// waitEntered waits until a Handle call is blocked inside the handler.
func (b *blocker) waitEntered(t testing.TB) {
	t.Helper()
	select {
	case <-b.entered:
	case <-time.After(ioTimeout):
		t.Fatal("message never reached the handler")
	}
}

// testServer is a listener on 127.0.0.1:0 serving in a goroutine.
type testServer struct {
	srv    *Server
	addr   string
	logs   *syncBuffer
	reg    *metrics.Registry
	served chan error
}

// startServer starts a Server for cfg with handler h; it is shut down when
// the test ends.
func startServer(t testing.TB, cfg *config.Config, h Handler) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	srv, err := New(cfg.SMTP, cfg.Hostname, cfg.Spaces, h, zerolog.New(logs))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Serving instrumented, as serve does, keeps the counting on every
	// path the tests take.
	reg := metrics.NewRegistry()
	srv.Instrument(reg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ts := &testServer{srv: srv, addr: ln.Addr().String(), logs: logs, reg: reg, served: make(chan error, 1)}
	go func() { ts.served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // may have run already in the test
		select {
		case err := <-ts.served:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(ioTimeout):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return ts
}

// fakeServer starts a server with a fake handler; mod adjusts the config
// before the server is built.
func fakeServer(t testing.TB, mod func(*config.Config)) (*testServer, *fakeHandler) {
	t.Helper()
	cfg := testConfig(t)
	if mod != nil {
		mod(cfg)
	}
	h := newFakeHandler(t, cfg)
	return startServer(t, cfg, h), h
}

// reply is one SMTP reply, possibly of several lines.
type reply struct {
	code  int
	lines []string // text after "ddd-" or "ddd "
}

func (r reply) text() string { return strings.Join(r.lines, "\n") }

func (r reply) String() string { return fmt.Sprintf("%d %s", r.code, r.text()) }

// enhanced returns the enhanced status code that starts the last line, or "".
func (r reply) enhanced() string {
	if len(r.lines) == 0 {
		return ""
	}
	f, _, _ := strings.Cut(r.lines[len(r.lines)-1], " ")
	if strings.Count(f, ".") == 2 && f[0] >= '2' && f[0] <= '5' {
		return f
	}
	return ""
}

// rawConn is a client that writes exact bytes and reads replies line by
// line, every read bounded by ioTimeout.
type rawConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	return dialRawFrom(t, addr, nil)
}

func dialRawFrom(t testing.TB, addr string, local net.Addr) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: local}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write %.40q: %v", s, err)
	}
}

// readReply reads one complete reply.
func (c *rawConn) readReply() (reply, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	var r reply
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return r, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || (line[3] != ' ' && line[3] != '-') {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		r.code = code
		r.lines = append(r.lines, line[4:])
		if line[3] == ' ' {
			return r, nil
		}
	}
}

func (c *rawConn) reply() reply {
	c.t.Helper()
	r, err := c.readReply()
	if err != nil {
		c.t.Fatalf("read reply: %v (so far %v)", err, r)
	}
	return r
}

// expect reads a reply and checks its code and, when not "", its enhanced
// status code.
func (c *rawConn) expect(code int, enhanced string) reply {
	c.t.Helper()
	r := c.reply()
	if r.code != code || (enhanced != "" && r.enhanced() != enhanced) {
		c.t.Fatalf("got reply %v, want %d %s", r, code, enhanced)
	}
	return r
}

// cmd sends one command line and returns its reply.
func (c *rawConn) cmd(line string) reply {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.reply()
}

// greet reads the greeting and says EHLO.
func (c *rawConn) greet() reply {
	c.t.Helper()
	c.expect(220, "")
	c.send("EHLO client.example\r\n")
	return c.expect(250, "")
}

// waitClosed reads until the server closes the connection and returns
// the replies it sent before; it fails the test if the connection is still
// open after ioTimeout.
func (c *rawConn) waitClosed() []reply {
	c.t.Helper()
	var got []reply
	for {
		r, err := c.readReply()
		if err == nil {
			got = append(got, r)
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection still open after %v (replies so far: %v)", ioTimeout, got)
		}
		return got
	}
}

// message builds a small well-formed message with CRLF line ends.
func message(from, to, subject, body string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@client.example>\r\n\r\n" + body + "\r\n"
}

// selfSignedCert writes a certificate for 127.0.0.1 and localhost and its
// key into a temporary directory and returns their paths and the parsed
// certificate.
func selfSignedCert(t testing.TB) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mx.test.example"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost", "mx.test.example"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}
