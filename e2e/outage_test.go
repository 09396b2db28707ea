package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailgw/internal/redistest"
)

// TestRedisOutage stops Redis while ten clients are sending. During the
// outage mail is deferred with 451 4.3.0 and nothing half-written; the
// clients retry as an MTA would, and in the end every message is in the
// stream exactly once, with request ids 1..N and no gaps.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	// appendfsync always: the directory and every acknowledged write
	// survive the restart.
	srv := redistest.RealWith(t, redistest.Options{AppendOnly: true, ExtraArgs: []string{"--appendfsync", "always"}})
	rdb := srv.Client(t)
	g := startGateway(t, gwOptions{RedisURL: srv.URL})

	const total, clients = 300, 10
	const stopAfter = 50
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		accepted   atomic.Int64
		outage     atomic.Bool
		deferredIn atomic.Int64 // 451 4.3.0 answered while Redis was down
		mu         sync.Mutex
		replies    = map[string]int{} // every reply text that was not 250, with counts
		results    = make([]string, total)
	)
	work := make(chan int, total)
	for i := range total {
		work <- i
	}
	close(work)

	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			s := &smtpSender{addr: g.Addr}
			defer s.close()
			for i := range work {
				mid := fmt.Sprintf("outage-%03d@client.example", i)
				msg := message("Carol <carol@example.com>", "it@example.com", mid, fmt.Sprintf("Outage %d", i), "Message "+mid)
				for ctx.Err() == nil {
					res, err := s.send("carol@example.com", "it@example.com", msg)
					if err == nil && res.code == 250 {
						results[i] = res.text
						accepted.Add(1)
						break
					}
					key := fmt.Sprint(err)
					if err == nil {
						key = fmt.Sprintf("%d %v %s", res.code, res.enhanced, res.text)
						if res.code == 451 && res.enhanced == (smtp.EnhancedCode{4, 3, 0}) && outage.Load() {
							deferredIn.Add(1)
						}
					}
					mu.Lock()
					replies[key]++
					mu.Unlock()
					if err == nil && res.code/100 == 5 {
						results[i] = key // refused for good: reported below
						break
					}
					select {
					case <-ctx.Done():
					case <-time.After(25 * time.Millisecond):
					}
				}
			}
		})
	}

	for accepted.Load() < stopAfter && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	srv.Stop()
	outage.Store(true)
	stoppedAt := accepted.Load()
	stopped := time.Now()
	// A second is not always enough: with go-redis's dial retries and the
	// default redis.timeout, mailgw may take longer than that to give up
	// on Redis. Stay down until clients have seen a deferral (bounded),
	// then a little longer.
	time.Sleep(time.Second)
	for deferredIn.Load() == 0 && time.Since(stopped) < 15*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	firstDeferral := time.Since(stopped)
	time.Sleep(300 * time.Millisecond)
	outage.Store(false)
	during := deferredIn.Load()
	duringAccepted := accepted.Load() - stoppedAt
	downFor := time.Since(stopped)
	srv.Start()
	wg.Wait()

	mu.Lock()
	t.Logf("Redis stopped after %d accepted, down for %v (first 451 4.3.0 after at most %v); "+
		"during the outage %d replies were 451 4.3.0 and %d messages accepted; replies other than 250: %v",
		stoppedAt, downFor.Round(time.Millisecond), firstDeferral.Round(time.Millisecond), during, duringAccepted, replies)
	mu.Unlock()
	if during == 0 {
		t.Errorf("no 451 4.3.0 seen while Redis was down")
	}
	if duringAccepted > clients {
		// At most the transactions already past Redis when it stopped.
		t.Errorf("%d messages accepted while Redis was down", duringAccepted)
	}
	want := map[string]bool{}
	duplicates := 0
	for i, r := range results {
		mid := fmt.Sprintf("outage-%03d@client.example", i)
		want[mid] = true
		switch {
		case strings.HasPrefix(r, "OK: queued as IT-"):
		case r == "OK: accepted (duplicate)":
			// Queued by a write whose reply Redis never sent because it
			// was stopping; the retry (the client's, or go-redis's own
			// after the restart) finds it. Still exactly once.
			duplicates++
		case r == "":
			t.Errorf("%s never accepted within the time limit", mid)
		default:
			t.Errorf("%s: %s", mid, r)
		}
	}
	if duplicates > 0 {
		t.Logf("%d messages were answered as duplicates of a write whose reply was lost", duplicates)
	}
	if n := accepted.Load(); n != total {
		t.Errorf("%d of %d messages accepted", n, total)
	}
	if n := rdb.XLen(context.Background(), streamKey("IT")).Val(); n != int64(len(want)) {
		t.Errorf("XLEN = %d, want %d distinct Message-IDs", n, len(want))
	}
	requireExactlyOnce(t, rdb, "IT", want, total)
	if seq := rdb.Get(context.Background(), "mailgw:{IT}:seq").Val(); seq != fmt.Sprint(total) {
		t.Errorf("request counter = %q, want %d: ids were used up by writes that did not happen", seq, total)
	}

	g.stop(t)
	lines := g.logLines(t)
	if len(decisions(lines, "backend_unavailable")) == 0 {
		t.Errorf("no backend_unavailable decision logged on stderr")
	}
	for _, m := range decisions(lines, "backend_unavailable") {
		if m["outcome"] != "deferred" || m["level"] != "warn" {
			t.Errorf("backend_unavailable logged as %v at level %v, want deferred at warn", m["outcome"], m["level"])
			break
		}
	}
}
