package smtp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
)

// dialClient connects go-smtp's client to addr with bounded timeouts.
func dialClient(t testing.TB, addr string) *gosmtp.Client {
	t.Helper()
	c, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.CommandTimeout, c.SubmissionTimeout = ioTimeout, ioTimeout
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// send runs one transaction on c and returns the DATA reply text, or the
// first error.
func send(c *gosmtp.Client, from string, to []string, msg string) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

// smtpErr returns err as a *gosmtp.SMTPError or fails the test.
func smtpErr(t testing.TB, err error) *gosmtp.SMTPError {
	t.Helper()
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("got error %v (%T), want an SMTP reply", err, err)
	}
	return se
}

func TestEHLOCapabilities(t *testing.T) {
	certFile, keyFile, _ := selfSignedCert(t)
	tests := []struct {
		name     string
		tls      bool
		maxBytes int64
	}{
		{name: "plain", maxBytes: 12345},
		{name: "with certificate", tls: true, maxBytes: 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, _ := fakeServer(t, func(c *config.Config) {
				c.SMTP.MaxMessageBytes = tt.maxBytes
				if tt.tls {
					c.SMTP.TLS = config.TLS{Cert: certFile, Key: keyFile}
				}
			})
			c := dialRaw(t, ts.addr)
			r := c.greet()
			caps := map[string]bool{}
			for _, l := range r.lines[1:] {
				caps[l] = true
			}
			// go-smtp advertises its own limit, which New sets one byte
			// above max_message_bytes (see there); MAIL SIZE= and the data
			// are held to the exact limit.
			for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "CHUNKING", "ENHANCEDSTATUSCODES", fmt.Sprintf("SIZE %d", tt.maxBytes+1)} {
				if !caps[want] {
					t.Errorf("EHLO lacks %q: %q", want, r.lines)
				}
			}
			if caps["STARTTLS"] != tt.tls {
				t.Errorf("STARTTLS advertised = %v, want %v: %q", caps["STARTTLS"], tt.tls, r.lines)
			}
			for l := range caps {
				if strings.HasPrefix(l, "AUTH") {
					t.Errorf("EHLO offers %q: a gateway for inbound mail has no logins", l)
				}
			}
		})
	}
}

func TestSTARTTLSDelivers(t *testing.T) {
	certFile, keyFile, cert := selfSignedCert(t)
	ts, h := fakeServer(t, func(c *config.Config) { c.SMTP.TLS = config.TLS{Cert: certFile, Key: keyFile} })

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	c, err := gosmtp.DialStartTLS(ts.addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("DialStartTLS: %v", err)
	}
	c.CommandTimeout, c.SubmissionTimeout = ioTimeout, ioTimeout
	t.Cleanup(func() { _ = c.Close() })
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("client is not on TLS after STARTTLS")
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS still advertised on a TLS connection")
	}
	text, err := send(c, "carol@example.com", []string{"it@example.com"}, message("carol@example.com", "it@example.com", "over tls", "hello"))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if !strings.Contains(text, "IT-1") {
		t.Errorf("reply %q does not name the request", text)
	}
	msgs := h.messages()
	if len(msgs) != 1 {
		t.Fatalf("handler got %d messages, want 1", len(msgs))
	}
	trace, _, _ := strings.Cut(string(msgs[0].raw), ";")
	if !strings.HasPrefix(trace, "Received: from localhost ([127.0.0.1])\r\n\tby mx.test.example (mailgw) with ESMTPS") {
		t.Errorf("trace header = %q, want a Received line saying ESMTPS", trace)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

func TestReceivedTracePlain(t *testing.T) {
	ts, h := fakeServer(t, nil)
	rc := dialRaw(t, ts.addr)
	rc.expect(220, "")
	rc.cmd("EHLO cl(i)ent.example")
	rc.cmd("MAIL FROM:<carol@example.com>")
	rc.cmd("RCPT TO:<it@example.com>")
	rc.send("DATA\r\n")
	rc.expect(354, "")
	rc.send(message("carol@example.com", "it@example.com", "trace", "x") + ".\r\n")
	rc.expect(250, "2.0.0")
	msgs := h.messages()
	if len(msgs) != 1 {
		t.Fatalf("handler got %d messages, want 1", len(msgs))
	}
	raw := string(msgs[0].raw)
	if !strings.HasPrefix(raw, "Received: from client.example ([127.0.0.1])\r\n\tby mx.test.example (mailgw) with ESMTP;\r\n\t") {
		t.Errorf("trace = %.120q: want the HELO name without parentheses and ESMTP", raw)
	}
	if !strings.Contains(raw, "\r\n\r\nx\r\n") || !strings.HasSuffix(raw, "x\r\n") {
		t.Errorf("message body not kept byte for byte: %q", raw)
	}
	env := msgs[0].env
	if env.Channel != ingest.ChannelSMTP || env.MailFrom != "carol@example.com" || env.NullSender ||
		!slices.Equal(env.Recipients, []string{"it@example.com"}) || env.ReceivedAt.IsZero() || env.RemoteAddr == "" {
		t.Errorf("envelope = %+v", env)
	}
}

func TestNullSender(t *testing.T) {
	ts, h := fakeServer(t, nil)
	c := dialRaw(t, ts.addr)
	c.greet()
	c.send("MAIL FROM:<>\r\n")
	c.expect(250, "")
	c.send("RCPT TO:<it@example.com>\r\nDATA\r\n")
	c.expect(250, "")
	c.expect(354, "")
	c.send(message("mailer-daemon@other.example", "it@example.com", "bounce", "x") + ".\r\n")
	c.expect(250, "")
	msgs := h.messages()
	if len(msgs) != 1 || !msgs[0].env.NullSender || msgs[0].env.MailFrom != "" {
		t.Fatalf("handler got %+v, want one message from the null sender", msgs)
	}
}

func TestRcptRefusals(t *testing.T) {
	ts, h := fakeServer(t, nil)
	tests := []struct {
		name     string
		rcpt     string // the RCPT argument as sent
		codes    []int  // any of these
		enhanced string // "" when any
		reason   bool   // the refusal is recorded as no_route
	}{
		{name: "support address", rcpt: "<it@example.com>", codes: []int{250}},
		{name: "support address other case", rcpt: "<IT@Example.COM>", codes: []int{250}},
		{name: "support address with tag", rcpt: "<it+printer@example.com>", codes: []int{250}},
		{name: "unknown local part", rcpt: "<nobody@example.com>", codes: []int{550}, enhanced: "5.1.1", reason: true},
		{name: "other domain", rcpt: "<someone@other.example>", codes: []int{550}, enhanced: "5.7.1", reason: true},
		{name: "our address at another domain", rcpt: "<it@example.org>", codes: []int{550}, enhanced: "5.7.1", reason: true},
		{name: "percent hack", rcpt: "<user%other.example@example.com>", codes: []int{550}, enhanced: "5.7.1", reason: true},
		{name: "percent hack to a support address", rcpt: "<it%other.example@example.com>", codes: []int{550}, enhanced: "5.7.1", reason: true},
		{name: "bang path", rcpt: "<other.example!user@example.com>", codes: []int{550}, enhanced: "5.7.1", reason: true},
		{name: "quoted at sign", rcpt: `<"x@y"@example.com>`, codes: []int{550}, enhanced: "5.7.1", reason: true},
		{name: "quoted support address at other domain", rcpt: `<"it@example.com"@other.example>`, codes: []int{550}, enhanced: "5.7.1", reason: true},
		{name: "source route", rcpt: "<@relay.example:user@other.example>", codes: []int{550}, enhanced: "5.7.1", reason: true},
		{name: "source route with two hops", rcpt: "<@a.example,@b.example:user@other.example>", codes: []int{550}, enhanced: "5.7.1", reason: true},
		{name: "no at sign", rcpt: "<it>", codes: []int{501, 550}},
		{name: "empty domain", rcpt: "<it@>", codes: []int{501, 550}},
		{name: "empty path", rcpt: "<>", codes: []int{501, 550}},
		{name: "space in local part", rcpt: "<i t@example.com>", codes: []int{501, 550}},
		{name: "quoted space", rcpt: `<"i t"@example.com>`, codes: []int{501, 550}},
		{name: "bad domain", rcpt: "<it@exa_mple..com>", codes: []int{501, 550}},
		{name: "unclosed bracket", rcpt: "<it@example.com", codes: []int{501, 550}},
	}
	c := dialRaw(t, ts.addr)
	c.greet()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			before := len(h.recordedDecisions())
			c.cmd("RSET")
			if r := c.cmd("MAIL FROM:<carol@example.com>"); r.code != 250 {
				t.Fatalf("MAIL: %v", r)
			}
			r := c.cmd("RCPT TO:" + tt.rcpt)
			if !slices.Contains(tt.codes, r.code) || (tt.enhanced != "" && r.enhanced() != tt.enhanced) {
				t.Fatalf("RCPT TO:%s = %v, want %v %s", tt.rcpt, r, tt.codes, tt.enhanced)
			}
			if r.code >= 500 && !strings.Contains(r.text(), "no_route") && tt.reason {
				t.Errorf("reply %v does not name the reason no_route", r)
			}
			recs := h.recordedDecisions()[before:]
			if tt.reason {
				if len(recs) != 1 || recs[0].sd.Reason != identify.ReasonNoRoute || recs[0].sd.Outcome != identify.Rejected {
					t.Errorf("recorded %+v, want one rejected no_route decision", recs)
				}
			}
			if r.code == 250 && len(recs) != 0 {
				t.Errorf("an accepted recipient was recorded as %+v", recs)
			}
		})
	}
	c.t = t
	if len(h.messages()) != 0 {
		t.Error("a message reached the handler")
	}
}

func TestSenders(t *testing.T) {
	ts, _ := fakeServer(t, nil)
	c := dialRaw(t, ts.addr)
	c.greet()
	tests := []struct {
		arg  string // after MAIL FROM:
		code int
	}{
		{"<carol@example.com>", 250},
		{"<>", 250},
		{"<SRS0=abcd=XY=example.org=user@fwd.example>", 250},
		{"<bounce-123-user=example.com@lists.example>", 250},
		{"<user@[192.0.2.1]>", 250},
		{"<a.b-c_d'e@sub.example.co.uk>", 250},
		{"<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8", 250},
		{"<user@münchen.example> SMTPUTF8 BODY=8BITMIME", 250},
		{"<carol>", 501},
		{"<carol@>", 501},
		{"<ca rol@example.com>", 501},
		{"<carol@exa mple.com>", 501},
		{"<carol@example.com> BODY=BINARYMIME", 504},
		{"<carol@example.com> SIZE=abc", 501},
	}
	for _, tt := range tests {
		if r := c.cmd("MAIL FROM:" + tt.arg); r.code != tt.code {
			t.Errorf("MAIL FROM:%s = %v, want %d", tt.arg, r, tt.code)
		}
		if r := c.cmd("RSET"); r.code != 250 {
			t.Fatalf("RSET: %v", r)
		}
	}
}

// TestNestedMail: a second MAIL inside a transaction is refused and the
// transaction goes on with its first sender and recipients, so the
// message is handed over with the envelope the client was told about.
func TestNestedMail(t *testing.T) {
	ts, h := fakeServer(t, nil)
	c := dialRaw(t, ts.addr)
	c.greet()
	steps := []struct {
		line string
		code int
	}{
		{"MAIL FROM:<carol@example.com>", 250},
		{"RCPT TO:<it@example.com>", 250},
		{"MAIL FROM:<mallory@example.com>", 503},
		{"MAIL FROM:<>", 503},
		{"DATA", 354},
		{message("carol@example.com", "it@example.com", "nested", "hello") + ".", 250},
		// After the transaction, and after RSET, MAIL starts a new one.
		{"MAIL FROM:<bob@partner.example>", 250},
		{"RSET", 250},
		{"MAIL FROM:<carol@example.com>", 250},
	}
	for _, st := range steps {
		if r := c.cmd(st.line); r.code != st.code || st.code == 503 && r.enhanced() != "5.5.1" {
			t.Fatalf("%.30q: %v, want %d", st.line, r, st.code)
		}
	}
	msgs := h.takeMessages()
	if len(msgs) != 1 || msgs[0].env.MailFrom != "carol@example.com" || !slices.Equal(msgs[0].env.Recipients, []string{"it@example.com"}) {
		t.Fatalf("handed over %+v, want carol's message to it@", msgs)
	}
}

func TestTooManyRecipients(t *testing.T) {
	ts, h := fakeServer(t, func(c *config.Config) { c.SMTP.MaxRecipients = 2 })
	c := dialRaw(t, ts.addr)
	c.greet()
	c.cmd("MAIL FROM:<carol@example.com>")
	for _, rcpt := range []string{"it@example.com", "billing@example.com"} {
		if r := c.cmd("RCPT TO:<" + rcpt + ">"); r.code != 250 {
			t.Fatalf("RCPT %s: %v", rcpt, r)
		}
	}
	r := c.cmd("RCPT TO:<it+more@example.com>")
	if r.code != 452 || r.enhanced() != "4.5.3" {
		t.Fatalf("third RCPT = %v, want 452 4.5.3", r)
	}
	// The transaction goes on with the recipients already accepted.
	c.send("DATA\r\n")
	c.expect(354, "")
	c.send(message("carol@example.com", "it@example.com", "two", "x") + ".\r\n")
	c.expect(250, "2.0.0")
	msgs := h.messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].env.Recipients, []string{"it@example.com", "billing@example.com"}) {
		t.Fatalf("handler got %+v", msgs)
	}
}

// decided returns a script that answers every message with ds.
func decided(ds ...ingest.SpaceDecision) func(context.Context, ingest.Envelope, []byte) ingest.Result {
	return func(context.Context, ingest.Envelope, []byte) ingest.Result {
		return ingest.Result{MessageID: "<m@client.example>", Decisions: ds}
	}
}

func sd(space string, o identify.Outcome, r identify.Reason, request string) ingest.SpaceDecision {
	return ingest.SpaceDecision{Space: space, Recipient: strings.ToLower(space) + "@example.com", Decision: identify.Decision{
		Outcome: o, Reason: r, Request: request, Detail: "secret-internal: dial tcp 10.0.0.7:6379: connection refused"}}
}

func TestPolicyReplies(t *testing.T) {
	tests := []struct {
		name     string
		ds       []ingest.SpaceDecision
		code     int
		enhanced string
		contains []string
	}{
		{"no_route", []ingest.SpaceDecision{sd("IT", identify.Rejected, identify.ReasonNoRoute, "")}, 550, "5.1.1", []string{"no_route"}},
		{"too_large", []ingest.SpaceDecision{sd("IT", identify.Rejected, identify.ReasonTooLarge, "")}, 552, "5.3.4", []string{"too_large"}},
		{"malformed", []ingest.SpaceDecision{sd("IT", identify.Rejected, identify.ReasonMalformed, "")}, 554, "5.6.0", []string{"malformed"}},
		{"blocked_sender", []ingest.SpaceDecision{sd("IT", identify.Rejected, identify.ReasonBlockedSender, "")}, 550, "5.7.1", []string{"blocked_sender"}},
		{"unauthenticated_sender", []ingest.SpaceDecision{sd("IT", identify.Rejected, identify.ReasonUnauthenticated, "")}, 550, "5.7.26", []string{"unauthenticated_sender"}},
		{"not_space_customer", []ingest.SpaceDecision{sd("BILL", identify.Rejected, identify.ReasonNotSpaceCustomer, "")}, 550, "5.7.1", []string{"not_space_customer"}},
		{"account_disabled", []ingest.SpaceDecision{sd("IT", identify.Rejected, identify.ReasonAccountDisabled, "")}, 550, "5.7.1", []string{"account_disabled"}},
		{"unknown_sender", []ingest.SpaceDecision{sd("IT", identify.Rejected, identify.ReasonUnknownSender, "")}, 550, "5.7.1", []string{"unknown_sender"}},
		{"domain_not_allowed", []ingest.SpaceDecision{sd("IT", identify.Rejected, identify.ReasonDomainNotAllowed, "")}, 550, "5.7.1", []string{"domain_not_allowed"}},
		{"backend_unavailable", []ingest.SpaceDecision{sd("IT", identify.Deferred, identify.ReasonBackendUnavailable, "")}, 451, "4.3.0", []string{"backend_unavailable"}},
		{"rate_limited", []ingest.SpaceDecision{sd("IT", identify.Deferred, identify.ReasonRateLimited, "")}, 451, "4.7.1", []string{"rate_limited"}},
		{"unlisted reason refused", []ingest.SpaceDecision{sd("IT", identify.Rejected, "mystery", "")}, 550, "5.7.1", []string{"mystery"}},
		{"unlisted reason deferred", []ingest.SpaceDecision{sd("IT", identify.Deferred, "mystery", "")}, 451, "4.3.0", []string{"mystery"}},
		{"no decision at all", nil, 550, "5.1.1", nil},
		{"queued", []ingest.SpaceDecision{sd("IT", identify.Queued, identify.ReasonAccepted, "IT-42")}, 250, "2.0.0", []string{"IT-42"}},
		{"queued new customer", []ingest.SpaceDecision{sd("IT", identify.Queued, identify.ReasonAcceptedNewCustomer, "IT-43")}, 250, "2.0.0", []string{"IT-43"}},
		{"comment", []ingest.SpaceDecision{sd("IT", identify.Queued, identify.ReasonComment, "IT-7")}, 250, "2.0.0", []string{"IT-7"}},
		{"held", []ingest.SpaceDecision{sd("IT", identify.Held, identify.ReasonPendingVerification, "")}, 250, "2.0.0", []string{"pending_verification"}},
		{"ignored auto_reply", []ingest.SpaceDecision{sd("IT", identify.Ignored, identify.ReasonAutoReply, "")}, 250, "2.0.0", nil},
		{"ignored bounce", []ingest.SpaceDecision{sd("IT", identify.Ignored, identify.ReasonBounce, "")}, 250, "2.0.0", nil},
		{"ignored bulk", []ingest.SpaceDecision{sd("IT", identify.Ignored, identify.ReasonBulk, "")}, 250, "2.0.0", nil},
		{"ignored loop", []ingest.SpaceDecision{sd("IT", identify.Ignored, identify.ReasonLoop, "")}, 250, "2.0.0", nil},
		{"ignored duplicate", []ingest.SpaceDecision{sd("IT", identify.Ignored, identify.ReasonDuplicate, "IT-3")}, 250, "2.0.0", nil},

		// Several spaces: any deferral wins, then any space that took it,
		// then the first refusal.
		{"deferred beats queued", []ingest.SpaceDecision{
			sd("IT", identify.Queued, identify.ReasonAccepted, "IT-1"),
			sd("BILL", identify.Deferred, identify.ReasonBackendUnavailable, "")}, 451, "4.3.0", []string{"backend_unavailable"}},
		{"deferred beats refused", []ingest.SpaceDecision{
			sd("IT", identify.Rejected, identify.ReasonBlockedSender, ""),
			sd("BILL", identify.Deferred, identify.ReasonRateLimited, "")}, 451, "4.7.1", []string{"rate_limited"}},
		{"first deferral", []ingest.SpaceDecision{
			sd("IT", identify.Deferred, identify.ReasonRateLimited, ""),
			sd("BILL", identify.Deferred, identify.ReasonBackendUnavailable, "")}, 451, "4.7.1", []string{"rate_limited"}},
		{"queued beats refused", []ingest.SpaceDecision{
			sd("BILL", identify.Rejected, identify.ReasonNotSpaceCustomer, ""),
			sd("IT", identify.Queued, identify.ReasonAccepted, "IT-9")}, 250, "2.0.0", []string{"IT-9"}},
		{"held beats refused", []ingest.SpaceDecision{
			sd("IT", identify.Held, identify.ReasonPendingVerification, ""),
			sd("BILL", identify.Rejected, identify.ReasonNotSpaceCustomer, "")}, 250, "2.0.0", nil},
		{"ignored beats refused", []ingest.SpaceDecision{
			sd("IT", identify.Ignored, identify.ReasonDuplicate, "IT-2"),
			sd("BILL", identify.Rejected, identify.ReasonNotSpaceCustomer, "")}, 250, "2.0.0", nil},
		{"both queued", []ingest.SpaceDecision{
			sd("IT", identify.Queued, identify.ReasonAccepted, "IT-5"),
			sd("BILL", identify.Queued, identify.ReasonAccepted, "BILL-6")}, 250, "2.0.0", []string{"IT-5", "BILL-6"}},
		{"first refusal", []ingest.SpaceDecision{
			sd("BILL", identify.Rejected, identify.ReasonNotSpaceCustomer, ""),
			sd("IT", identify.Rejected, identify.ReasonBlockedSender, "")}, 550, "5.7.1", []string{"not_space_customer"}},
		{"first refusal by order", []ingest.SpaceDecision{
			sd("IT", identify.Rejected, identify.ReasonTooLarge, ""),
			sd("BILL", identify.Rejected, identify.ReasonNotSpaceCustomer, "")}, 552, "5.3.4", []string{"too_large"}},
	}
	ts, h := fakeServer(t, nil)
	c := dialClient(t, ts.addr)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.setScript(decided(tt.ds...))
			if err := c.Reset(); err != nil {
				t.Fatalf("RSET: %v", err)
			}
			text, err := send(c, "carol@example.com", []string{"it@example.com", "billing@example.com"},
				message("carol@example.com", "it@example.com", tt.name, "body"))
			code, enhanced := 250, "2.0.0"
			if err != nil {
				se := smtpErr(t, err)
				code, text = se.Code, se.Message
				enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
			}
			if code != tt.code || enhanced != tt.enhanced {
				t.Errorf("reply = %d %s %q, want %d %s", code, enhanced, text, tt.code, tt.enhanced)
			}
			for _, s := range tt.contains {
				if !strings.Contains(text, s) {
					t.Errorf("reply text %q lacks %q", text, s)
				}
			}
			for _, secret := range []string{"secret-internal", "10.0.0.7", "connection refused"} {
				if strings.Contains(text, secret) {
					t.Errorf("reply text %q leaks internal detail %q", text, secret)
				}
			}
		})
	}
}

// TestInternalErrorText checks the one place errors become replies: only
// the reply text of a Reply reaches the client, anything else is a bare
// 451 4.3.0.
func TestInternalErrorText(t *testing.T) {
	secret := errors.New("secret-internal: READONLY You can't write against a read only replica")
	tests := []struct {
		name     string
		err      error
		code     int
		enhanced gosmtp.EnhancedCode
		text     string
	}{
		{"plain error", secret, 451, gosmtp.EnhancedCode{4, 3, 0}, "Internal error, try again later"},
		{"wrapped plain error", fmt.Errorf("ingest: %w", secret), 451, gosmtp.EnhancedCode{4, 3, 0}, "Internal error, try again later"},
		{"go-smtp error passed through", &gosmtp.SMTPError{Code: 554, Message: "secret-internal"}, 451, gosmtp.EnhancedCode{4, 3, 0}, "Internal error, try again later"},
		{"reply with cause", replyReadFailed.withCause(secret), 451, gosmtp.EnhancedCode{4, 3, 0}, replyReadFailed.Text},
		{"wrapped reply", fmt.Errorf("smtp: read: %w", replyTooLarge.withCause(secret)), 552, gosmtp.EnhancedCode{5, 3, 4}, replyTooLarge.Text},
		{"decision reply", decisionReply(identify.Decision{Outcome: identify.Deferred, Reason: identify.ReasonBackendUnavailable, Detail: secret.Error()}), 451, gosmtp.EnhancedCode{4, 3, 0}, "Temporary failure, try again later (backend_unavailable)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toSMTP(tt.err)
			se, ok := got.(*gosmtp.SMTPError) // go-smtp checks with a type assertion
			if !ok {
				t.Fatalf("toSMTP returned %T, want *gosmtp.SMTPError unwrapped", got)
			}
			if se.Code != tt.code || se.EnhancedCode != tt.enhanced || se.Message != tt.text {
				t.Errorf("toSMTP = %d %v %q, want %d %v %q", se.Code, se.EnhancedCode, se.Message, tt.code, tt.enhanced, tt.text)
			}
			if strings.Contains(se.Message, "secret") {
				t.Errorf("reply %q leaks the internal error", se.Message)
			}
		})
	}
	if toSMTP(nil) != nil {
		t.Error("toSMTP(nil) != nil")
	}
	// The log still has the cause.
	if r := replyReadFailed.withCause(secret); !errors.Is(r, secret) || !strings.Contains(r.Error(), "secret-internal") {
		t.Errorf("Reply %v does not keep its cause for the log", r)
	}
}

func TestSizeLimit(t *testing.T) {
	const limit = 10000
	ts, h := fakeServer(t, func(c *config.Config) { c.SMTP.MaxMessageBytes = limit })
	c := dialRaw(t, ts.addr)
	c.greet()

	t.Run("SIZE parameter over the limit", func(t *testing.T) {
		c.t = t
		r := c.cmd(fmt.Sprintf("MAIL FROM:<carol@example.com> SIZE=%d", limit+1))
		if r.code != 552 || r.enhanced() != "5.3.4" {
			t.Errorf("MAIL with SIZE=%d = %v, want 552 5.3.4", limit+1, r)
		}
		c.cmd("RSET")
		if r := c.cmd(fmt.Sprintf("MAIL FROM:<carol@example.com> SIZE=%d", limit/2)); r.code != 250 {
			t.Errorf("MAIL with SIZE under the limit = %v", r)
		}
		c.cmd("RSET")
	})

	body := func(n int) string {
		head := message("carol@example.com", "it@example.com", "size", "")
		line := strings.Repeat("a", 78) + "\r\n"
		var b strings.Builder
		b.WriteString(head)
		for b.Len()+len(line)+2 <= n {
			b.WriteString(line)
		}
		b.WriteString(strings.Repeat("b", n-b.Len()-2) + "\r\n")
		return b.String()
	}
	tests := []struct {
		name string
		size int
		code int
	}{
		{"well under", limit / 2, 250},
		{"one under the limit", limit - 1, 250},
		{"at the limit", limit, 250},
		{"one over", limit + 1, 552},
		{"far over", 10 * limit, 552},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			before := len(h.messages())
			msg := body(tt.size)
			if len(msg) != tt.size {
				t.Fatalf("built %d bytes, want %d", len(msg), tt.size)
			}
			c.cmd("RSET")
			c.cmd("MAIL FROM:<carol@example.com>")
			c.cmd("RCPT TO:<it@example.com>")
			c.send("DATA\r\n")
			c.expect(354, "")
			c.send(msg + ".\r\n")
			r := c.reply()
			if r.code != tt.code {
				t.Fatalf("%d-byte message: reply %v, want %d", tt.size, r, tt.code)
			}
			got := len(h.messages()) - before
			if tt.code == 250 && got != 1 || tt.code != 250 && got != 0 {
				t.Errorf("handler got %d messages", got)
			}
			if tt.code == 552 {
				if r.enhanced() != "5.3.4" || !strings.Contains(r.text(), "too_large") {
					t.Errorf("reply %v, want 552 5.3.4 naming too_large", r)
				}
				recs := h.recordedDecisions()
				if len(recs) == 0 || recs[len(recs)-1].sd.Reason != identify.ReasonTooLarge {
					t.Errorf("refusal not recorded as too_large: %+v", recs)
				}
			}
			// The connection goes on.
			if r := c.cmd("NOOP"); r.code != 250 {
				t.Errorf("NOOP after the message: %v", r)
			}
		})
	}
}

// TestTaggedRecipient: local+tag@ reaches the space of local@ and the
// envelope keeps the address as sent.
func TestTaggedRecipient(t *testing.T) {
	ts, h := fakeServer(t, nil)
	c := dialClient(t, ts.addr)
	if _, err := send(c, "carol@example.com", []string{"it+x@example.com"}, message("carol@example.com", "it@example.com", "tag", "x")); err != nil {
		t.Fatalf("send: %v", err)
	}
	if msgs := h.messages(); len(msgs) != 1 || msgs[0].env.Recipients[0] != "it+x@example.com" {
		t.Fatalf("handler got %+v", msgs)
	}
}

func TestLMTPFakeHandler(t *testing.T) {
	ts, h := fakeServer(t, func(c *config.Config) { c.SMTP.LMTP = true })
	h.setScript(decided(
		ingest.SpaceDecision{Space: "IT", Recipient: "it@example.com", Decision: identify.Decision{Outcome: identify.Queued, Reason: identify.ReasonAccepted, Request: "IT-11"}},
		ingest.SpaceDecision{Space: "BILL", Recipient: "billing@example.com", Decision: identify.Decision{Outcome: identify.Rejected, Reason: identify.ReasonNotSpaceCustomer, Detail: "secret-internal"}},
	))
	conn, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c := gosmtp.NewClientLMTP(conn)
	c.CommandTimeout, c.SubmissionTimeout = ioTimeout, ioTimeout
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Hello("client.example"); err != nil {
		t.Fatalf("LHLO: %v", err)
	}
	if err := c.Mail("carol@example.com", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"it@example.com", "billing@example.com", "it+dup@example.com"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(w, message("carol@example.com", "it@example.com", "lmtp", "x"))
	resp, err := w.CloseWithLMTPResponse()
	var lerr gosmtp.LMTPDataError
	if !errors.As(err, &lerr) {
		t.Fatalf("DATA: %v, want per-recipient errors", err)
	}
	for _, ok := range []string{"it@example.com", "it+dup@example.com"} {
		if resp[ok] == nil || !strings.Contains(resp[ok].StatusText, "IT-11") {
			t.Errorf("%s: got %+v, want 250 naming IT-11", ok, resp[ok])
		}
	}
	se := lerr["billing@example.com"]
	if se == nil || se.Code != 550 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 1}) || !strings.Contains(se.Message, "not_space_customer") {
		t.Errorf("billing@: got %+v, want 550 5.7.1 not_space_customer", se)
	}
	if se != nil && strings.Contains(se.Message, "secret") {
		t.Errorf("reply %q leaks the detail", se.Message)
	}
	if len(lerr) != 1 {
		t.Errorf("refused recipients %v, want only billing@", lerr)
	}
	msgs := h.messages()
	if len(msgs) != 1 {
		t.Fatalf("handler got %d messages, want 1", len(msgs))
	}
	if !strings.Contains(string(msgs[0].raw), "with LMTP;") {
		t.Errorf("trace %.120q does not say LMTP", msgs[0].raw)
	}
}

func TestLMTPRefusesEHLO(t *testing.T) {
	ts, _ := fakeServer(t, func(c *config.Config) { c.SMTP.LMTP = true })
	c := dialRaw(t, ts.addr)
	if r := c.expect(220, ""); !strings.Contains(r.text(), "LMTP") {
		t.Errorf("greeting %v does not say LMTP", r)
	}
	if r := c.cmd("EHLO client.example"); r.code/100 != 5 {
		t.Errorf("EHLO on an LMTP server = %v, want a refusal", r)
	}
}
