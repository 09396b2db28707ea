package verify_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/ingest"
	"mailgw/internal/testkit"
	"mailgw/metrics"
	"mailgw/verify"
)

// instrument rebuilds f's service and ingest handler on one fresh
// registry, as serve wires them: newFixture has no way to pass one.
func (f *fixture) instrument() *metrics.Registry {
	f.t.Helper()
	reg := metrics.NewRegistry()
	log := zerolog.New(f.logs)
	var err error
	f.svc, err = verify.New(f.cfg, f.be.RDB, f.store, log, verify.Options{
		Prefix: f.cfg.Redis.Prefix, Timeout: f.cfg.Redis.Timeout.D(), PublicURL: f.cfg.HTTP.PublicURL,
		From: f.cfg.Outbound.From, Hostname: f.cfg.Hostname, Sender: f.sender, Now: f.clock.Now, Metrics: reg,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.h, err = ingest.New(f.cfg, f.be.RDB, log, ingest.Options{Verifier: f.svc, Now: f.clock.Now, Metrics: reg})
	if err != nil {
		f.t.Fatal(err)
	}
	return reg
}

const (
	mailsSeries    = "mailgw_verification_mails_total{"
	confirmsSeries = "mailgw_verification_confirmations_total"
	decisionSeries = "mailgw_decisions_total{"
)

// TestMetricsVerificationMails: every way a verification mail ends is
// counted once under its result, and under no other.
func TestMetricsVerificationMails(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*config.Config)
		errs   []error // what the sender returns, in turn
		addrs  []string
		rounds int // DeliverDue calls
		want   []string
	}{
		{
			name: "sent", addrs: []string{"dave@other.example"}, rounds: 1,
			want: []string{`mailgw_verification_mails_total{result="sent"} 1`},
		},
		{
			name: "not sent to a no-reply address", addrs: []string{"noreply@other.example", "mailer-daemon@other.example"}, rounds: 1,
			want: []string{`mailgw_verification_mails_total{result="not_sent"} 2`},
		},
		{
			name: "deferred on a temporary SendError", addrs: []string{"dave@other.example"}, rounds: 1,
			errs: []error{&verify.SendError{Temporary: true, Err: errors.New("451 4.3.0 try later")}},
			want: []string{`mailgw_verification_mails_total{result="deferred"} 1`},
		},
		{
			name: "deferred on a network error", addrs: []string{"dave@other.example"}, rounds: 1,
			errs: []error{errors.New("connection reset")},
			want: []string{`mailgw_verification_mails_total{result="deferred"} 1`},
		},
		{
			name: "failed on a permanent error", addrs: []string{"dave@other.example"}, rounds: 1,
			errs: []error{&verify.SendError{Err: errors.New("550 5.1.1 no such user")}},
			want: []string{`mailgw_verification_mails_total{result="failed"} 1`},
		},
		{
			// The retry is a separate attempt with its own result.
			name: "deferred then sent", addrs: []string{"dave@other.example"}, rounds: 2,
			errs: []error{&verify.SendError{Temporary: true, Err: errors.New("451 4.3.0 try later")}},
			want: []string{
				`mailgw_verification_mails_total{result="deferred"} 1`,
				`mailgw_verification_mails_total{result="sent"} 1`,
			},
		},
		{
			name:  "throttled by the per-domain limit",
			mod:   func(c *config.Config) { c.Verify.PerDomainPerHour = 1 },
			addrs: []string{"a@other.example", "b@other.example"}, rounds: 1,
			want: []string{
				`mailgw_verification_mails_total{result="sent"} 1`,
				`mailgw_verification_mails_total{result="throttled"} 1`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b *testkit.Backend) {
				f := newFixture(t, b, fixtureOptions{mod: tt.mod})
				reg := f.instrument()
				f.sender.errs = tt.errs
				f.queue(tt.addrs...)
				for range tt.rounds {
					f.deliver()
					// Past the first backoff (1 min), not the hour of the
					// rate limit: a throttled mail stays throttled.
					f.advance(time.Minute)
				}
				if got := testkit.MetricSamples(t, reg, mailsSeries); !slices.Equal(got, tt.want) {
					t.Errorf("verification mails = %q, want %q", got, tt.want)
				}
			})
		})
	}
}

// TestMetricsConfirm: the first Confirm of a link counts one confirmation
// and the release decision the service records; pressing it again counts
// neither.
func TestMetricsConfirm(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		reg := f.instrument()
		f.hold("Dave <dave@other.example>", "m1@other.example")
		token := tokenOf(t, f.deliverOne().Msg)
		if got := testkit.MetricSamples(t, reg, confirmsSeries+" "); got != nil {
			t.Fatalf("confirmations before Confirm = %q, want none", got)
		}
		held := `mailgw_decisions_total{channel="smtp",space="IT",outcome="held",reason="pending_verification"} 1`
		if got, want := testkit.MetricSamples(t, reg, decisionSeries), []string{held}; !slices.Equal(got, want) {
			t.Fatalf("decisions before Confirm = %q, want %q", got, want)
		}

		// accepted_new_customer is recorded only by the verification
		// service's release, not by ingest.
		want := []string{
			held,
			`mailgw_decisions_total{channel="smtp",space="IT",outcome="queued",reason="accepted_new_customer"} 1`,
		}
		for i := range 2 {
			if _, _, err := f.svc.Confirm(f.ctx, token); err != nil {
				t.Fatalf("Confirm %d: %v", i+1, err)
			}
			if got, want := testkit.MetricSamples(t, reg, confirmsSeries+" "), []string{confirmsSeries + " 1"}; !slices.Equal(got, want) {
				t.Errorf("after Confirm %d: confirmations = %q, want %q", i+1, got, want)
			}
			if got := testkit.MetricSamples(t, reg, decisionSeries); !slices.Equal(got, want) {
				t.Errorf("after Confirm %d: decisions = %q, want %q", i+1, got, want)
			}
		}
	})
}

// TestMetricsConcurrentConfirm: a link opened and confirmed in many tabs
// at once is one confirmation.
func TestMetricsConcurrentConfirm(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		reg := f.instrument()
		f.hold("Dave <dave@other.example>", "m1@other.example")
		token := tokenOf(t, f.deliverOne().Msg)
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if _, _, err := f.svc.Confirm(f.ctx, token); err != nil {
					t.Errorf("Confirm: %v", err)
				}
			})
		}
		wg.Wait()
		if got, want := testkit.MetricSamples(t, reg, confirmsSeries+" "), []string{confirmsSeries + " 1"}; !slices.Equal(got, want) {
			t.Errorf("after 20 concurrent Confirms: %q, want %q", got, want)
		}
	})
}

// TestMetricsSweepDecisions: the held requests the expiry sweep drops are
// counted as the service records them.
func TestMetricsSweepDecisions(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		reg := f.instrument()
		f.hold("dave@other.example", "m1@other.example", "it@example.com", "billing@example.com")
		f.advance(f.cfg.Verify.TTL.D())
		if n, err := f.svc.Sweep(f.ctx); err != nil || n != 1 {
			t.Fatalf("Sweep = %d, %v; want 1 address settled", n, err)
		}
		want := []string{
			`mailgw_decisions_total{channel="smtp",space="BILL",outcome="held",reason="pending_verification"} 1`,
			`mailgw_decisions_total{channel="smtp",space="BILL",outcome="ignored",reason="verification_expired"} 1`,
			`mailgw_decisions_total{channel="smtp",space="IT",outcome="held",reason="pending_verification"} 1`,
			`mailgw_decisions_total{channel="smtp",space="IT",outcome="ignored",reason="verification_expired"} 1`,
		}
		if got := testkit.MetricSamples(t, reg, decisionSeries); !slices.Equal(got, want) {
			t.Errorf("decisions = %q, want %q", got, want)
		}
		if got := testkit.MetricSamples(t, reg, confirmsSeries+" "); got != nil {
			t.Errorf("confirmations = %q, want none", got)
		}
	})
}
