package smtp

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/testkit"
	"mailgw/metrics"
)

// startInstrumented is fakeServer and the registry its server counts on.
func startInstrumented(t *testing.T, mod func(*config.Config)) (*testServer, *fakeHandler, *metrics.Registry) {
	t.Helper()
	ts, h := fakeServer(t, mod)
	return ts, h, ts.reg
}

const (
	connectionsSeries  = "mailgw_smtp_connections_total{"
	errorRepliesSeries = "mailgw_smtp_error_replies_total{"
	panicsSeries       = "mailgw_smtp_panics_total"
	openSeries         = "mailgw_smtp_connections_open "
)

// TestMetricsAcceptedMessage: a message taken with 250 is not an error
// reply, over SMTP and over LMTP (which answers once per recipient).
func TestMetricsAcceptedMessage(t *testing.T) {
	for _, tt := range []struct {
		name  string
		lmtp  bool
		hello string
	}{
		{name: "SMTP", hello: "EHLO"},
		{name: "LMTP", lmtp: true, hello: "LHLO"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts, h, reg := startInstrumented(t, func(c *config.Config) { c.SMTP.LMTP = tt.lmtp })
			c := dialRaw(t, ts.addr)
			c.expect(220, "")
			c.send(tt.hello + " client.example\r\n")
			c.expect(250, "")
			c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n")
			c.expect(250, "")
			c.expect(250, "")
			c.expect(354, "")
			c.send(message("carol@example.com", "it@example.com", "metrics ok", "x") + ".\r\n")
			c.expect(250, "2.0.0")
			c.cmd("QUIT")
			c.waitClosed()

			if n := len(h.messages()); n != 1 {
				t.Fatalf("handler got %d messages, want 1", n)
			}
			if got := testkit.MetricSamples(t, reg, errorRepliesSeries); got != nil {
				t.Errorf("error replies after an accepted message: %q, want none", got)
			}
			if got, want := testkit.MetricSamples(t, reg, connectionsSeries), []string{`mailgw_smtp_connections_total{result="accepted"} 1`}; !slices.Equal(got, want) {
				t.Errorf("connections = %q, want %q", got, want)
			}
			if got := testkit.MetricSamples(t, reg, panicsSeries); got != nil {
				t.Errorf("panics = %q, want none", got)
			}
		})
	}
}

// TestMetricsErrorReplies: each refusal the session answers is counted
// once under its reply code and enhanced code, and nothing else is.
func TestMetricsErrorReplies(t *testing.T) {
	type step struct {
		line string // sent with CRLF appended
		code int    // expected reply
	}
	transaction := func(subject string, code int) []step {
		return []step{{"MAIL FROM:<carol@example.com>", 250}, {"RCPT TO:<it@example.com>", 250}, {"DATA", 354},
			{message("carol@example.com", "it@example.com", subject, "x") + ".", code}}
	}
	tests := []struct {
		name   string
		mod    func(*config.Config)
		script func(context.Context, ingest.Envelope, []byte) ingest.Result
		steps  []step // after EHLO
		want   []string
	}{
		{
			name:  "unknown recipient",
			steps: []step{{"MAIL FROM:<carol@example.com>", 250}, {"RCPT TO:<nobody@example.com>", 550}},
			want:  []string{`mailgw_smtp_error_replies_total{code="550",enhanced="5.1.1"} 1`},
		},
		{
			name:  "relay attempt",
			steps: []step{{"MAIL FROM:<carol@example.com>", 250}, {"RCPT TO:<someone@other.example>", 550}},
			want:  []string{`mailgw_smtp_error_replies_total{code="550",enhanced="5.7.1"} 1`},
		},
		{
			name: "unknown recipient and relay attempt in one transaction",
			steps: []step{{"MAIL FROM:<carol@example.com>", 250}, {"RCPT TO:<nobody@example.com>", 550},
				{"RCPT TO:<someone@other.example>", 550}, {"RCPT TO:<x@other.example>", 550}, {"RCPT TO:<it@example.com>", 250}},
			want: []string{
				`mailgw_smtp_error_replies_total{code="550",enhanced="5.1.1"} 1`,
				`mailgw_smtp_error_replies_total{code="550",enhanced="5.7.1"} 2`,
			},
		},
		{
			// go-smtp refuses what it cannot parse itself; this one only
			// mailaddr refuses (U+037E normalizes to ';').
			name:  "bad sender",
			steps: []step{{"MAIL FROM:<a\u037eb@other.example> SMTPUTF8", 501}},
			want:  []string{`mailgw_smtp_error_replies_total{code="501",enhanced="5.1.7"} 1`},
		},
		{
			name: "message rate per IP",
			mod: func(c *config.Config) {
				c.SMTP.MessageRatePerIP = config.Limit{Count: 1, Window: config.Duration(time.Hour)}
			},
			steps: []step{{"MAIL FROM:<carol@example.com>", 250}, {"RSET", 250}, {"MAIL FROM:<carol@example.com>", 451}},
			want:  []string{`mailgw_smtp_error_replies_total{code="451",enhanced="4.7.1"} 1`},
		},
		{
			name:   "refused by ingest",
			script: decided(sd("IT", identify.Rejected, identify.ReasonUnknownSender, "")),
			steps:  transaction("refused", 550),
			want:   []string{`mailgw_smtp_error_replies_total{code="550",enhanced="5.7.1"} 1`},
		},
		{
			name:   "deferred by ingest",
			script: decided(sd("IT", identify.Deferred, identify.ReasonBackendUnavailable, "")),
			steps:  transaction("deferred", 451),
			want:   []string{`mailgw_smtp_error_replies_total{code="451",enhanced="4.3.0"} 1`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, h, reg := startInstrumented(t, tt.mod)
			h.setScript(tt.script)
			c := dialRaw(t, ts.addr)
			c.greet()
			for _, s := range tt.steps {
				if r := c.cmd(s.line); r.code != s.code {
					t.Fatalf("%.40q: %v, want %d", s.line, r, s.code)
				}
			}
			if got := testkit.MetricSamples(t, reg, errorRepliesSeries); !slices.Equal(got, tt.want) {
				t.Errorf("error replies = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMetricsPanic: a panic in the handler is counted, and so is the 451
// it is answered with.
func TestMetricsPanic(t *testing.T) {
	ts, h, reg := startInstrumented(t, nil)
	h.setScript(func(context.Context, ingest.Envelope, []byte) ingest.Result { panic("boom") })
	c := dialRaw(t, ts.addr)
	c.greet()
	c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n")
	c.expect(250, "")
	c.expect(250, "")
	c.expect(354, "")
	c.send(message("carol@example.com", "it@example.com", "panic", "x") + ".\r\n")
	c.expect(451, "4.3.0")

	if got, want := testkit.MetricSamples(t, reg, panicsSeries), []string{"mailgw_smtp_panics_total 1"}; !slices.Equal(got, want) {
		t.Errorf("panics = %q, want %q", got, want)
	}
	if got, want := testkit.MetricSamples(t, reg, errorRepliesSeries), []string{`mailgw_smtp_error_replies_total{code="451",enhanced="4.3.0"} 1`}; !slices.Equal(got, want) {
		t.Errorf("error replies = %q, want %q", got, want)
	}
}

// TestMetricsRefusedConnections: a connection over a limit is counted by
// the limit that refused it, and not as accepted.
func TestMetricsRefusedConnections(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*config.Config)
		want string
	}{
		{"per-IP limit", func(c *config.Config) { c.SMTP.MaxConnectionsPerIP = 1 }, "refused_limit"},
		{"total limit", func(c *config.Config) { c.SMTP.MaxConnections = 1 }, "refused_limit"},
		{"connection rate", func(c *config.Config) {
			c.SMTP.ConnectionRatePerIP = config.Limit{Count: 1, Window: config.Duration(time.Hour)}
		}, "refused_rate"},
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, _, reg := startInstrumented(t, tt.mod)
			first := dialRawFrom(t, ts.addr, local)
			first.expect(220, "")
			for i := range 2 {
				if r, closed := greeting(t, ts.addr, local); r.code != 421 || !closed {
					t.Fatalf("connection %d: %v (closed %v), want 421 and close", i+2, r, closed)
				}
			}
			// The refusal is counted before the 421 is written, so it is
			// there once the client has read it.
			want := []string{
				`mailgw_smtp_connections_total{result="accepted"} 1`,
				`mailgw_smtp_connections_total{result="` + tt.want + `"} 2`,
			}
			if got := testkit.MetricSamples(t, reg, connectionsSeries); !slices.Equal(got, want) {
				t.Errorf("connections = %q, want %q", got, want)
			}
			if got := testkit.MetricSamples(t, reg, errorRepliesSeries); got != nil {
				t.Errorf("error replies = %q: the listener's 421 is not a session's reply", got)
			}
		})
	}
}

// TestMetricsConnectionsOpen: the gauge follows the connections alive,
// down to 0 once every client has quit.
func TestMetricsConnectionsOpen(t *testing.T) {
	ts, _, reg := startInstrumented(t, nil)
	open := func() string {
		got := testkit.MetricSamples(t, reg, openSeries)
		if len(got) != 1 {
			t.Fatalf("connections_open samples = %q, want one", got)
		}
		return strings.TrimPrefix(got[0], openSeries)
	}
	// The server releases a connection on its own goroutine as it closes
	// it; polling keeps the test independent of when that runs.
	waitOpen := func(want string) {
		t.Helper()
		eventually(t, "connections_open "+want, func() bool { return open() == want })
	}
	if got := open(); got != "0" {
		t.Fatalf("connections_open before any client = %s, want 0", got)
	}
	a, b := dialRaw(t, ts.addr), dialRaw(t, ts.addr)
	a.greet()
	b.greet()
	// A connection is counted when accepted, before its greeting is sent.
	if got := open(); got != "2" {
		t.Fatalf("connections_open with two clients = %s, want 2", got)
	}
	a.cmd("QUIT")
	a.waitClosed()
	waitOpen("1")
	b.cmd("QUIT")
	b.waitClosed()
	waitOpen("0")
}
