package testkit

import (
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestClock(t *testing.T) {
	start := time.Date(2026, 3, 2, 10, 15, 0, 0, time.UTC)
	c := NewClock(start)
	c.Add(90 * time.Minute)
	if got, want := c.Now(), start.Add(90*time.Minute); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
}

func TestEachBackend(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]*Backend{}
	t.Run("each", func(t *testing.T) {
		EachBackend(t, RealOptions{Client: func(o *redis.Options) { o.DialTimeout = 123 * time.Millisecond }}, func(t *testing.T, b *Backend) {
			if err := b.RDB.Ping(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			seen[t.Name()] = b
		})
	})
	mini, srv := seen["TestEachBackend/each/miniredis"], seen["TestEachBackend/each/redis-server"]
	if mini == nil || mini.Mini == nil || mini.Real != nil {
		t.Errorf("miniredis run: %+v", mini)
	}
	if srv == nil || srv.Real == nil || srv.Mini != nil {
		t.Fatalf("redis-server run: %+v", srv)
	}
	if o := srv.RDB.Options(); o.Addr != srv.Real.Addr || o.DialTimeout != 123*time.Millisecond {
		t.Errorf("redis-server client: Addr %s, DialTimeout %v; want %s, 123ms", o.Addr, o.DialTimeout, srv.Real.Addr)
	}
}
