package route

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batcher sends the Redis commands of concurrent messages together: while
// one pipeline is on its way, the commands of the sessions that came in
// meanwhile gather for the next. Under load that turns many small round
// trips into few large ones, on both sides of the connection; an idle
// gateway sends each message's commands at once, as before.
type Batcher struct {
	rdb     redis.UniversalClient
	jobs    chan *batchJob
	timeout time.Duration
}

type batchJob struct {
	fill func(redis.Pipeliner)
	done chan struct{}
}

// maxBatch bounds one pipeline, so that one batch cannot hold up the next
// for long.
const maxBatch = 64

// NewBatcher starts workers pipelines that may be in flight at once; ctx
// ending stops them.
func NewBatcher(ctx context.Context, rdb redis.UniversalClient, workers int, timeout time.Duration) *Batcher {
	b := &Batcher{rdb: rdb, jobs: make(chan *batchJob, 4*maxBatch), timeout: timeout}
	for range workers {
		go b.run(ctx)
	}
	return b
}

// errBatcherStopped is returned once the batcher's context has ended.
var errBatcherStopped = errors.New("route: batcher stopped")

// Do adds fill's commands to the next pipeline and returns when it has
// run; the commands carry their own results and errors.
func (b *Batcher) Do(ctx context.Context, fill func(redis.Pipeliner)) error {
	j := &batchJob{fill: fill, done: make(chan struct{})}
	select {
	case b.jobs <- j:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		// The commands may still run; all of them are safe to repeat
		// (the write script dedupes), which is what a retry will do.
		return ctx.Err()
	}
}

func (b *Batcher) run(ctx context.Context) {
	batch := make([]*batchJob, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-b.jobs:
			batch = append(batch[:0], j)
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case j := <-b.jobs:
				batch = append(batch, j)
			default:
				break fill
			}
		}
		b.exec(batch)
	}
}

func (b *Batcher) exec(batch []*batchJob) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	pipe := b.rdb.Pipeline()
	for _, j := range batch {
		j.fill(pipe)
	}
	// Each command keeps its own error; the callers read them.
	_, _ = pipe.Exec(ctx)
	for _, j := range batch {
		close(j.done)
	}
}
