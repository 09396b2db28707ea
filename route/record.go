package route

import (
	"context"

	"github.com/rs/zerolog"
)

// Recorder writes decisions: one structured log line each and, unless it
// is a dry run, an entry in the decision log stream. Every stage that
// decides what happens to a message records through it, so the log and
// the stream always agree.
type Recorder struct {
	Store  *Store
	Log    zerolog.Logger
	DryRun bool
	// Writer, when set, appends to the stream in the background.
	Writer *LogWriter
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
		return
	}
	if r.Writer != nil {
		r.Writer.Write(ctx, e)
		return
	}
	if err := r.Store.Log(ctx, e); err != nil {
		r.Log.Error().Err(err).Str("message_id", e.MessageID).Msg("decision log write failed")
	}
}
