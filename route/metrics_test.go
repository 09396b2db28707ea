package route

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"mailgw/internal/testkit"
	"mailgw/metrics"
)

const (
	decisionsSeries = "mailgw_decisions_total{"
	logErrorsSeries = "mailgw_decision_log_errors_total{"
)

// metricEntries are decisions of two channels, one twice, and a no_route
// refusal, which has no space.
func metricEntries() []Entry {
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	return []Entry{
		{Time: at, Channel: "smtp", MessageID: "m1@example.com", Space: "IT", Outcome: "queued", Reason: "accepted", Request: "IT-1"},
		{Time: at, Channel: "smtp", MessageID: "m2@example.com", Space: "IT", Outcome: "queued", Reason: "accepted", Request: "IT-2"},
		{Time: at, Channel: "imap", MessageID: "m3@example.com", Space: "BILL", Outcome: "held", Reason: "pending_verification"},
		{Time: at, Channel: "smtp", MessageID: "m4@example.com", Outcome: "rejected", Reason: "no_route"},
	}
}

// metricDecisions are the decision samples of metricEntries.
var metricDecisions = []string{
	`mailgw_decisions_total{channel="imap",space="BILL",outcome="held",reason="pending_verification"} 1`,
	`mailgw_decisions_total{channel="smtp",space="",outcome="rejected",reason="no_route"} 1`,
	`mailgw_decisions_total{channel="smtp",space="IT",outcome="queued",reason="accepted"} 2`,
}

// TestRecorderMetrics: the Recorder counts what it records in the stream,
// whether it writes the stream itself or through a LogWriter, and a dry
// run counts nothing.
func TestRecorderMetrics(t *testing.T) {
	tests := []struct {
		name   string
		dryRun bool
		writer bool
		want   []string
	}{
		{name: "synchronous", want: metricDecisions},
		{name: "through a log writer", writer: true, want: metricDecisions},
		{name: "dry run", dryRun: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b *backend) {
				ctx, st := testCtx(t), newTestStore(b.rdb)
				reg := metrics.NewRegistry()
				m := NewMetrics(reg)
				rec := Recorder{Store: st, Log: zerolog.Nop(), DryRun: tt.dryRun, Metrics: m}
				if tt.writer {
					rec.Writer = NewLogWriter(st, zerolog.Nop(), m)
				}
				for _, e := range metricEntries() {
					rec.Record(ctx, e)
				}
				if rec.Writer != nil {
					rec.Writer.Close(ctx)
				}
				if got := testkit.MetricSamples(t, reg, decisionsSeries); !slices.Equal(got, tt.want) {
					t.Errorf("decisions = %q, want %q", got, tt.want)
				}
				if got := testkit.MetricSamples(t, reg, logErrorsSeries); got != nil {
					t.Errorf("log errors with Redis up = %q, want none", got)
				}
				// The counts agree with what the stream got.
				logged, err := st.ReadLog(ctx, "0", 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				want := len(metricEntries())
				if tt.dryRun {
					want = 0
				}
				if len(logged) != want {
					t.Errorf("%d entries in the decision log, want %d", len(logged), want)
				}
			})
		})
	}
}

// TestDecisionLogErrorMetrics: with Redis down, every entry whose stream
// write failed is counted by channel, on the synchronous path and on the
// log writer's background path; the decisions still count, as they stand.
func TestDecisionLogErrorMetrics(t *testing.T) {
	want := []string{
		`mailgw_decision_log_errors_total{channel="imap"} 1`,
		`mailgw_decision_log_errors_total{channel="smtp"} 3`,
	}
	tests := []struct {
		name   string
		writer bool
	}{
		{name: "synchronous"},
		{name: "through a log writer", writer: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b *backend) {
				// A short timeout: every write here is meant to fail.
				st := NewStore(b.rdb, Options{Prefix: testPrefix, Timeout: 200 * time.Millisecond})
				reg := metrics.NewRegistry()
				m := NewMetrics(reg)
				rec := Recorder{Store: st, Log: zerolog.Nop(), Metrics: m}
				if tt.writer {
					rec.Writer = NewLogWriter(st, zerolog.Nop(), m)
				}
				b.stop(t)
				ctx := testCtx(t)
				for _, e := range metricEntries() {
					rec.Record(ctx, e)
				}
				if rec.Writer != nil {
					// Close returns once the queued entries were flushed,
					// or failed to be.
					closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					rec.Writer.Close(closeCtx)
					if closeCtx.Err() != nil {
						t.Fatal("log writer not flushed in time")
					}
				}
				if got := testkit.MetricSamples(t, reg, logErrorsSeries); !slices.Equal(got, want) {
					t.Errorf("log errors = %q, want %q", got, want)
				}
				if got := testkit.MetricSamples(t, reg, decisionsSeries); !slices.Equal(got, metricDecisions) {
					t.Errorf("decisions = %q, want %q", got, metricDecisions)
				}
			})
		})
	}
}
