package identify_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/internal/redistest"
	"mailgw/internal/testkit"
)

// windowStart is the start of a minute, so fixed windows of a minute begin there.
var windowStart = time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)

type limiterBackend struct {
	name string
	open func(t *testing.T) redis.UniversalClient
}

var limiterBackends = []limiterBackend{
	{"miniredis", func(t *testing.T) redis.UniversalClient { c, _ := redistest.Mini(t); return c }},
	{"redis-server", func(t *testing.T) redis.UniversalClient { return redistest.Real(t).Client(t) }},
}

func count(t *testing.T, l *identify.Limiter, sender, space string) *identify.Throttle {
	t.Helper()
	th, err := l.Count(context.Background(), sender, space)
	if err != nil {
		t.Fatalf("Count(%s, %s): %v", sender, space, err)
	}
	return th
}

func TestLimiter(t *testing.T) {
	for _, be := range limiterBackends {
		t.Run(be.name, func(t *testing.T) {
			t.Run("sender", func(t *testing.T) {
				rdb := be.open(t)
				clk := testkit.NewClock(windowStart)
				l := identify.NewLimiter(rdb, "mailgw:", config.Rate{
					Sender: config.Limit{Count: 3, Window: config.Duration(time.Minute)},
					Space:  config.Limit{Count: 100, Window: config.Duration(time.Minute)},
				}, time.Second, clk.Now)
				for i := 1; i <= 3; i++ {
					if th := count(t, l, "carol@example.com", "IT"); th != nil {
						t.Fatalf("message %d throttled: %v", i, th)
					}
					clk.Add(time.Second)
				}
				// Another sender has an allowance of its own.
				if th := count(t, l, "dan@example.com", "IT"); th != nil {
					t.Fatalf("other sender throttled: %v", th)
				}
				for i := int64(4); i <= 6; i++ {
					th := count(t, l, "carol@example.com", "IT")
					want := identify.Throttle{Limit: "sender", Count: i, Max: 3}
					if th == nil || *th != want {
						t.Fatalf("message %d: %+v, want %+v", i, th, want)
					}
				}
				// The sender limit spans spaces.
				if th := count(t, l, "carol@example.com", "BILL"); th == nil || th.Limit != "sender" || th.Count != 7 {
					t.Fatalf("other space: %+v, want the sender limit with count 7", th)
				}

				// The next window counts afresh, but a sender that went over
				// stays throttled while its penalty lasts.
				clk.Add(time.Minute)
				if th := count(t, l, "carol@example.com", "IT"); th == nil || !th.Penalty || th.Count != 1 {
					t.Fatalf("first message of the next window: %+v, want the penalty with count 1", th)
				}
				if ttl := rdb.TTL(context.Background(), "mailgw:rl:penalty:carol@example.com").Val(); ttl <= 9*time.Minute || ttl > 10*time.Minute {
					t.Errorf("penalty TTL %v, want ten windows from the latest attempt", ttl)
				}
				// One that never went over is not affected.
				if th := count(t, l, "dan@example.com", "IT"); th != nil {
					t.Fatalf("other sender in the next window: %+v", th)
				}
				// Counters expire: at most two windows.
				keys, err := rdb.Keys(context.Background(), "mailgw:rl:s*").Result()
				if err != nil {
					t.Fatal(err)
				}
				if len(keys) == 0 {
					t.Fatal("no rl: keys written")
				}
				for _, k := range keys {
					ttl := rdb.TTL(context.Background(), k).Val()
					if ttl <= 0 || ttl > 2*time.Minute {
						t.Errorf("key %s has TTL %v, want (0, 2m]", k, ttl)
					}
				}
			})

			t.Run("space", func(t *testing.T) {
				rdb := be.open(t)
				clk := testkit.NewClock(windowStart)
				l := identify.NewLimiter(rdb, "mailgw:", config.Rate{
					Sender: config.Limit{Count: 100, Window: config.Duration(time.Minute)},
					Space:  config.Limit{Count: 4, Window: config.Duration(time.Hour)},
				}, time.Second, clk.Now)
				senders := []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"}
				for _, s := range senders {
					if th := count(t, l, s, "IT"); th != nil {
						t.Fatalf("%s throttled: %v", s, th)
					}
				}
				want := identify.Throttle{Limit: "space", Count: 5, Max: 4}
				if th := count(t, l, "e@example.com", "IT"); th == nil || *th != want {
					t.Fatalf("fifth message to IT: %+v, want %+v", th, want)
				}
				if th := count(t, l, "e@example.com", "BILL"); th != nil {
					t.Fatalf("other space throttled: %v", th)
				}
				// The window is an hour: a minute later IT is still over.
				clk.Add(time.Minute)
				if th := count(t, l, "f@example.com", "IT"); th == nil || th.Limit != "space" || th.Count != 6 {
					t.Fatalf("a minute later: %+v, want space count 6", th)
				}
				clk.Add(time.Hour)
				if th := count(t, l, "f@example.com", "IT"); th != nil {
					t.Fatalf("next hour: %v", th)
				}
			})

			t.Run("sender reported first", func(t *testing.T) {
				rdb := be.open(t)
				l := identify.NewLimiter(rdb, "mailgw:", config.Rate{
					Sender: config.Limit{Count: 1, Window: config.Duration(time.Minute)},
					Space:  config.Limit{Count: 1, Window: config.Duration(time.Minute)},
				}, time.Second, testkit.NewClock(windowStart).Now)
				count(t, l, "carol@example.com", "IT")
				if th := count(t, l, "carol@example.com", "IT"); th == nil || th.Limit != "sender" || th.Count != 2 {
					t.Fatalf("%+v, want the sender limit", th)
				}
			})

			t.Run("off", func(t *testing.T) {
				rdb := be.open(t)
				l := identify.NewLimiter(rdb, "mailgw:", config.Rate{
					Sender: config.Limit{Count: -1, Window: config.Duration(time.Minute)},
					Space:  config.Limit{Count: -1, Window: config.Duration(time.Minute)},
				}, time.Second, testkit.NewClock(windowStart).Now)
				for i := range 100 {
					if th := count(t, l, "carol@example.com", "IT"); th != nil {
						t.Fatalf("message %d throttled with limits off: %v", i+1, th)
					}
				}
				if keys := rdb.Keys(context.Background(), "*").Val(); len(keys) != 0 {
					t.Errorf("limits off wrote %v", keys)
				}
				// One limit off, the other on.
				l = identify.NewLimiter(rdb, "mailgw:", config.Rate{
					Sender: config.Limit{Count: -1, Window: config.Duration(time.Minute)},
					Space:  config.Limit{Count: 2, Window: config.Duration(time.Minute)},
				}, time.Second, testkit.NewClock(windowStart).Now)
				count(t, l, "carol@example.com", "IT")
				count(t, l, "carol@example.com", "IT")
				if th := count(t, l, "carol@example.com", "IT"); th == nil || th.Limit != "space" {
					t.Fatalf("%+v, want the space limit", th)
				}
			})
		})
	}
}

// TestLimiterDefaults: the limiter built from a config with defaults
// allows 20 messages a minute from one sender.
func TestLimiterDefaults(t *testing.T) {
	cfg, err := config.Parse([]byte("hostname: mx.example.com\nspaces:\n  - {key: IT, addresses: [it@example.com]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rdb, _ := redistest.Mini(t)
	clk := testkit.NewClock(windowStart)
	l := identify.NewLimiter(rdb, cfg.Redis.Prefix, cfg.Rate, cfg.Redis.Timeout.D(), clk.Now)
	for i := 1; i <= 20; i++ {
		if th := count(t, l, "carol@example.com", "IT"); th != nil {
			t.Fatalf("message %d: %v", i, th)
		}
		clk.Add(2 * time.Second)
	}
	th := count(t, l, "carol@example.com", "IT")
	if th == nil || th.Count != 21 || th.Max != config.DefaultRateSender {
		t.Fatalf("21st message: %+v", th)
	}
	if got, want := th.String(), "sender rate limit: 21 messages, limit 20 per window"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestLimiterRedisError(t *testing.T) {
	rdb, mr := redistest.Mini(t)
	l := identify.NewLimiter(rdb, "mailgw:", config.Rate{
		Sender: config.Limit{Count: 3, Window: config.Duration(time.Minute)},
		Space:  config.Limit{Count: 3, Window: config.Duration(time.Minute)},
	}, time.Second, nil)
	mr.SetError("LOADING Redis is loading the dataset in memory")
	th, err := l.Count(context.Background(), "carol@example.com", "IT")
	if err == nil || th != nil {
		t.Fatalf("Count with Redis failing: %+v, %v; want an error", th, err)
	}
	if !strings.HasPrefix(err.Error(), "identify: rate limit") {
		t.Errorf("error %q not prefixed with the package", err)
	}
	var re redis.Error
	if !errors.As(err, &re) {
		t.Errorf("error %v does not wrap the Redis error", err)
	}
}

// TestLimiterQueueCountAndUncount: QueueCount shares a caller's pipeline;
// Uncount takes a message back, so mail refused before the rate limit row
// (duplicates, unauthenticated mail) uses up no allowance.
func TestLimiterQueueCountAndUncount(t *testing.T) {
	for _, be := range limiterBackends {
		t.Run(be.name, func(t *testing.T) {
			rdb := be.open(t)
			ctx := context.Background()
			clk := testkit.NewClock(windowStart)
			l := identify.NewLimiter(rdb, "mailgw:", config.Rate{
				Sender: config.Limit{Count: 2, Window: config.Duration(time.Minute)},
				Space:  config.Limit{Count: 100, Window: config.Duration(time.Minute)},
			}, time.Second, clk.Now)

			pipe := rdb.Pipeline()
			other := pipe.Get(ctx, "mailgw:unrelated")
			read := l.QueueCount(ctx, pipe, "carol@example.com", "IT")
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				t.Fatal(err)
			}
			if !errors.Is(other.Err(), redis.Nil) {
				t.Fatalf("caller's own command: %v", other.Err())
			}
			if th, err := read(); th != nil || err != nil {
				t.Fatalf("first message: %+v, %v", th, err)
			}
			// Fifty copies counted and taken back change nothing.
			for range 50 {
				if th := count(t, l, "carol@example.com", "IT"); th != nil && th.Count > 51 {
					t.Fatalf("counter runs away: %+v", th)
				}
				if err := l.Uncount(ctx, "carol@example.com", "IT"); err != nil {
					t.Fatal(err)
				}
			}
			if th := count(t, l, "carol@example.com", "IT"); th != nil {
				t.Fatalf("second message: %+v", th)
			}
			if th := count(t, l, "carol@example.com", "IT"); th == nil || th.Count != 3 {
				t.Fatalf("third message: %+v, want count 3", th)
			}

			// Limits that are off take nothing back either.
			off := identify.NewLimiter(rdb, "off:", config.Rate{
				Sender: config.Limit{Count: -1, Window: config.Duration(time.Minute)},
				Space:  config.Limit{Count: -1, Window: config.Duration(time.Minute)},
			}, time.Second, clk.Now)
			if err := off.Uncount(ctx, "carol@example.com", "IT"); err != nil {
				t.Fatal(err)
			}
			if keys := rdb.Keys(ctx, "off:*").Val(); len(keys) != 0 {
				t.Errorf("Uncount with limits off wrote %v", keys)
			}
		})
	}
}

// TestLimiterUncountAcrossWindows: a message counted just before a window
// ends and taken back just after must neither leave a counter that never
// expires nor give the sender an extra message in the new window.
func TestLimiterUncountAcrossWindows(t *testing.T) {
	rdb, _ := redistest.Mini(t)
	ctx := context.Background()
	clk := testkit.NewClock(windowStart.Add(time.Minute - time.Millisecond))
	l := identify.NewLimiter(rdb, "mailgw:", config.Rate{
		Sender: config.Limit{Count: 1, Window: config.Duration(time.Minute)},
		Space:  config.Limit{Count: -1, Window: config.Duration(time.Minute)},
	}, time.Second, clk.Now)
	count(t, l, "carol@example.com", "IT") // a duplicate, found out ...
	clk.Add(time.Millisecond)
	if err := l.Uncount(ctx, "carol@example.com", "IT"); err != nil { // ... in the next window
		t.Fatal(err)
	}
	for _, k := range rdb.Keys(ctx, "mailgw:rl:*").Val() {
		if ttl := rdb.TTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("key %s = %s has no expiry (TTL %v)", k, rdb.Get(ctx, k).Val(), ttl)
		}
	}
	count(t, l, "carol@example.com", "IT")
	if th := count(t, l, "carol@example.com", "IT"); th == nil {
		t.Errorf("second message of the new window allowed with a limit of 1")
	}
}
