package smtp

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailgw/config"
	"mailgw/ingest"
)

// eventually retries f until it returns true or ioTimeout passes.
func eventually(t testing.TB, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, ioTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// greeting dials addr from local (nil: any) and returns the first reply
// and whether the server closed the connection right after it.
func greeting(t testing.TB, addr string, local net.Addr) (reply, bool) {
	t.Helper()
	c := dialRawFrom(t, addr, local)
	r := c.reply()
	if r.code != 220 {
		return r, len(c.waitClosed()) == 0
	}
	return r, false
}

func TestMaxConnections(t *testing.T) {
	ts, _ := fakeServer(t, func(c *config.Config) {
		c.SMTP.MaxConnections = 2
		c.SMTP.MaxConnectionsPerIP = 100
	})
	a, b := dialRaw(t, ts.addr), dialRaw(t, ts.addr)
	a.expect(220, "")
	b.expect(220, "")

	r, closed := greeting(t, ts.addr, nil)
	if r.code != 421 || r.enhanced() != "4.7.0" || !closed {
		t.Fatalf("third connection: %v (closed %v), want 421 4.7.0 and close", r, closed)
	}
	// Both admitted sessions still work.
	a.send("EHLO a.example\r\n")
	a.expect(250, "")

	// A slot freed by QUIT is given to the next client.
	b.cmd("QUIT")
	b.waitClosed()
	eventually(t, "connection admitted after one closed", func() bool {
		r, _ := greeting(t, ts.addr, nil)
		return r.code == 220
	})
}

func TestMaxConnectionsPerIP(t *testing.T) {
	ts, _ := fakeServer(t, func(c *config.Config) {
		c.SMTP.MaxConnections = 10
		c.SMTP.MaxConnectionsPerIP = 1
	})
	a := dialRawFrom(t, ts.addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	a.expect(220, "")

	r, closed := greeting(t, ts.addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if r.code != 421 || r.enhanced() != "4.7.0" || !closed {
		t.Fatalf("second connection from 127.0.0.1: %v (closed %v), want 421 4.7.0 and close", r, closed)
	}

	// Another address has its own allowance. Binding 127.0.0.2 works on
	// Linux's loopback; elsewhere this part cannot run.
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	if probe, err := d.Dial("tcp", ts.addr); err != nil {
		t.Logf("cannot dial from 127.0.0.2 (%v): per-address accounting checked for one address only", err)
	} else {
		_ = probe.Close()
		eventually(t, "127.0.0.2 admitted", func() bool {
			r, _ := greeting(t, ts.addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
			return r.code == 220
		})
	}

	// The limit is per connection alive, not per connection ever made.
	a.cmd("QUIT")
	a.waitClosed()
	eventually(t, "127.0.0.1 admitted again", func() bool {
		r, _ := greeting(t, ts.addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return r.code == 220
	})
}

func TestLongCommandLine(t *testing.T) {
	ts, _ := fakeServer(t, func(c *config.Config) { c.SMTP.MaxLineLength = 1000 })
	c := dialRaw(t, ts.addr)
	c.greet()
	// A line within the limit is fine.
	if r := c.cmd("NOOP " + strings.Repeat("x", 900)); r.code != 250 {
		t.Fatalf("900-byte NOOP: %v", r)
	}
	c.send("MAIL FROM:<" + strings.Repeat("a", 3000) + "@example.com>\r\n")
	got := c.waitClosed()
	if len(got) == 0 || got[0].code/100 != 5 {
		t.Fatalf("long command line: replies %v, want an error reply", got)
	}
}

func TestLongDataLine(t *testing.T) {
	long := strings.Repeat("y", 1500)
	tests := []struct {
		name string
		msg  string
	}{
		{"header", "From: carol@example.com\r\nSubject: " + long + "\r\n\r\nbody\r\n"},
		{"body", "From: carol@example.com\r\nSubject: long\r\n\r\n" + long + "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, h := fakeServer(t, func(c *config.Config) { c.SMTP.MaxLineLength = 1000 })
			c := dialRaw(t, ts.addr)
			c.greet()
			c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n")
			c.expect(250, "")
			c.expect(250, "")
			c.expect(354, "")
			c.send(tt.msg + ".\r\n")
			r, err := c.readReply()
			if err != nil {
				t.Fatalf("no reply to the data: %v", err)
			}
			// The line is as long on every retry: the refusal must be
			// permanent, or the sending MTA retries it for days.
			if r.code/100 != 5 {
				t.Errorf("DATA with a %d-byte %s line = %v, want a permanent (5xx) refusal", len(long), tt.name, r)
			}
			if len(h.messages()) != 0 {
				t.Error("handler got the message")
			}
		})
	}
	t.Run("at the limit", func(t *testing.T) {
		ts, h := fakeServer(t, func(c *config.Config) { c.SMTP.MaxLineLength = 1000 })
		c := dialRaw(t, ts.addr)
		c.greet()
		c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n")
		c.expect(250, "")
		c.expect(250, "")
		c.expect(354, "")
		c.send("From: carol@example.com\r\nSubject: ok\r\n\r\n" + strings.Repeat("z", 998) + "\r\n.\r\n")
		c.expect(250, "2.0.0")
		if len(h.messages()) != 1 {
			t.Error("handler did not get the message")
		}
	})
}

// TestSlowloris: a client that trickles its data far below MinDataRate is
// cut off once DataGrace has passed.
func TestSlowloris(t *testing.T) {
	ts, h := fakeServer(t, func(c *config.Config) {
		c.SMTP.DataGrace = config.Duration(200 * time.Millisecond)
		c.SMTP.MinDataRate = 1000
	})
	c := dialRaw(t, ts.addr)
	c.greet()
	c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n")
	c.expect(250, "")
	c.expect(250, "")
	c.expect(354, "")

	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = c.c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := io.WriteString(c.c, "X-S: 1\r\n"); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-trickled }()

	got := c.waitClosed()
	for _, r := range got {
		if r.code != 421 {
			t.Errorf("slow client got %v, want at most a 421 before the close", r)
		}
	}
	if len(h.messages()) != 0 {
		t.Error("handler got the trickled message")
	}
	// The server goes on.
	d := dialRaw(t, ts.addr)
	d.greet()
}

// TestInflightBudget: messages held in memory share one budget; a message
// that does not fit gets 451 4.3.1 and can be retried once memory is free.
func TestInflightBudget(t *testing.T) {
	const budget = 256 << 10
	ts, h := fakeServer(t, func(c *config.Config) {
		c.SMTP.MaxInflightBytes = budget
		c.SMTP.MaxMessageBytes = budget
	})
	b := newBlocker()
	h.setScript(b.script(h))
	t.Cleanup(b.open)

	msg := message("carol@example.com", "it@example.com", "big", strings.Repeat(strings.Repeat("m", 98)+"\r\n", 2048)) // ~200 KiB

	first := make(chan error, 1)
	go func() {
		c, err := gosmtp.Dial(ts.addr)
		if err != nil {
			first <- err
			return
		}
		defer c.Close()
		c.CommandTimeout, c.SubmissionTimeout = ioTimeout, ioTimeout
		_, err = send(c, "carol@example.com", []string{"it@example.com"}, msg)
		first <- err
	}()
	select {
	case <-b.entered:
	case err := <-first:
		t.Fatalf("first %d-byte message alone, with max_message_bytes = max_inflight_bytes = %d: got %v, want it to reach the handler", len(msg), budget, err)
	case <-time.After(ioTimeout):
		t.Fatal("first message never reached the handler")
	}

	c := dialClient(t, ts.addr)
	_, err := send(c, "carol@example.com", []string{"it@example.com"}, msg)
	if se := smtpErr(t, err); se.Code != 451 || se.EnhancedCode != (gosmtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("second concurrent message: %v, want 451 4.3.1", err)
	}

	b.open()
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("first message after release: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("first message got no reply after release")
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := send(c, "carol@example.com", []string{"it@example.com"}, msg); err != nil {
		t.Fatalf("retry once memory is free: %v", err)
	}
	if n := len(h.messages()); n != 2 {
		t.Errorf("handler got %d messages, want 2", n)
	}
}

// TestInflightBudgetShared checks the budget with room for one largest
// message and a bit: a second large message in flight at the same time is
// deferred, small ones still pass.
func TestInflightBudgetShared(t *testing.T) {
	const max = 256 << 10
	ts, h := fakeServer(t, func(c *config.Config) {
		c.SMTP.MaxMessageBytes = max
		c.SMTP.MaxInflightBytes = max + max/2
	})
	b := newBlocker()
	h.setScript(b.script(h))
	t.Cleanup(b.open)
	big := message("carol@example.com", "it@example.com", "big", strings.Repeat(strings.Repeat("m", 98)+"\r\n", 2048))

	first := make(chan error, 1)
	go func() {
		c, err := gosmtp.Dial(ts.addr)
		if err != nil {
			first <- err
			return
		}
		defer c.Close()
		c.CommandTimeout, c.SubmissionTimeout = ioTimeout, ioTimeout
		_, err = send(c, "carol@example.com", []string{"it@example.com"}, big)
		first <- err
	}()
	b.waitEntered(t)

	c := dialClient(t, ts.addr)
	_, err := send(c, "carol@example.com", []string{"it@example.com"}, big)
	if se := smtpErr(t, err); se.Code != 451 || se.EnhancedCode != (gosmtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("second big message: %v, want 451 4.3.1", err)
	}
	b.open()
	if err := <-first; err != nil {
		t.Fatalf("first message: %v", err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := send(c, "carol@example.com", []string{"it@example.com"}, big); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

func TestHandlerPanic(t *testing.T) {
	ts, h := fakeServer(t, nil)
	h.setScript(func(context.Context, ingest.Envelope, []byte) ingest.Result {
		panic("boom: secret-internal state")
	})
	c := dialClient(t, ts.addr)
	_, err := send(c, "carol@example.com", []string{"it@example.com"}, message("carol@example.com", "it@example.com", "panic", "x"))
	se := smtpErr(t, err)
	if se.Code/100 != 4 {
		t.Errorf("panic answered %d %v %q, want a temporary (4xx) failure", se.Code, se.EnhancedCode, se.Message)
	}
	if strings.Contains(se.Message, "secret") || strings.Contains(se.Message, "boom") {
		t.Errorf("reply %q leaks the panic", se.Message)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, `"level":"error"`) || !strings.Contains(logs, "boom") {
		t.Errorf("no error log line about the panic:\n%s", logs)
	}

	// The server, and this very session, go on.
	h.setScript(nil)
	if err := c.Reset(); err != nil {
		t.Fatalf("RSET after the panic: %v", err)
	}
	if _, err := send(c, "carol@example.com", []string{"it@example.com"}, message("carol@example.com", "it@example.com", "after", "x")); err != nil {
		t.Errorf("same session after the panic: %v", err)
	}
	d := dialClient(t, ts.addr)
	if _, err := send(d, "carol@example.com", []string{"it@example.com"}, message("carol@example.com", "it@example.com", "next", "x")); err != nil {
		t.Errorf("new connection after the panic: %v", err)
	}
}

func TestHandlerPanicLMTP(t *testing.T) {
	ts, h := fakeServer(t, func(c *config.Config) { c.SMTP.LMTP = true })
	h.setScript(func(context.Context, ingest.Envelope, []byte) ingest.Result { panic("boom") })
	c := dialRaw(t, ts.addr)
	c.expect(220, "")
	c.send("LHLO client.example\r\n")
	c.expect(250, "")
	c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nRCPT TO:<billing@example.com>\r\nDATA\r\n")
	c.expect(250, "")
	c.expect(250, "")
	c.expect(250, "")
	c.expect(354, "")
	c.send(message("carol@example.com", "it@example.com", "p", "x") + ".\r\n")
	for i := 0; i < 2; i++ {
		if r := c.reply(); r.code/100 != 4 {
			t.Errorf("recipient %d after a panic: %v, want 4xx", i, r)
		}
	}
	if r := c.cmd("NOOP"); r.code != 250 {
		t.Errorf("NOOP after the panic: %v", r)
	}
	if !strings.Contains(ts.logs.String(), `"level":"error"`) {
		t.Errorf("no error log line:\n%s", ts.logs.String())
	}
}

// startBlocked starts a transaction whose message is held inside the
// handler and returns the channel its DATA result arrives on.
func startBlocked(t *testing.T, ts *testServer, b *blocker, quit bool) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	conn, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	go func() {
		c := gosmtp.NewClient(conn)
		c.CommandTimeout, c.SubmissionTimeout = ioTimeout, ioTimeout
		_, err := send(c, "carol@example.com", []string{"it@example.com"}, message("carol@example.com", "it@example.com", "in flight", "x"))
		done <- err
		if err == nil && quit {
			// The server may already have closed the connection after
			// the reply, as a drain should: QUIT's own result is moot.
			_ = c.Quit()
		}
	}()
	b.waitEntered(t)
	return done
}

func TestDrain(t *testing.T) {
	for _, quit := range []bool{true, false} {
		name := "client quits after the reply"
		if !quit {
			name = "client stays connected after the reply"
		}
		t.Run(name, func(t *testing.T) {
			ts, h := fakeServer(t, nil)
			b := newBlocker()
			h.setScript(b.script(h))
			t.Cleanup(b.open)

			idle := dialRaw(t, ts.addr)
			idle.greet()
			inflight := startBlocked(t, ts, b, quit)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			shut := make(chan error, 1)
			go func() { shut <- ts.srv.Shutdown(ctx) }()

			// The idle session is closed at once: nothing was accepted on it.
			for _, r := range idle.waitClosed() {
				if r.code != 421 {
					t.Errorf("idle session got %v before the close", r)
				}
			}
			// New connections are refused.
			eventually(t, "new connections refused", func() bool {
				c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
				if err != nil {
					return true
				}
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
				line := make([]byte, 3)
				n, _ := io.ReadFull(c, line)
				return n < 3 || string(line) == "421"
			})
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned %v with a message in flight", err)
			default:
			}

			// The message in flight completes and gets its 250.
			b.open()
			select {
			case err := <-inflight:
				if err != nil {
					t.Fatalf("message in flight: %v, want 250", err)
				}
			case <-time.After(ioTimeout):
				t.Fatal("message in flight got no reply")
			}
			select {
			case err := <-shut:
				if err != nil {
					t.Errorf("Shutdown = %v, want nil once the transaction in flight finished", err)
				}
			case <-time.After(ioTimeout):
				t.Fatal("Shutdown did not return")
			}
			if n := len(h.messages()); n != 1 {
				t.Errorf("handler got %d messages, want 1", n)
			}
		})
	}
}

func TestDrainDeadline(t *testing.T) {
	ts, h := fakeServer(t, nil)
	b := newBlocker()
	h.setScript(b.script(h))
	t.Cleanup(b.open)

	c := dialRaw(t, ts.addr)
	c.greet()
	c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n")
	c.expect(250, "")
	c.expect(250, "")
	c.expect(354, "")
	c.send(message("carol@example.com", "it@example.com", "stuck", "x") + ".\r\n")
	b.waitEntered(t)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- ts.srv.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want the deadline error", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Shutdown did not return after its deadline")
	}
	// The connection is closed; it never got a 250.
	for _, r := range c.waitClosed() {
		if r.code == 250 {
			t.Errorf("message accepted after the drain gave up: %v", r)
		}
	}
}
