package identify

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/config"
)

// Limiter counts messages per sender and per space in fixed windows in
// Redis, so every instance shares the counts.
type Limiter struct {
	rdb     redis.UniversalClient
	prefix  string
	sender  config.Limit
	space   config.Limit
	timeout time.Duration
	now     func() time.Time
}

// NewLimiter returns a limiter for the rate section of the config.
func NewLimiter(rdb redis.UniversalClient, prefix string, r config.Rate, timeout time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Limiter{rdb: rdb, prefix: prefix, sender: r.Sender, space: r.Space, timeout: timeout, now: now}
}

// Throttle is a limit a message went over, with its counter for the log.
type Throttle struct {
	Limit string // "sender" or "space"
	Count int64
	Max   int
}

func (t Throttle) String() string {
	return fmt.Sprintf("%s rate limit: %d messages, limit %d per window", t.Limit, t.Count, t.Max)
}

// Count adds one message from sender to space and reports the first limit
// it goes over, if any. Counting happens whether or not a limit is over, so
// a sender that keeps going stays throttled until it slows down.
func (l *Limiter) Count(ctx context.Context, sender, space string) (*Throttle, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	type counter struct {
		name string
		lim  config.Limit
		key  string
		cmd  *redis.IntCmd
	}
	counters := []*counter{
		{name: "sender", lim: l.sender, key: "sender:" + sender},
		{name: "space", lim: l.space, key: "space:" + space},
	}
	pipe := l.rdb.Pipeline()
	for _, c := range counters {
		if c.lim.Off() {
			continue
		}
		w := c.lim.Window.D()
		bucket := l.now().UnixNano() / int64(w)
		key := l.prefix + "rl:" + c.key + ":" + strconv.FormatInt(bucket, 10)
		c.cmd = pipe.Incr(ctx, key)
		pipe.Expire(ctx, key, 2*w)
	}
	if pipe.Len() == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("identify: rate limit: %w", err)
	}
	for _, c := range counters {
		if c.cmd != nil && c.cmd.Val() > int64(c.lim.Count) {
			return &Throttle{Limit: c.name, Count: c.cmd.Val(), Max: c.lim.Count}, nil
		}
	}
	return nil, nil
}
