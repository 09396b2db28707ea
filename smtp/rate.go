package smtp

import (
	"sync"
	"time"

	"mailgw/config"
)

// ipRate counts events per remote IP in fixed windows, in memory: it
// protects this instance's listener, so it needs no shared state.
type ipRate struct {
	limit config.Limit
	now   func() time.Time

	mu     sync.Mutex
	start  time.Time
	counts map[string]int
}

func newIPRate(l config.Limit) *ipRate {
	return &ipRate{limit: l, now: time.Now, counts: map[string]int{}}
}

// allow counts one event for ip and reports the count and whether it is
// within the limit. The empty ip (a unix socket peer) is never limited.
func (r *ipRate) allow(ip string) (int, bool) {
	if r == nil || ip == "" || r.limit.Off() {
		return 0, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.start) >= r.limit.Window.D() {
		r.start, r.counts = now, map[string]int{}
	}
	r.counts[ip]++
	n := r.counts[ip]
	return n, n <= r.limit.Count
}
