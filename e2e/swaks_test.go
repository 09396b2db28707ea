package e2e_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgw/internal/redistest"
)

// swaks runs swaks against g and returns its transcript and exit status
// (0 sent, 24 no recipient accepted, 26 refused after DATA).
func swaks(t *testing.T, g *gateway, args ...string) (string, int) {
	t.Helper()
	bin := requireTool(t, "swaks")
	host, port, _ := strings.Cut(g.Addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--server", host, "--port", port, "--helo", "client.example", "--timeout", "10"}, args...)...)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return string(out), ee.ExitCode()
	}
	t.Fatalf("swaks %s: %v\n%s", strings.Join(args, " "), err, out)
	return "", -1
}

// serverReplies returns the lines of a swaks transcript the server sent:
// "<-  " for expected replies, "<** " for refusals.
func serverReplies(transcript string) []string {
	var out []string
	for _, line := range strings.Split(transcript, "\n") {
		if rest, ok := strings.CutPrefix(line, "<-  "); ok {
			out = append(out, rest)
		} else if rest, ok := strings.CutPrefix(line, "<** "); ok {
			out = append(out, rest)
		}
	}
	return out
}

func requireReply(t *testing.T, what, transcript string, code int, gotCode int, want ...string) {
	t.Helper()
	if gotCode != code {
		t.Errorf("%s: swaks exit status %d, want %d; transcript:\n%s", what, gotCode, code, transcript)
		return
	}
	for _, w := range want {
		found := false
		for _, r := range serverReplies(transcript) {
			found = found || strings.Contains(r, w)
		}
		if !found {
			t.Errorf("%s: no reply containing %q; transcript:\n%s", what, w, transcript)
		}
	}
}

// TestSwaks drives mailgw with swaks the way an administrator would try it
// out: a known customer's request is queued with every stream field of
// DESIGN §4, refusals come in the SMTP dialogue with their reason, a bare
// LF is refused, and "mailgw log" explains each decision.
func TestSwaks(t *testing.T) {
	t.Parallel()
	srv := redistest.Real(t)
	rdb := srv.Client(t)
	g := startGateway(t, gwOptions{RedisURL: srv.URL})
	ctx := context.Background()

	start := time.Now().UTC().Truncate(time.Second)
	out, code := swaks(t, g, "--from", "carol@example.com", "--to", "it@example.com",
		"--header", "Subject: Printer on fire",
		"--header", "Message-Id: <swaks-1@client.example>",
		"--body", "The printer on floor 3 is on fire.")
	requireReply(t, "known customer", out, 0, code, "250 2.0.0 OK: queued as IT-1")

	out, code = swaks(t, g, "--from", "carol@example.com", "--to", "nobody@example.com")
	requireReply(t, "unknown recipient", out, 24, code, "550 5.1.1")

	out, code = swaks(t, g, "--from", "carol@example.com", "--to", "someone@other.example")
	requireReply(t, "other domain", out, 24, code, "550 5.7.1")

	out, code = swaks(t, g, "--from", "carol@example.com", "--to", "someone%other.example@example.com")
	requireReply(t, "percent relay", out, 24, code, "550 5.7.1")

	out, code = swaks(t, g, "--from", "stranger@gmail.example", "--to", "it@example.com",
		"--header", "Message-Id: <swaks-stranger@gmail.example>")
	requireReply(t, "unknown sender", out, 26, code, "550 5.7.1", "domain_not_allowed")

	out, code = swaks(t, g, "--from", "carol@example.com", "--to", "billing@example.com",
		"--header", "Message-Id: <swaks-bill@client.example>")
	requireReply(t, "restricted space", out, 26, code, "550 5.7.1", "not_space_customer")

	// With --no-data-fixup swaks sends the file as it is, bare LF included,
	// and adds only the CRLF after the final dot.
	lf := filepath.Join(t.TempDir(), "bare-lf.eml")
	data := "From: carol@example.com\r\nTo: it@example.com\r\nSubject: bare LF\r\n" +
		"Message-ID: <swaks-lf@client.example>\r\n\r\nline one\nline two\r\n."
	if err := os.WriteFile(lf, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = swaks(t, g, "--from", "carol@example.com", "--to", "it@example.com", "--data", "@"+lf, "--no-data-fixup")
	requireReply(t, "bare LF", out, 26, code, "554 5.6.0", "Bare LF")
	end := time.Now().UTC()

	// Exactly one request, in IT, with the fields of DESIGN §4.
	if n := rdb.XLen(ctx, streamKey("BILL")).Val(); n != 0 {
		t.Errorf("BILL stream has %d entries, want 0", n)
	}
	entries := streamEntries(t, rdb, "IT")
	if len(entries) != 1 {
		t.Fatalf("IT stream has %d entries, want 1: %v", len(entries), entries)
	}
	e := entries[0]
	want := map[string]string{
		"id":            "IT-1",
		"kind":          "request",
		"space":         "IT",
		"from":          "carol@example.com",
		"from_name":     "",
		"account_type":  "internal",
		"new_customer":  "false",
		"subject":       "Printer on fire",
		"message_id":    "swaks-1@client.example",
		"raw_key":       "mailgw:{IT}:raw:IT-1",
		"channel":       "smtp",
		"envelope_from": "carol@example.com",
		"attachments":   "[]",
		"in_reply_to":   "",
		"references":    "",
		"cc":            "",
		"html":          "",
		"auth":          "none: no trusted Authentication-Results",
	}
	for k, v := range want {
		if got, ok := e.Values[k]; !ok || got != v {
			t.Errorf("stream field %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	if txt := field(e, "text"); !strings.Contains(txt, "The printer on floor 3 is on fire.") {
		t.Errorf("stream field text = %q", txt)
	}
	if ra, err := time.Parse(time.RFC3339, field(e, "received_at")); err != nil || ra.Before(start) || ra.After(end) {
		t.Errorf("stream field received_at = %q (%v), want RFC 3339 between %v and %v", field(e, "received_at"), err, start, end)
	}
	raw, err := rdb.Get(ctx, field(e, "raw_key")).Result()
	if err != nil {
		t.Fatalf("raw message %s: %v", field(e, "raw_key"), err)
	}
	if !strings.HasPrefix(raw, "Received: from client.example ([127.0.0.1])\r\n\tby "+hostname+" (mailgw) with ESMTP;") ||
		!strings.Contains(raw, "\r\nSubject: Printer on fire\r\n") {
		t.Errorf("raw message does not start with mailgw's Received header or lacks the Subject:\n%s", raw)
	}
	if ttl := rdb.TTL(ctx, field(e, "raw_key")).Val(); ttl <= 0 {
		t.Errorf("raw message has TTL %v, want one", ttl)
	}

	// The decision log explains each message, newest last.
	type want2 struct{ outcome, reason, space, from, request, messageID string }
	wantLog := []want2{
		{"queued", "accepted", "IT", "carol@example.com", "IT-1", "swaks-1@client.example"},
		{"rejected", "no_route", "", "carol@example.com", "", ""},
		{"rejected", "no_route", "", "carol@example.com", "", ""},
		{"rejected", "no_route", "", "carol@example.com", "", ""},
		{"rejected", "domain_not_allowed", "IT", "stranger@gmail.example", "", "swaks-stranger@gmail.example"},
		{"rejected", "not_space_customer", "BILL", "carol@example.com", "", "swaks-bill@client.example"},
		{"rejected", "malformed", "IT", "carol@example.com", "", ""},
	}
	log := decisionLog(t, g)
	if len(log) != len(wantLog) {
		t.Fatalf("mailgw log --json printed %d decisions, want %d: %+v", len(log), len(wantLog), log)
	}
	for i, w := range wantLog {
		l := log[i]
		got := want2{l.Outcome, l.Reason, l.Space, l.From, l.Request, l.MessageID}
		if got != w {
			t.Errorf("decision %d = %+v, want %+v", i+1, got, w)
		}
		if w.reason == "malformed" && !strings.Contains(l.Detail, "bare CR or LF") {
			t.Errorf("decision %d: detail %q does not name the bare LF", i+1, l.Detail)
		}
		if l.Channel != "smtp" || l.Time.IsZero() {
			t.Errorf("decision %d: channel %q time %v", i+1, l.Channel, l.Time)
		}
	}
	if got := decisionLog(t, g, "--reason", "domain_not_allowed"); len(got) != 1 || got[0].From != "stranger@gmail.example" {
		t.Errorf("mailgw log --reason domain_not_allowed: %+v", got)
	}

	g.stop(t)
	if n := len(decisions(g.logLines(t), "accepted")); n != 1 {
		t.Errorf("%d accepted decisions on stderr, want 1", n)
	}
}

// TestSmuggling sends the CERT VU#302671 pattern over a raw connection: a
// second transaction hidden behind "\n.\n" in the data must not become a
// message of its own; the whole data is refused once.
func TestSmuggling(t *testing.T) {
	t.Parallel()
	srv := redistest.Real(t)
	rdb := srv.Client(t)
	g := startGateway(t, gwOptions{RedisURL: srv.URL})

	r := dialRaw(t, g.Addr)
	r.expect("EHLO client.example", 250)
	r.expect("MAIL FROM:<carol@example.com>", 250)
	r.expect("RCPT TO:<it@example.com>", 250)
	r.expect("DATA", 354)
	r.send("From: carol@example.com\r\nTo: it@example.com\r\nSubject: outer\r\nMessage-ID: <outer@client.example>\r\n\r\nouter\r\n" +
		"\n.\n" +
		"MAIL FROM:<agent@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n" +
		"From: agent@example.com\r\nTo: it@example.com\r\nSubject: smuggled\r\nMessage-ID: <smuggled@client.example>\r\n\r\nsmuggled\r\n" +
		".\r\n")
	code, msg, err := r.read()
	if err != nil || code != 554 || !strings.HasPrefix(msg, "5.6.0 ") {
		t.Errorf("smuggling attempt: got %d %q (%v), want 554 5.6.0", code, msg, err)
	}
	// The next reply must answer the next command: nothing was left over.
	if msg := r.expect("NOOP", 250); !strings.HasPrefix(msg, "2.0.0") {
		t.Errorf("NOOP: %q", msg)
	}
	r.expect("QUIT", 221)

	if n := rdb.XLen(context.Background(), streamKey("IT")).Val(); n != 0 {
		t.Errorf("IT stream has %d entries after a smuggling attempt, want 0: %v", n, streamEntries(t, rdb, "IT"))
	}
	g.stop(t)
}
