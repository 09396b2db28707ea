package route

import (
	"context"

	"github.com/rs/zerolog"

	"mailgw/metrics"
)

// Metrics are the counters the decision recorders and log writer of one
// process share. A nil *Metrics counts nothing.
type Metrics struct {
	decisions *metrics.CounterVec
	logErrors *metrics.CounterVec
}

// NewMetrics registers route's families on r.
func NewMetrics(r *metrics.Registry) *Metrics {
	return &Metrics{
		decisions: r.CounterVec("mailgw_decisions_total",
			"Decisions on messages, by channel, space (empty for no_route), outcome and reason.",
			"channel", "space", "outcome", "reason"),
		logErrors: r.CounterVec("mailgw_decision_log_errors_total",
			"Decisions logged as a line but not written to the decision log stream (Redis failed).",
			"channel"),
	}
}

func (m *Metrics) decided(e Entry) {
	if m != nil {
		m.decisions.Inc(e.Channel, e.Space, e.Outcome, e.Reason)
	}
}

func (m *Metrics) logFailed(entries ...Entry) {
	if m != nil {
		for _, e := range entries {
			m.logErrors.Inc(e.Channel)
		}
	}
}

// Recorder writes decisions: one structured log line each and, unless it
// is a dry run, an entry in the decision log stream. Every stage that
// decides what happens to a message records through it, so the log and
// the stream always agree.
type Recorder struct {
	Store  *Store
	Log    zerolog.Logger
	DryRun bool
	// Writer, when set, appends to the stream in the background.
	Writer  *LogWriter
	Metrics *Metrics
}

// Record logs e. A failure to write the stream is logged, not returned:
// the decision stands, and failing it now would make the sender retry a
// message that was already queued.
func (r Recorder) Record(ctx context.Context, e Entry) {
	ev := r.Log.Info()
	if e.Outcome == "deferred" {
		ev = r.Log.Warn()
	}
	ev.Str("channel", e.Channel).
		Str("message_id", e.MessageID).
		Str("from", e.From).
		Str("space", e.Space).
		Str("rcpt", e.Recipient).
		Str("outcome", e.Outcome).
		Str("reason", e.Reason).
		Str("request", e.Request).
		Str("detail", e.Detail).
		Int("size", e.Size).
		Bool("dry_run", r.DryRun).
		Msg("decision")
	if r.DryRun {
		// A dry run decides nothing that happened, so it is not counted.
		return
	}
	r.Metrics.decided(e)
	if r.Writer != nil {
		r.Writer.Write(ctx, e)
		return
	}
	if err := r.Store.Log(ctx, e); err != nil {
		r.Metrics.logFailed(e)
		r.Log.Error().Err(err).Str("message_id", e.MessageID).Msg("decision log write failed")
	}
}
