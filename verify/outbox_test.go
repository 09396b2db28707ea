package verify_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"mailgw/config"
	"mailgw/internal/testkit"
	"mailgw/verify"
)

// queue puts a verification mail to each address in the outbox.
func (f *fixture) queue(addrs ...string) {
	f.t.Helper()
	for _, a := range addrs {
		if err := f.svc.OnHeld(f.ctx, verify.Held{Address: a, Space: "IT", Subject: "Printer"}); err != nil {
			f.t.Fatalf("OnHeld(%s): %v", a, err)
		}
	}
}

func sentTo(s *captureSender) []string {
	var out []string
	for _, a := range s.sent() {
		out = append(out, a.To)
	}
	sort.Strings(out)
	return out
}

// TestRateLimitPerDomain: over verify.per_domain_per_hour, mail waits in
// the outbox for the next hour; other domains are not held up.
func TestRateLimitPerDomain(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{mod: func(c *config.Config) { c.Verify.PerDomainPerHour = 2 }})
		f.queue("a@other.example", "b@other.example", "c@other.example")
		if n := f.deliver(); n != 3 {
			t.Fatalf("DeliverDue tried %d, want 3", n)
		}
		if n := len(f.sender.sent()); n != 2 {
			t.Fatalf("%d mails to other.example sent in the hour, want 2", n)
		}
		if n := f.outbox(); n != 1 {
			t.Fatalf("%d mails in the outbox, want the third still waiting", n)
		}
		// Another domain is not limited by other.example's count.
		f.queue("d@partner.example")
		f.deliver()
		if got := sentTo(f.sender); len(got) != 3 || got[2] != "d@partner.example" {
			t.Fatalf("sent to %v, want d@partner.example too", got)
		}

		f.advance(44 * time.Minute) // 10:59
		f.deliver()
		if n := len(f.sender.sent()); n != 3 {
			t.Fatalf("%d mails sent before the hour was over, want 3", n)
		}
		f.advance(time.Minute + time.Second) // 11:00:01
		f.deliver()
		if got := strings.Join(sentTo(f.sender), ","); got != "a@other.example,b@other.example,c@other.example,d@partner.example" {
			t.Fatalf("sent to %s after the hour", got)
		}
		if n := f.outbox(); n != 0 {
			t.Fatalf("%d mails left in the outbox", n)
		}
		if f.sender.tries() != 4 {
			t.Fatalf("%d delivery attempts, want 4: a throttled mail is not an attempt", f.sender.tries())
		}
	})
}

// TestRateLimitGlobal: over verify.global_per_hour, mail to any domain
// waits for the next hour.
func TestRateLimitGlobal(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{mod: func(c *config.Config) { c.Verify.GlobalPerHour = 2 }})
		f.queue("a@one.example", "b@two.example", "c@three.example")
		f.deliver()
		if n := len(f.sender.sent()); n != 2 {
			t.Fatalf("%d mails sent in the hour, want 2", n)
		}
		if n := f.outbox(); n != 1 {
			t.Fatalf("%d mails in the outbox, want 1", n)
		}
		f.advance(30 * time.Minute)
		f.deliver()
		if n := len(f.sender.sent()); n != 2 {
			t.Fatalf("%d mails sent within the hour, want 2", n)
		}
		f.advance(15 * time.Minute) // 11:00
		f.deliver()
		if got := strings.Join(sentTo(f.sender), ","); got != "a@one.example,b@two.example,c@three.example" {
			t.Fatalf("sent to %s after the hour", got)
		}
	})
}

// TestRetryTemporary: a 4xx or network failure is retried with backoff
// (1 min, then 2 min) and the mail goes out on the third attempt.
func TestRetryTemporary(t *testing.T) {
	temp := func() error {
		return &verify.SendError{Temporary: true, Err: errors.New("451 4.3.0 try later")}
	}
	for name, errs := range map[string][]error{
		"SendError":   {temp(), temp()},
		"plain error": {errors.New("connection reset"), errors.New("connection reset")},
	} {
		t.Run(name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b *testkit.Backend) {
				f := newFixture(t, b, fixtureOptions{})
				f.sender.errs = errs
				f.queue("dave@other.example")

				steps := []struct {
					wait  time.Duration
					tries int
				}{
					{0, 1},                         // t0: first attempt fails
					{0, 1},                         // not due again yet
					{time.Minute - time.Second, 1}, // t0+59s
					{time.Second, 2},               // t0+1m: second attempt fails
					{time.Minute, 2},               // t0+2m: backoff is now 2 min
					{time.Minute - time.Second, 2}, // t0+2m59s
					{time.Second, 3},               // t0+3m: sent
					{time.Hour, 3},                 // and gone
				}
				for i, s := range steps {
					f.advance(s.wait)
					f.deliver()
					if got := f.sender.tries(); got != s.tries {
						t.Fatalf("step %d (%v): %d attempts, want %d", i, f.clock.Now().Sub(start), got, s.tries)
					}
				}
				sent := f.sender.sent()
				if len(sent) != 1 {
					t.Fatalf("%d mails sent, want 1", len(sent))
				}
				// Each attempt carries a link made at delivery, so the
				// retry is the same mail to the same address with a new link.
				if f.sender.attempts[0].To != sent[0].To {
					t.Errorf("the retry went to %s, the first attempt to %s", sent[0].To, f.sender.attempts[0].To)
				}
				if n := f.outbox(); n != 0 {
					t.Fatalf("%d mails left in the outbox", n)
				}
				if n := strings.Count(f.logs.String(), "verification mail deferred"); n != 2 {
					t.Errorf("%d deferrals logged, want 2:\n%s", n, f.logs)
				}
			})
		})
	}
}

// TestPermanentFailure: a 5xx is given up at once, removed and logged.
func TestPermanentFailure(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		f.sender.errs = []error{&verify.SendError{Err: errors.New("550 5.1.1 no such user")}}
		f.queue("dave@other.example")
		f.deliver()
		if n := f.outbox(); n != 0 {
			t.Fatalf("%d mails in the outbox after a permanent failure, want 0", n)
		}
		if keys := b.RDB.Keys(f.ctx, f.cfg.Redis.Prefix+"outbox:*").Val(); len(keys) != 0 {
			t.Fatalf("outbox items left: %v", keys)
		}
		if !strings.Contains(f.logs.String(), "verification mail given up") || !strings.Contains(f.logs.String(), "550 5.1.1") {
			t.Errorf("the failure is not logged with its cause:\n%s", f.logs)
		}
		f.advance(24 * time.Hour)
		f.deliver()
		if n := f.sender.tries(); n != 1 {
			t.Fatalf("%d attempts, want 1", n)
		}
	})
}

// TestGiveUpAfterMaxAttempts: temporary failures are retried up to 12
// attempts, the backoff capped at 4 h, then given up.
func TestGiveUpAfterMaxAttempts(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		f.sender.always = &verify.SendError{Temporary: true, Err: errors.New("421 4.3.2 shutting down")}
		f.queue("dave@other.example")
		for i := 1; i <= 14; i++ {
			f.deliver()
			f.advance(4 * time.Hour)
		}
		if n := f.sender.tries(); n != 12 {
			t.Fatalf("%d attempts, want 12", n)
		}
		if n := f.outbox(); n != 0 {
			t.Fatalf("%d mails in the outbox, want 0", n)
		}
		if !strings.Contains(f.logs.String(), "verification mail given up") {
			t.Errorf("giving up not logged")
		}
	})
}

// TestClaimLease: a mail claimed by a worker that died before delivering
// it goes out after the lease.
func TestClaimLease(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		f.queue("dave@other.example")
		ids, err := f.svc.ClaimOutbox(f.ctx, 20)
		if err != nil || len(ids) != 1 {
			t.Fatalf("claim = %v, %v", ids, err)
		}
		if n := f.deliver(); n != 0 {
			t.Fatalf("DeliverDue took %d leased mails, want 0", n)
		}
		f.advance(verify.ClaimLease - time.Second)
		if n := f.deliver(); n != 0 {
			t.Fatalf("DeliverDue took %d mails before the lease ended", n)
		}
		f.advance(time.Second)
		if vm := f.deliverOne(); vm.To != "dave@other.example" {
			t.Fatalf("mail to %s", vm.To)
		}
		if n := f.outbox(); n != 0 {
			t.Fatalf("%d mails left", n)
		}
	})
}

// TestNoSender: without a Sender (replay) mail stays in the outbox for
// the process that has one.
func TestNoSender(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{noSend: true})
		f.queue("dave@other.example")
		if n := f.deliver(); n != 0 {
			t.Fatalf("DeliverDue without a Sender tried %d", n)
		}
		if n := f.outbox(); n != 1 {
			t.Fatalf("%d mails in the outbox, want 1", n)
		}
	})
}

// notifySender reports each delivery on a channel.
type notifySender struct{ ch chan string }

func (n notifySender) Send(_ context.Context, _, to string, _ []byte) error {
	n.ch <- to
	return nil
}

// TestRun: the loop delivers the outbox and sweeps until its context ends.
func TestRun(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		ns := notifySender{ch: make(chan string, 10)}
		f := newFixture(t, b, fixtureOptions{sender: ns})
		f.queue("dave@other.example")
		ctx, cancel := context.WithCancel(f.ctx)
		done := make(chan struct{})
		go func() {
			f.svc.Run(ctx, 10*time.Millisecond)
			close(done)
		}()
		select {
		case to := <-ns.ch:
			if to != "dave@other.example" {
				t.Errorf("mail to %s", to)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run delivered nothing")
		}
		// The expired holds of a later sweep are settled by the same loop.
		f.hold("erin@other.example", "e1@other.example")
		<-ns.ch
		f.advance(f.cfg.Verify.TTL.D())
		deadline := time.Now().Add(10 * time.Second)
		for f.status("erin@other.example") != "" {
			if time.Now().After(deadline) {
				t.Fatal("Run did not sweep the expired sender")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	})
}
