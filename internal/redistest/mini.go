package redistest

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Mini starts a miniredis and returns a client connected to it along with
// the server, so a test can inspect keys or move time with FastForward.
// Both are closed when the test ends.
func Mini(t testing.TB) (*redis.Client, *miniredis.Miniredis) {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	// Registered after RunT's cleanup, so it runs first: the client goes
	// away before the server does.
	t.Cleanup(func() { _ = c.Close() })
	return c, m
}
