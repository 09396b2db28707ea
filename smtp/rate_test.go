package smtp

import (
	"net"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailgw/config"
)

func TestIPRate(t *testing.T) {
	now := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	r := newIPRate(config.Limit{Count: 2, Window: config.Duration(time.Minute)})
	r.now = func() time.Time { return now }

	for i, want := range []struct {
		n  int
		ok bool
	}{{1, true}, {2, true}, {3, false}, {4, false}} {
		if n, ok := r.allow("192.0.2.1"); n != want.n || ok != want.ok {
			t.Fatalf("event %d: (%d, %v), want (%d, %v)", i+1, n, ok, want.n, want.ok)
		}
	}
	// Each address has its own count.
	if n, ok := r.allow("192.0.2.2"); n != 1 || !ok {
		t.Fatalf("other address: (%d, %v)", n, ok)
	}
	// A unix socket peer has no address and is never limited.
	for range 10 {
		if _, ok := r.allow(""); !ok {
			t.Fatal("empty address limited")
		}
	}
	// Within the window the count stays; after it, it starts again.
	now = now.Add(59 * time.Second)
	if _, ok := r.allow("192.0.2.1"); ok {
		t.Fatal("allowed again before the window ended")
	}
	now = now.Add(time.Second)
	if n, ok := r.allow("192.0.2.1"); n != 1 || !ok {
		t.Fatalf("new window: (%d, %v), want (1, true)", n, ok)
	}

	// A limit that is off, and a nil limiter, allow everything.
	off := newIPRate(config.Limit{Count: -1, Window: config.Duration(time.Minute)})
	var none *ipRate
	for range 100 {
		if _, ok := off.allow("192.0.2.1"); !ok {
			t.Fatal("limit off refused")
		}
		if _, ok := none.allow("192.0.2.1"); !ok {
			t.Fatal("nil limiter refused")
		}
	}
}

// TestMessageRatePerIP: with message_rate_per_ip {count: 3} the fourth MAIL
// from one address, over any number of connections, gets 451 4.7.1 and the
// refusal is logged with its counter.
func TestMessageRatePerIP(t *testing.T) {
	ts, h := fakeServer(t, func(c *config.Config) {
		c.SMTP.MessageRatePerIP = config.Limit{Count: 3, Window: config.Duration(time.Hour)}
	})
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	a := dialRawFrom(t, ts.addr, local)
	a.greet()
	for i := range 2 {
		a.send("MAIL FROM:<carol@example.com>\r\n")
		a.expect(250, "")
		a.send("RCPT TO:<it@example.com>\r\n")
		a.expect(250, "")
		a.send("DATA\r\n")
		a.expect(354, "")
		a.send(message("carol@example.com", "it@example.com", "Rate "+string(rune('a'+i)), "Hello") + ".\r\n")
		a.expect(250, "")
	}
	b := dialRawFrom(t, ts.addr, local)
	b.greet()
	b.send("MAIL FROM:<carol@example.com>\r\n")
	b.expect(250, "")
	b.send("RSET\r\n")
	b.expect(250, "")

	r := b.cmd("MAIL FROM:<carol@example.com>")
	if r.code != 451 || r.enhanced() != "4.7.1" || !strings.Contains(r.text(), "rate_limited") {
		t.Fatalf("4th MAIL: %v, want 451 4.7.1 ... (rate_limited)", r)
	}
	// The session goes on, and no transaction was opened.
	b.send("RCPT TO:<it@example.com>\r\n")
	b.expect(502, "5.5.1")
	b.send("NOOP\r\n")
	b.expect(250, "")
	if got := len(h.messages()); got != 2 {
		t.Errorf("%d messages reached the handler, want 2", got)
	}
	a.send("MAIL FROM:<carol@example.com>\r\n")
	a.expect(451, "4.7.1")

	logs := ts.logs.String()
	for _, want := range []string{`"message":"message rate limit reached"`, `"count":4`, `"count":5`, `"limit":3`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

// TestConnectionRatePerIP: with connection_rate_per_ip {count: 2} the
// third connection from one address gets a 421 greeting and is closed;
// the refusal is logged with its counter.
func TestConnectionRatePerIP(t *testing.T) {
	ts, _ := fakeServer(t, func(c *config.Config) {
		c.SMTP.ConnectionRatePerIP = config.Limit{Count: 2, Window: config.Duration(time.Hour)}
	})
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	for range 2 {
		c := dialRawFrom(t, ts.addr, local)
		c.expect(220, "")
		c.cmd("QUIT")
		c.waitClosed()
	}
	r, closed := greeting(t, ts.addr, local)
	if r.code != 421 || r.enhanced() != "4.7.0" || !closed {
		t.Fatalf("3rd connection: %v (closed %v), want 421 4.7.0 and close", r, closed)
	}
	// Closed connections still count: it is a rate, not a concurrency limit.
	if r, _ := greeting(t, ts.addr, local); r.code != 421 {
		t.Fatalf("4th connection: %v, want 421", r)
	}
	eventually(t, "refusals logged", func() bool {
		logs := ts.logs.String()
		return strings.Contains(logs, `"message":"connection rate limit reached: refused"`) &&
			strings.Contains(logs, `"count":3`) && strings.Contains(logs, `"count":4`) && strings.Contains(logs, `"limit":2`)
	})
}

// TestRealSenderRateLimit: a sender over rate.sender gets 451 4.7.1 from
// the real ingest handler, and nothing of that message is queued.
func TestRealSenderRateLimit(t *testing.T) {
	rs := startReal(t, func(c *config.Config) {
		// A window of a year: the test cannot straddle two of them.
		c.Rate.Sender = config.Limit{Count: 3, Window: config.Duration(365 * 24 * time.Hour)}
	})
	c := dialClient(t, rs.addr)
	for i := range 4 {
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		subject := "Flood " + string(rune('a'+i))
		text, err := send(c, "carol@example.com", []string{"it@example.com"}, mail("carol@example.com", "it@example.com", subject))
		if i < 3 {
			if err != nil {
				t.Fatalf("message %d: %v", i+1, err)
			}
			continue
		}
		se := smtpErr(t, err)
		if se.Code != 451 || se.EnhancedCode != (gosmtp.EnhancedCode{4, 7, 1}) || !strings.Contains(se.Message, "rate_limited") {
			t.Fatalf("4th message: %d %v %q (%q), want 451 4.7.1 rate_limited", se.Code, se.EnhancedCode, se.Message, text)
		}
		if strings.Contains(se.Message, "4 messages") {
			t.Errorf("reply %q shows the internal counter", se.Message)
		}
	}
	if n := rs.streamLen(t, "IT"); n != 3 {
		t.Errorf("stream has %d entries, want 3", n)
	}
}
