package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/redis/go-redis/v9"

	"mailgw/internal/redistest"
)

// smtp-source (Postfix 3.x) writes "Message-Id: <PID.FD.COUNT@MYHOSTNAME>"
// in hex, COUNT being its global count of messages still to start when the
// headers go out. Every close of a connection is followed at once by a
// decrement of that count, before any new socket can reuse the descriptor,
// so within one run no two messages share an id, and runs differ by pid.
// The messages are otherwise byte-identical (same Date, no Subject, same
// body), so if smtp-source ever stopped writing a Message-ID mailgw's
// content-hash stand-in would rightly dedupe them; the id check below would
// then fail first and say so.
var smtpSourceID = regexp.MustCompile(`^[0-9a-f]{4,}\.[0-9a-f]{4,}\.[0-9a-f]{4,}@client\.example$`)

// runSMTPSource runs smtp-source against g. Without -A it aborts with a
// fatal error on the first reply that is not 2xx, so exit status 0 means
// every message got a 2xx at the end of DATA; -c prints a running count of
// completed DATA commands.
func runSMTPSource(t *testing.T, g *gateway, args ...string) int {
	t.Helper()
	bin := requireTool(t, "/usr/sbin/smtp-source")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args = append(append([]string{"-c", "-M", "client.example", "-f", "carol@example.com", "-t", "it@example.com"}, args...), g.Addr)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv()
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("smtp-source %s: %v\nstdout: %q\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Errorf("smtp-source complained:\n%s", s)
	}
	counts := strings.Fields(strings.ReplaceAll(stdout.String(), "\r", " "))
	if len(counts) == 0 {
		t.Fatalf("smtp-source printed no count: %q", stdout.String())
	}
	var n int
	if _, err := fmt.Sscan(counts[len(counts)-1], &n); err != nil {
		t.Fatalf("smtp-source count %q: %v", counts[len(counts)-1], err)
	}
	return n
}

// requireExactlyOnce checks that the space's stream holds exactly one
// entry per expected Message-ID and nothing else, with request ids
// IT-1..IT-n each used once.
func requireExactlyOnce(t *testing.T, rdb *redis.Client, space string, want map[string]bool, n int) []redis.XMessage {
	t.Helper()
	entries := streamEntries(t, rdb, space)
	if len(entries) != n {
		t.Errorf("%s stream has %d entries, want %d", space, len(entries), n)
	}
	ids := map[string]bool{}
	mids := map[string]int{}
	for _, e := range entries {
		id := field(e, "id")
		if ids[id] {
			t.Errorf("request id %s used twice", id)
		}
		ids[id] = true
		mids[field(e, "message_id")]++
	}
	for i := 1; i <= n; i++ {
		if id := fmt.Sprintf("%s-%d", space, i); !ids[id] {
			t.Errorf("request id %s missing", id)
		}
	}
	for mid, c := range mids {
		if c > 1 {
			t.Errorf("message %s queued %d times", mid, c)
		}
		if want != nil && !want[mid] {
			t.Errorf("unexpected message %s in the stream", mid)
		}
	}
	for mid := range want {
		if mids[mid] == 0 {
			t.Errorf("message %s accepted but not in the stream", mid)
		}
	}
	return entries
}

// TestSMTPSource loads mailgw with Postfix's smtp-source: 200 messages over
// 10 parallel sessions, one connection per message, then 50 more over 5
// sessions that each keep their connection (-d). Every message smtp-source
// saw accepted is in the stream exactly once.
func TestSMTPSource(t *testing.T) {
	t.Parallel()
	srv := redistest.Real(t)
	rdb := srv.Client(t)
	g := startGateway(t, gwOptions{RedisURL: srv.URL})

	if n := runSMTPSource(t, g, "-s", "10", "-m", "200"); n != 200 {
		t.Fatalf("smtp-source completed %d messages, want 200", n)
	}
	if n := runSMTPSource(t, g, "-d", "-s", "5", "-m", "50", "-S", "kept connection"); n != 50 {
		t.Fatalf("smtp-source -d completed %d messages, want 50", n)
	}
	entries := requireExactlyOnce(t, rdb, "IT", nil, 250)
	pids := map[string]int{}
	for _, e := range entries {
		mid := field(e, "message_id")
		if !smtpSourceID.MatchString(mid) {
			t.Errorf("message id %q is not smtp-source's <PID.FD.COUNT@client.example>", mid)
			continue
		}
		pids[mid[:strings.IndexByte(mid, '.')]]++
		if field(e, "from") != "carol@example.com" || field(e, "channel") != "smtp" || field(e, "kind") != "request" {
			t.Errorf("entry %s: from %q channel %q kind %q", field(e, "id"), field(e, "from"), field(e, "channel"), field(e, "kind"))
		}
	}
	if len(pids) != 2 {
		t.Errorf("message ids from %d smtp-source processes, want 2: %v", len(pids), pids)
	}
	if n := len(decisionLog(t, g, "--reason", "accepted", "-n", "1000")); n != 250 {
		t.Errorf("decision log has %d accepted decisions, want 250", n)
	}
	if n := len(decisionLog(t, g, "--reason", "duplicate")); n != 0 {
		t.Errorf("decision log has %d duplicate decisions, want 0", n)
	}
	g.stop(t)
}

// sendResult is the outcome of one SMTP transaction.
type sendResult struct {
	code     int
	enhanced smtp.EnhancedCode
	text     string
}

// smtpSender is one client connection that reconnects after network errors.
type smtpSender struct {
	addr string
	c    *smtp.Client
}

func (s *smtpSender) close() {
	if s.c != nil {
		_ = s.c.Close()
		s.c = nil
	}
}

// send runs one transaction. A reply from the server is a sendResult; a
// network error closes the connection (the next send redials) and is
// returned as an error.
func (s *smtpSender) send(from, to string, msg []byte) (sendResult, error) {
	if s.c == nil {
		c, err := smtp.Dial(s.addr)
		if err != nil {
			return sendResult{}, err
		}
		c.CommandTimeout = ioTimeout
		c.SubmissionTimeout = ioTimeout
		if err := c.Hello("client.example"); err != nil {
			_ = c.Close()
			return s.reply(err)
		}
		s.c = c
	}
	res, err := s.transaction(from, to, msg)
	if err != nil {
		return s.reply(err)
	}
	return res, nil
}

func (s *smtpSender) transaction(from, to string, msg []byte) (sendResult, error) {
	if err := s.c.Mail(from, nil); err != nil {
		return sendResult{}, err
	}
	if err := s.c.Rcpt(to, nil); err != nil {
		return sendResult{}, err
	}
	w, err := s.c.Data()
	if err != nil {
		return sendResult{}, err
	}
	if _, err := w.Write(msg); err != nil {
		return sendResult{}, err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return sendResult{}, err
	}
	return sendResult{code: 250, enhanced: smtp.EnhancedCode{2, 0, 0}, text: strings.TrimPrefix(resp.StatusText, "2.0.0 ")}, nil
}

// reply turns an SMTP error into a result (resetting the transaction) and
// drops the connection on anything else.
func (s *smtpSender) reply(err error) (sendResult, error) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if s.c != nil {
			if se.Code == 421 || s.c.Reset() != nil {
				s.close()
			}
		}
		return sendResult{code: se.Code, enhanced: se.EnhancedCode, text: se.Message}, nil
	}
	s.close()
	return sendResult{}, err
}

// TestParallelClientsExactlyOnce: 10 go-smtp clients send 20 messages each
// with unique Message-IDs; the number of 250 replies equals XLEN, each
// reply names a distinct request, and sending the same messages again
// changes nothing.
func TestParallelClientsExactlyOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Real(t)
	rdb := srv.Client(t)
	g := startGateway(t, gwOptions{RedisURL: srv.URL})

	const clients, perClient = 10, 20
	var (
		mu       sync.Mutex
		accepted = map[string]string{} // Message-ID -> reply text
		failures []string
	)
	send := func(c int, text func(i int) string) {
		s := &smtpSender{addr: g.Addr}
		defer s.close()
		for i := range perClient {
			mid := fmt.Sprintf("load-%02d-%02d@client.example", c, i)
			res, err := s.send("carol@example.com", "it@example.com",
				message("Carol <carol@example.com>", "it@example.com", mid, text(i), "Message "+mid))
			mu.Lock()
			switch {
			case err != nil:
				failures = append(failures, fmt.Sprintf("%s: %v", mid, err))
			case res.code != 250:
				failures = append(failures, fmt.Sprintf("%s: %d %v %s", mid, res.code, res.enhanced, res.text))
			default:
				accepted[mid] = res.text
			}
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() { send(c, func(i int) string { return fmt.Sprintf("Load %d/%d", c, i) }) })
	}
	wg.Wait()
	for _, f := range failures {
		t.Errorf("not accepted: %s", f)
	}
	want := map[string]bool{}
	requests := map[string]bool{}
	for mid, text := range accepted {
		want[mid] = true
		req, ok := strings.CutPrefix(text, "OK: queued as ")
		if !ok || requests[req] {
			t.Errorf("%s: reply %q, want a new request", mid, text)
		}
		requests[req] = true
	}
	if len(accepted) != clients*perClient {
		t.Errorf("%d messages accepted, want %d", len(accepted), clients*perClient)
	}
	ctx := context.Background()
	if n := rdb.XLen(ctx, streamKey("IT")).Val(); n != int64(len(accepted)) {
		t.Errorf("XLEN = %d after %d accepted messages", n, len(accepted))
	}
	requireExactlyOnce(t, rdb, "IT", want, clients*perClient)

	// The same messages again: each is a duplicate, answered 250 so the
	// sender stops retrying, and nothing is added.
	failures = nil
	clear(accepted)
	for c := range 2 {
		wg.Go(func() { send(c, func(i int) string { return fmt.Sprintf("Load %d/%d", c, i) }) })
	}
	wg.Wait()
	for _, f := range failures {
		t.Errorf("resend not accepted: %s", f)
	}
	for mid, text := range accepted {
		if text != "OK: accepted (duplicate)" {
			t.Errorf("resend of %s: reply %q, want OK: accepted (duplicate)", mid, text)
		}
	}
	if n := rdb.XLen(ctx, streamKey("IT")).Val(); n != clients*perClient {
		t.Errorf("XLEN = %d after resending, want %d", n, clients*perClient)
	}
	g.stop(t)
}
