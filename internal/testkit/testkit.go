// Package testkit holds test support that several packages' tests share:
// a clock that only the test moves, and a loop that runs a test against
// miniredis, which can move Redis's time and fail on demand, and against a
// real redis-server, whose behaviour miniredis only approximates.
package testkit

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"mailgw/internal/redistest"
	"mailgw/metrics"
)

// Clock is a time source for code under test that only the test moves.
// The code reads it from its own goroutines, hence the lock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time; pass it where the code under test takes a
// func() time.Time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Backend is one Redis a test runs against.
type Backend struct {
	RDB  *redis.Client
	Mini *miniredis.Miniredis // set for miniredis
	Real *redistest.Server    // set for redis-server
}

// RealOptions says how EachBackend runs redis-server and connects to it. The
// zero value is redistest.Real with a go-redis client of default options.
type RealOptions struct {
	Server redistest.Options
	Client func(*redis.Options) // adjusts the client's options, Addr set
}

// EachBackend runs f as a parallel subtest against miniredis and against
// a redis-server as r says.
func EachBackend(t *testing.T, r RealOptions, f func(t *testing.T, b *Backend)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) {
		t.Parallel()
		rdb, m := redistest.Mini(t)
		f(t, &Backend{RDB: rdb, Mini: m})
	})
	t.Run("redis-server", func(t *testing.T) {
		t.Parallel()
		s := redistest.RealWith(t, r.Server)
		opt := &redis.Options{Addr: s.Addr}
		if r.Client != nil {
			r.Client(opt)
		}
		rdb := redis.NewClient(opt)
		t.Cleanup(func() { _ = rdb.Close() })
		f(t, &Backend{RDB: rdb, Real: s})
	})
}

// MetricSamples returns the sample lines of reg that start with prefix, in
// the registry's (sorted) order; nil when there are none. Tests compare
// whole lines, labels and value together.
func MetricSamples(t testing.TB, reg *metrics.Registry, prefix string) []string {
	t.Helper()
	var b strings.Builder
	if _, err := reg.WriteTo(&b); err != nil {
		t.Fatalf("metrics: WriteTo: %v", err)
	}
	var out []string
	for l := range strings.Lines(b.String()) {
		if l = strings.TrimSuffix(l, "\n"); strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}
