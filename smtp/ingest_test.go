package smtp

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/redistest"
	"mailgw/route"
)

// realServer is a listener in front of the real ingest.Handler on
// miniredis, wired as `mailgw serve` wires it.
type realServer struct {
	*testServer
	cfg  *config.Config
	rdb  *redis.Client
	mini *miniredis.Miniredis
	h    *ingest.Handler
}

func startReal(t *testing.T, mod func(*config.Config)) *realServer {
	t.Helper()
	cfg := testConfig(t)
	cfg.Redis.Timeout = config.Duration(2 * time.Second)
	if mod != nil {
		mod(cfg)
	}
	rdb, mini := redistest.Mini(t)
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := identify.NewDirectory(rdb, cfg.Redis.Prefix, cfg.Redis.Timeout.D()).Seed(ctx, cfg); err != nil {
		t.Fatalf("seed: %v", err)
	}
	h, err := ingest.New(cfg, rdb, zerolog.Nop(), ingest.Options{})
	if err != nil {
		t.Fatalf("ingest.New: %v", err)
	}
	return &realServer{testServer: startServer(t, cfg, h), cfg: cfg, rdb: rdb, mini: mini, h: h}
}

// streamLen returns the number of entries on a space's request stream.
func (rs *realServer) streamLen(t testing.TB, space string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	n, err := rs.rdb.XLen(ctx, ingest.NewStore(rs.cfg, rs.rdb).StreamKey(space)).Result()
	if err != nil {
		t.Fatalf("XLEN: %v", err)
	}
	return n
}

// mail is a message as a mail client would write it.
func mail(from, to, subject string, extra ...string) string {
	h := "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "." + strings.ReplaceAll(from, "@", ".") + "@client.example>\r\n"
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h + "\r\nPlease help.\r\n"
}

func TestRealPolicyReplies(t *testing.T) {
	rs := startReal(t, nil)
	tests := []struct {
		name     string
		from     string
		to       []string
		extra    []string
		code     int
		enhanced gosmtp.EnhancedCode
		contains string
	}{
		{"internal customer to open space", "carol@example.com", []string{"it@example.com"}, nil, 250, gosmtp.EnhancedCode{2, 0, 0}, "queued as IT-1"},
		{"agent", "agent@example.com", []string{"billing@example.com"}, nil, 250, gosmtp.EnhancedCode{2, 0, 0}, "queued as BILL-"},
		{"unknown sender of a linked organization held", "bob@partner.example", []string{"billing@example.com"}, nil, 250, gosmtp.EnhancedCode{2, 0, 0}, "pending_verification"},
		{"customer not of the restricted space", "carol@example.com", []string{"billing@example.com"}, nil, 550, gosmtp.EnhancedCode{5, 7, 1}, "not_space_customer"},
		{"disabled account", "frank@partner.example", []string{"it@example.com"}, nil, 550, gosmtp.EnhancedCode{5, 7, 1}, "account_disabled"},
		{"blocked sender", "spammer@spam.example", []string{"it@example.com"}, nil, 550, gosmtp.EnhancedCode{5, 7, 1}, "blocked_sender"},
		{"domain not allowed", "stranger@elsewhere.example", []string{"it@example.com"}, nil, 550, gosmtp.EnhancedCode{5, 7, 1}, "domain_not_allowed"},
		{"unknown internal sender held", "newbie@example.com", []string{"it@example.com"}, nil, 250, gosmtp.EnhancedCode{2, 0, 0}, "pending_verification"},
		{"auto-reply ignored", "carol@example.com", []string{"it@example.com"}, []string{"Auto-Submitted: auto-replied"}, 250, gosmtp.EnhancedCode{2, 0, 0}, "auto_reply"},
		{"one space takes it", "carol@example.com", []string{"billing@example.com", "it+multi@example.com"}, nil, 250, gosmtp.EnhancedCode{2, 0, 0}, "queued as IT-"},
	}
	c := dialClient(t, rs.addr)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.Reset(); err != nil {
				t.Fatal(err)
			}
			text, err := send(c, tt.from, tt.to, mail(tt.from, tt.to[0], tt.name, tt.extra...))
			code, enhanced := 250, gosmtp.EnhancedCode{2, 0, 0}
			if err != nil {
				se := smtpErr(t, err)
				code, enhanced, text = se.Code, se.EnhancedCode, se.Message
			}
			if code != tt.code || enhanced != tt.enhanced || !strings.Contains(text, tt.contains) {
				t.Errorf("reply %d %v %q, want %d %v containing %q", code, enhanced, text, tt.code, tt.enhanced, tt.contains)
			}
		})
	}
}

// TestRealDuplicate: the same message sent twice is queued once.
func TestRealDuplicate(t *testing.T) {
	rs := startReal(t, nil)
	c := dialClient(t, rs.addr)
	msg := mail("carol@example.com", "it@example.com", "twice")
	for i := 0; i < 2; i++ {
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		if _, err := send(c, "carol@example.com", []string{"it@example.com"}, msg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if n := rs.streamLen(t, "IT"); n != 1 {
		t.Errorf("stream has %d entries, want 1", n)
	}
}

// TestRealRcptRefusalLogged: a recipient refused at RCPT is in the
// decision log.
func TestRealRcptRefusalLogged(t *testing.T) {
	rs := startReal(t, nil)
	c := dialClient(t, rs.addr)
	if err := c.Mail("carol@example.com", nil); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("sales@example.com", nil)
	if se := smtpErr(t, err); se.Code != 550 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 1, 1}) {
		t.Fatalf("RCPT sales@: %v, want 550 5.1.1", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	entries, _, err := ingest.NewStore(rs.cfg, rs.rdb).LastLog(ctx, 10, func(route.Entry) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		if e.Reason == string(identify.ReasonNoRoute) && e.Channel == ingest.ChannelSMTP && e.From == "carol@example.com" {
			found = true
		}
	}
	if !found {
		t.Errorf("decision log %+v lacks the no_route refusal", entries)
	}
}

// TestRealRedisDown: while Redis fails the message is deferred with
// nothing written; the client's retry after recovery is queued once.
func TestRealRedisDown(t *testing.T) {
	rs := startReal(t, nil)
	c := dialClient(t, rs.addr)
	msg := mail("carol@example.com", "it@example.com", "during outage")

	rs.mini.SetError("LOADING simulated outage")
	_, err := send(c, "carol@example.com", []string{"it@example.com"}, msg)
	se := smtpErr(t, err)
	if se.Code != 451 || se.EnhancedCode != (gosmtp.EnhancedCode{4, 3, 0}) || !strings.Contains(se.Message, "backend_unavailable") {
		t.Fatalf("send during outage: %v, want 451 4.3.0 backend_unavailable", err)
	}
	if strings.Contains(se.Message, "LOADING") || strings.Contains(se.Message, "simulated") {
		t.Errorf("reply %q leaks the Redis error", se.Message)
	}
	rs.mini.SetError("")

	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if n := rs.streamLen(t, "IT"); n != 0 {
		t.Fatalf("stream has %d entries after a deferred message, want 0", n)
	}
	for _, pattern := range []string{"*raw*", "*msg*", "*seq*", "*hold*"} {
		keys, err := rs.rdb.Keys(ctx, pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 0 {
			t.Errorf("keys %v written for a deferred message", keys)
		}
	}

	// The sending MTA retries the same message.
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	text, err := send(c, "carol@example.com", []string{"it@example.com"}, msg)
	if err != nil {
		t.Fatalf("retry after recovery: %v", err)
	}
	if !strings.Contains(text, "queued as IT-1") {
		t.Errorf("retry reply %q, want queued as IT-1", text)
	}
	if n := rs.streamLen(t, "IT"); n != 1 {
		t.Errorf("stream has %d entries, want exactly 1", n)
	}
	// A second retry (the MTA did not see the 250) is no second entry.
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := send(c, "carol@example.com", []string{"it@example.com"}, msg); err != nil {
		t.Fatalf("second retry: %v", err)
	}
	if n := rs.streamLen(t, "IT"); n != 1 {
		t.Errorf("stream has %d entries after a duplicate retry, want 1", n)
	}
}

// TestRealRedisDownMultiSpace: one space deferred defers the message; the
// retry completes that space and is a duplicate for the other.
func TestRealRedisDownMultiSpace(t *testing.T) {
	rs := startReal(t, nil)
	c := dialClient(t, rs.addr)
	msg := mail("agent@example.com", "it@example.com", "both spaces")
	rs.mini.SetError("LOADING simulated outage")
	_, err := send(c, "agent@example.com", []string{"it@example.com", "billing@example.com"}, msg)
	if se := smtpErr(t, err); se.Code != 451 {
		t.Fatalf("during outage: %v, want 451", err)
	}
	rs.mini.SetError("")
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := send(c, "agent@example.com", []string{"it@example.com", "billing@example.com"}, msg); err != nil {
		t.Fatalf("retry: %v", err)
	}
	for _, sp := range []string{"IT", "BILL"} {
		if n := rs.streamLen(t, sp); n != 1 {
			t.Errorf("%s stream has %d entries, want 1", sp, n)
		}
	}
}

func TestRealLMTP(t *testing.T) {
	rs := startReal(t, func(c *config.Config) { c.SMTP.LMTP = true })
	conn, err := net.DialTimeout("tcp", rs.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c := gosmtp.NewClientLMTP(conn)
	c.CommandTimeout, c.SubmissionTimeout = ioTimeout, ioTimeout
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Hello("mta.example.com"); err != nil {
		t.Fatalf("LHLO: %v", err)
	}
	if err := c.Mail("carol@example.com", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"it@example.com", "billing@example.com"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(w, mail("carol@example.com", "it@example.com, billing@example.com", "lmtp both"))
	resp, err := w.CloseWithLMTPResponse()
	var lerr gosmtp.LMTPDataError
	if !errors.As(err, &lerr) {
		t.Fatalf("DATA: %v, want one recipient refused", err)
	}
	if r := resp["it@example.com"]; r == nil || !strings.Contains(r.StatusText, "queued as IT-1") {
		t.Errorf("it@: %+v, want 250 queued as IT-1", r)
	}
	se := lerr["billing@example.com"]
	if se == nil || se.Code != 550 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 1}) || !strings.Contains(se.Message, "not_space_customer") {
		t.Errorf("billing@: %+v, want 550 5.7.1 not_space_customer", se)
	}
	if len(lerr) != 1 {
		t.Errorf("refused %v, want only billing@", lerr)
	}
	if n := rs.streamLen(t, "IT"); n != 1 {
		t.Errorf("IT stream has %d entries, want 1", n)
	}
	if n := rs.streamLen(t, "BILL"); n != 0 {
		t.Errorf("BILL stream has %d entries, want 0", n)
	}
}
