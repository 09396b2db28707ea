package route

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// LogWriter appends decisions to the log stream in the background, many
// per round trip. The decision is already final and logged as a line when
// an entry is queued, so this takes the log stream off each message's path.
// A full queue falls back to writing in the caller, so the stream never
// silently drops an entry while the process lives.
type LogWriter struct {
	store   *Store
	log     zerolog.Logger
	metrics *Metrics
	ch      chan Entry
	done    chan struct{}
}

const logBatch = 128

// NewLogWriter starts the writer; Close flushes and stops it.
func NewLogWriter(store *Store, log zerolog.Logger, m *Metrics) *LogWriter {
	w := &LogWriter{store: store, log: log, metrics: m, ch: make(chan Entry, 4096), done: make(chan struct{})}
	go w.run()
	return w
}

// Write queues e.
func (w *LogWriter) Write(ctx context.Context, e Entry) {
	select {
	case w.ch <- e:
	default:
		if err := w.store.Log(ctx, e); err != nil {
			w.metrics.logFailed(e)
			w.log.Error().Err(err).Str("message_id", e.MessageID).Msg("decision log write failed")
		}
	}
}

// Close writes what is queued, waiting at most until ctx ends.
func (w *LogWriter) Close(ctx context.Context) {
	close(w.ch)
	select {
	case <-w.done:
	case <-ctx.Done():
		w.log.Warn().Msg("decision log not flushed before shutdown")
	}
}

func (w *LogWriter) run() {
	defer close(w.done)
	batch := make([]Entry, 0, logBatch)
	for e := range w.ch {
		batch = append(batch[:0], e)
	fill:
		for len(batch) < logBatch {
			select {
			case e, ok := <-w.ch:
				if !ok {
					break fill
				}
				batch = append(batch, e)
			default:
				break fill
			}
		}
		w.flush(batch)
	}
}

func (w *LogWriter) flush(batch []Entry) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*w.store.opt.Timeout)
	defer cancel()
	pipe := w.store.rdb.Pipeline()
	for _, e := range batch {
		pipe.XAdd(ctx, w.store.logArgs(e))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// The entries' log lines were written when they were queued.
		w.metrics.logFailed(batch...)
		w.log.Error().Err(err).Int("entries", len(batch)).Msg("decision log write failed")
	}
}

func (s *Store) logArgs(e Entry) *redis.XAddArgs {
	return &redis.XAddArgs{
		Stream: s.LogKey(),
		MaxLen: s.opt.LogMaxLen,
		Approx: true,
		Values: []any{
			"time", e.Time.UTC().Format(time.RFC3339Nano),
			"channel", e.Channel,
			"message_id", e.MessageID,
			"from", e.From,
			"space", e.Space,
			"outcome", e.Outcome,
			"reason", e.Reason,
			"request", e.Request,
			"detail", e.Detail,
		},
	}
}
