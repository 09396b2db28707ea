package ingest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/testkit"
	"mailgw/route"
)

// newClock returns a clock the tests move by hand, standing at the start
// of a minute: fixed one-minute windows begin there.
func newClock() *testkit.Clock {
	return testkit.NewClock(time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC))
}

// rateConfig is the site of the rate limit tests, with the default limits
// unless extra says otherwise. responder@customer.example is an active
// customer on an allowed external domain.
const rateConfig = `
hostname: mx.example.com
access:
  internal_domains: [example.com]
  external_accounts: listed_domains
  external_domains: [customer.example]
  signup: verify
spaces:
  - {key: IT, name: IT help, addresses: [it@example.com]}
  - {key: BILL, name: Billing, addresses: [billing@example.com]}
customers:
  - {email: carol@example.com, name: Carol}
  - {email: responder@customer.example, name: Auto Responder}
agents: [agent@example.com]
`

func numbered(from string, n int, extra ...string) []byte {
	return mail(from, "it@example.com", fmt.Sprintf("n%d.%s@client.example", n, strings.ReplaceAll(from, "@", ".")),
		fmt.Sprintf("Question %d", n), extra...)
}

func toIT(channel string) ingest.Envelope {
	return ingest.Envelope{Channel: channel, Recipients: []string{"it@example.com"}}
}

// TestSenderRateLimit: the 21st message from one sender within a minute is
// deferred with the counter in the detail, on SMTP and IMAP alike; its
// retries stay throttled while the penalty lasts (ten windows from the
// latest attempt), and after it the sender may write again.
func TestSenderRateLimit(t *testing.T) {
	for _, channel := range []string{ingest.ChannelSMTP, ingest.ChannelIMAP} {
		t.Run(channel, func(t *testing.T) {
			clk := newClock()
			s := newSite(t, rateConfig, ingest.Options{Now: clk.Now})
			ctx := context.Background()
			for i := 1; i <= 20; i++ {
				d := only(t, s.h.Handle(ctx, toIT(channel), numbered("carol@example.com", i)))
				if d.Outcome != identify.Queued {
					t.Fatalf("message %d: %s %s (%s)", i, d.Outcome, d.Reason, d.Detail)
				}
				clk.Add(2 * time.Second)
			}
			d := only(t, s.h.Handle(ctx, toIT(channel), numbered("carol@example.com", 21)))
			if d.Outcome != identify.Deferred || d.Reason != identify.ReasonRateLimited {
				t.Fatalf("21st message: %s %s, want deferred rate_limited", d.Outcome, d.Reason)
			}
			if want := "sender rate limit: 21 messages, limit 20 per window"; d.Detail != want {
				t.Errorf("detail %q, want %q", d.Detail, want)
			}
			// Another sender is not affected.
			if d := only(t, s.h.Handle(ctx, toIT(channel), numbered("agent@example.com", 1))); d.Outcome != identify.Queued {
				t.Fatalf("other sender: %s %s", d.Outcome, d.Reason)
			}
			// The deferred message is not written: its retry is no duplicate.
			if n := len(s.stream(t, "IT")); n != 21 {
				t.Fatalf("%d stream entries, want 21", n)
			}
			clk.Add(time.Minute)
			s.mr.FastForward(time.Minute)
			d = only(t, s.h.Handle(ctx, toIT(channel), numbered("carol@example.com", 21)))
			if d.Outcome != identify.Deferred || !strings.Contains(d.Detail, "still throttled") {
				t.Fatalf("retry in the next minute: %s %s (%s), want the penalty", d.Outcome, d.Reason, d.Detail)
			}
			clk.Add(11 * time.Minute)
			s.mr.FastForward(11 * time.Minute)
			if d := only(t, s.h.Handle(ctx, toIT(channel), numbered("carol@example.com", 21))); d.Outcome != identify.Queued || d.Reason != identify.ReasonAccepted {
				t.Fatalf("retry after the penalty: %s %s (%s)", d.Outcome, d.Reason, d.Detail)
			}
			// The decision log names the counter.
			entries, _, err := ingest.NewStore(s.cfg, s.rdb).LastLog(ctx, 100, func(e route.Entry) bool { return e.Reason == string(identify.ReasonRateLimited) })
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 2 || !strings.Contains(entries[0].Detail, "21 messages") || entries[0].Channel != channel {
				t.Fatalf("log entries for rate_limited: %+v", entries)
			}
		})
	}
}

// TestReplayNotRateLimited: replay is an operator re-processing mail.
func TestReplayNotRateLimited(t *testing.T) {
	clk := newClock()
	s := newSite(t, rateConfig, ingest.Options{Now: clk.Now})
	for i := 1; i <= 50; i++ {
		d := only(t, s.h.Handle(context.Background(), toIT(ingest.ChannelReplay), numbered("carol@example.com", i)))
		if d.Outcome != identify.Queued {
			t.Fatalf("replayed message %d: %s %s (%s)", i, d.Outcome, d.Reason, d.Detail)
		}
	}
	if keys := s.rdb.Keys(context.Background(), s.cfg.Redis.Prefix+"rl:*").Val(); len(keys) != 0 {
		t.Errorf("replay counted: %v", keys)
	}
}

// TestDuplicatesNotRateLimited: a message re-sent 50 times (an MTA retrying,
// an IMAP mailbox rescanned) is a duplicate each time and uses up none of
// the sender's allowance.
func TestDuplicatesNotRateLimited(t *testing.T) {
	clk := newClock()
	s := newSite(t, rateConfig, ingest.Options{Now: clk.Now})
	ctx := context.Background()
	raw := numbered("carol@example.com", 0)
	if d := only(t, s.h.Handle(ctx, toIT(ingest.ChannelSMTP), raw)); d.Reason != identify.ReasonAccepted {
		t.Fatalf("first delivery: %s %s", d.Outcome, d.Reason)
	}
	for i := range 50 {
		d := only(t, s.h.Handle(ctx, toIT(ingest.ChannelSMTP), raw))
		if d.Outcome != identify.Ignored || d.Reason != identify.ReasonDuplicate || d.Request != "IT-1" {
			t.Fatalf("copy %d: %s %s %q, want ignored duplicate IT-1", i+1, d.Outcome, d.Reason, d.Request)
		}
	}
	// 19 more new messages fill the allowance of 20 exactly.
	for i := 1; i <= 19; i++ {
		if d := only(t, s.h.Handle(ctx, toIT(ingest.ChannelSMTP), numbered("carol@example.com", i))); d.Outcome != identify.Queued {
			t.Fatalf("new message %d after the copies: %s %s (%s)", i, d.Outcome, d.Reason, d.Detail)
		}
	}
	if d := only(t, s.h.Handle(ctx, toIT(ingest.ChannelSMTP), numbered("carol@example.com", 20))); d.Reason != identify.ReasonRateLimited {
		t.Fatalf("21st new message: %s %s, want rate_limited", d.Outcome, d.Reason)
	}
}

// TestSpaceRateLimit: a space takes at most rate.space messages a window
// from everyone together.
func TestSpaceRateLimit(t *testing.T) {
	clk := newClock()
	s := newSite(t, rateConfig+"rate: {space: {count: 3, window: 1h}}\n", ingest.Options{Now: clk.Now})
	ctx := context.Background()
	for i, from := range []string{"carol@example.com", "agent@example.com", "responder@customer.example"} {
		if d := only(t, s.h.Handle(ctx, toIT(ingest.ChannelSMTP), numbered(from, i))); d.Outcome != identify.Queued {
			t.Fatalf("%s: %s %s", from, d.Outcome, d.Reason)
		}
	}
	d := only(t, s.h.Handle(ctx, toIT(ingest.ChannelSMTP), numbered("carol@example.com", 9)))
	if d.Reason != identify.ReasonRateLimited || d.Detail != "space rate limit: 4 messages, limit 3 per window" {
		t.Fatalf("4th message to IT: %s %s (%s)", d.Outcome, d.Reason, d.Detail)
	}
	// BILL is another space.
	raw := mail("carol@example.com", "billing@example.com", "b1@client.example", "Invoice")
	if d := only(t, s.h.Handle(ctx, ingest.Envelope{Channel: ingest.ChannelSMTP, Recipients: []string{"billing@example.com"}}, raw)); d.Outcome != identify.Queued {
		t.Fatalf("BILL: %s %s (%s)", d.Outcome, d.Reason, d.Detail)
	}
}

// loopRun is what a simulated mail loop did.
type loopRun struct {
	queuedPerMinute map[int]int
	deferred        int
	ignored         int
	firstDeferral   int // round, -1 if none
	requests        map[string]bool
}

// runLoop simulates an auto-responder at responder@customer.example that
// answers every message it gets (a new Message-ID, In-Reply-To its previous
// message), talking to a help desk consumer that replies to the requester
// of every request or comment mailgw queues. Each round is one second on
// the clock. A deferred message stays with the sending MTA, which tries it
// again the next round; an ignored one ends the conversation, since the
// help desk never sees it. After the first message, every answer carries
// extra header fields. With force, the responder keeps writing whether or
// not the help desk answered.
func runLoop(t *testing.T, s *site, clk *testkit.Clock, rounds int, force bool, extra ...string) loopRun {
	t.Helper()
	ctx := context.Background()
	run := loopRun{queuedPerMinute: map[int]int{}, firstDeferral: -1, requests: map[string]bool{}}
	start := clk.Now()
	prev := ""
	n := 0
	raw := mail("Auto Responder <responder@customer.example>", "it@example.com", "loop-0@customer.example", "Printer jammed")
	for round := range rounds {
		if raw == nil {
			break
		}
		d := only(t, s.h.Handle(ctx, ingest.Envelope{Channel: ingest.ChannelSMTP, MailFrom: "responder@customer.example",
			Recipients: []string{"it@example.com"}}, raw))
		answered := false
		switch d.Outcome {
		case identify.Queued:
			run.queuedPerMinute[int(clk.Now().Sub(start)/time.Minute)]++
			run.requests[d.Request] = true
			answered = true // the help desk replies; the responder answers that
		case identify.Deferred:
			if d.Reason != identify.ReasonRateLimited {
				t.Fatalf("round %d: deferred %s (%s)", round, d.Reason, d.Detail)
			}
			if !strings.Contains(d.Detail, "sender rate limit") {
				t.Errorf("round %d: detail %q names no counter", round, d.Detail)
			}
			if run.firstDeferral < 0 {
				run.firstDeferral = round
			}
			run.deferred++
			clk.Add(time.Second)
			continue // the MTA retries the same message
		case identify.Ignored:
			run.ignored++
		default:
			t.Fatalf("round %d: %s %s (%s)", round, d.Outcome, d.Reason, d.Detail)
		}
		clk.Add(time.Second)
		raw = nil
		if answered || force {
			n++
			id := fmt.Sprintf("loop-%d@customer.example", n)
			if prev == "" {
				prev = "loop-0@customer.example"
			}
			hdrs := append([]string{"In-Reply-To: <" + prev + ">", "References: <loop-0@customer.example> <" + prev + ">"}, extra...)
			raw = mail("Auto Responder <responder@customer.example>", "it@example.com", id, "Re: Printer jammed", hdrs...)
			prev = id
		}
	}
	return run
}

// TestMailLoop: an auto-responder without any of the headers that mark
// machine mail, talking to a help desk that answers every request, is cut
// by the sender rate limit within the first minute: 20 messages are queued,
// and as the responder keeps trying, its penalty keeps it throttled.
func TestMailLoop(t *testing.T) {
	clk := newClock()
	s := newSite(t, rateConfig, ingest.Options{Now: clk.Now})
	run := runLoop(t, s, clk, 200, false)

	if run.queuedPerMinute[0] != config.DefaultRateSender {
		t.Errorf("first minute: %d queued, want %d", run.queuedPerMinute[0], config.DefaultRateSender)
	}
	if run.firstDeferral < 0 || run.firstDeferral > config.DefaultRateSender {
		t.Fatalf("first deferral in round %d, want by round %d", run.firstDeferral, config.DefaultRateSender)
	}
	total := 0
	for m, q := range run.queuedPerMinute {
		if q > config.DefaultRateSender {
			t.Errorf("minute %d: %d queued, over the limit of %d", m, q, config.DefaultRateSender)
		}
		total += q
	}
	if run.deferred < 40 {
		t.Errorf("%d deferrals in 200 rounds, want the loop held back most of each minute", run.deferred)
	}
	// Everything was one conversation: one request and its comments.
	if len(run.requests) != 1 || !run.requests["IT-1"] {
		t.Errorf("requests %v, want only IT-1", run.requests)
	}
	if n := len(s.stream(t, "IT")); n != total {
		t.Errorf("%d stream entries, %d queued decisions", n, total)
	}
	t.Logf("200 rounds: %d queued (%v per minute), %d deferred", total, run.queuedPerMinute, run.deferred)
}

// TestMailLoopAutoSubmitted: once the responder marks its answers as
// auto-replies, they are ignored at once, count against no limit, and the
// help desk never sees one, so the loop ends after the first request.
func TestMailLoopAutoSubmitted(t *testing.T) {
	clk := newClock()
	s := newSite(t, rateConfig, ingest.Options{Now: clk.Now})
	run := runLoop(t, s, clk, 200, false, "Auto-Submitted: auto-replied")
	if run.queuedPerMinute[0] != 1 || run.ignored != 1 || run.deferred != 0 {
		t.Fatalf("queued %v, ignored %d, deferred %d; want the request queued and the first answer ignored",
			run.queuedPerMinute, run.ignored, run.deferred)
	}

	// A responder that keeps going regardless is ignored every time.
	clk = newClock()
	s = newSite(t, rateConfig, ingest.Options{Now: clk.Now})
	run = runLoop(t, s, clk, 200, true, "Auto-Submitted: auto-replied")
	if run.queuedPerMinute[0] != 1 || run.ignored != 199 || run.deferred != 0 {
		t.Fatalf("forced: queued %v, ignored %d, deferred %d; want 1, 199, 0", run.queuedPerMinute, run.ignored, run.deferred)
	}
	entries, _, err := ingest.NewStore(s.cfg, s.rdb).LastLog(context.Background(), 1000, func(e route.Entry) bool { return e.Reason == string(identify.ReasonAutoReply) })
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 199 {
		t.Errorf("%d auto_reply log entries, want 199", len(entries))
	}
	// Only the first request was counted.
	ctx := context.Background()
	keys := s.rdb.Keys(ctx, s.cfg.Redis.Prefix+"rl:sender:*").Val()
	if len(keys) != 1 || s.rdb.Get(ctx, keys[0]).Val() != "1" {
		t.Errorf("sender counters %v, want one counting the first request only", keys)
	}
}
