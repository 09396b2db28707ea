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
	// Penalty: under the limit now, but over it recently.
	Penalty bool
}

func (t Throttle) String() string {
	s := fmt.Sprintf("%s rate limit: %d messages, limit %d per window", t.Limit, t.Count, t.Max)
	if t.Penalty {
		s += "; still throttled for going over it recently"
	}
	return s
}

// Count adds one message from sender to space and reports the first limit
// it goes over, if any. Counting happens whether or not a limit is over, so
// a sender that keeps going stays throttled until it slows down.
func (l *Limiter) Count(ctx context.Context, sender, space string) (*Throttle, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	pipe := l.rdb.Pipeline()
	read := l.QueueCount(ctx, pipe, sender, space)
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("identify: rate limit: %w", err)
		}
	}
	return read()
}

type counter struct {
	name string
	lim  config.Limit
	key  string
	cmd  *redis.IntCmd
}

func (l *Limiter) counters(sender, space string) []*counter {
	out := make([]*counter, 0, 2)
	for _, c := range []*counter{
		{name: "sender", lim: l.sender, key: "sender:" + sender},
		{name: "space", lim: l.space, key: "space:" + space},
	} {
		if c.lim.Off() {
			continue
		}
		w := c.lim.Window.D()
		c.key = l.prefix + "rl:" + c.key + ":" + strconv.FormatInt(l.now().UnixNano()/int64(w), 10)
		out = append(out, c)
	}
	return out
}

// penaltyWindows is how many windows a sender that went over its limit
// stays throttled, counted from its latest attempt: a mail loop keeps
// trying, so it stays stopped, where a mere burst is let through again.
const penaltyWindows = 10

func (l *Limiter) penaltyKey(sender string) string { return l.prefix + "rl:penalty:" + sender }

// QueueCount adds Count's commands to pipe, so that callers can share the
// round trip with their look-ups; after pipe ran, the returned function
// reports the limit gone over.
func (l *Limiter) QueueCount(ctx context.Context, pipe redis.Pipeliner, sender, space string) func() (*Throttle, error) {
	cs := l.counters(sender, space)
	for _, c := range cs {
		c.cmd = pipe.Incr(ctx, c.key)
		pipe.Expire(ctx, c.key, 2*c.lim.Window.D())
	}
	var penalty *redis.IntCmd
	if !l.sender.Off() {
		penalty = pipe.Exists(ctx, l.penaltyKey(sender))
	}
	return func() (*Throttle, error) {
		for _, c := range cs {
			if err := c.cmd.Err(); err != nil {
				return nil, fmt.Errorf("identify: rate limit: %w", err)
			}
		}
		var t *Throttle
		for _, c := range cs {
			if c.cmd.Val() > int64(c.lim.Count) {
				t = &Throttle{Limit: c.name, Count: c.cmd.Val(), Max: c.lim.Count}
				break
			}
		}
		if t == nil && penalty != nil && penalty.Val() > 0 {
			t = &Throttle{Limit: "sender", Count: cs[0].cmd.Val(), Max: l.sender.Count, Penalty: true}
		}
		if t != nil && t.Limit != "space" && !l.sender.Off() {
			// Every attempt while throttled renews the penalty.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
			defer cancel()
			if err := l.rdb.Set(pctx, l.penaltyKey(sender), "1", penaltyWindows*l.sender.Window.D()).Err(); err != nil {
				return t, fmt.Errorf("identify: rate limit penalty: %w", err)
			}
		}
		return t, nil
	}
}

var uncountScript = redis.NewScript(`if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end return 0`)

// Uncount takes back a message counted by QueueCount that turned out not
// to count (a duplicate, or one refused before the rate limit row).
func (l *Limiter) Uncount(ctx context.Context, sender, space string) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	pipe := l.rdb.Pipeline()
	for _, c := range l.counters(sender, space) {
		// Only a counter that still exists: one of a window that has
		// since begun would be created at -1 and never expire.
		uncountScript.Eval(ctx, pipe, []string{c.key})
	}
	if pipe.Len() == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("identify: rate limit: %w", err)
	}
	return nil
}
