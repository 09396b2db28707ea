package imap

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
)

// TestSettle: queued, held and ignored mail ends \Seen in the mailbox, or
// in the processed folder when there is one (created by the poller);
// rejected mail goes to the rejected folder. With MOVE, mail arrives in a
// folder as it was, unseen; without, go-imap's COPY fallback needs it
// flagged \Seen first. Each message reaches the handler once, as IMAP
// mail for the mailbox's address, and the cursor records where the
// poller got to.
func TestSettle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		caps      goimap.CapSet
		processed string
		suffix    string // of the messages in a folder
		stores    bool   // whether the poller sends STORE
	}{
		{"mark-seen", capsMove, "", "", true},
		{"move", capsMove, "Processed", "", false},
		{"copy-fallback", capsRev1, "Processed", "+seen", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, tc.caps)
			r.cfg.Processed = tc.processed
			ids := []string{"queued@example.com", "held@example.com", "ignored@example.com", "rejected@example.com"}
			raws := map[string][]byte{}
			for _, id := range ids {
				raws[id] = mail(id, "X-Want: "+strings.TrimSuffix(id, "@example.com"))
				r.srv.add(t, "INBOX", raws[id])
			}
			f := &fakeHandler{}
			p := r.poller(f)
			start(t, p)

			wantInbox := []string{"queued@example.com+seen", "held@example.com+seen", "ignored@example.com+seen"}
			var wantProcessed []string
			if tc.processed != "" {
				wantInbox = []string{}
				for _, id := range ids[:3] {
					wantProcessed = append(wantProcessed, id+tc.suffix)
				}
			}
			settled := func() bool {
				if !slices.Equal(r.srv.ids(t, "Rejected"), []string{"rejected@example.com" + tc.suffix}) ||
					!slices.Equal(r.srv.ids(t, "INBOX"), wantInbox) {
					return false
				}
				return tc.processed == "" || slices.Equal(r.srv.ids(t, tc.processed), wantProcessed)
			}
			waitFor(t, "every message settled", settled)
			r.quiet()
			if !settled() {
				t.Fatalf("mailbox changed after settling: INBOX %v, Rejected %v", r.srv.ids(t, "INBOX"), r.srv.ids(t, "Rejected"))
			}
			if tc.processed == "" {
				if _, ok := r.srv.list(t, "Processed"); ok {
					t.Errorf("a Processed folder was created though none is configured")
				}
			}

			calls := f.all()
			if got := f.order(); !slices.Equal(got, ids) {
				t.Fatalf("handler saw %v, want each of %v once, in order", got, ids)
			}
			for _, c := range calls {
				if !bytes.Equal(c.Raw, raws[c.ID]) {
					t.Errorf("%s: handler got %q, want the message as appended", c.ID, c.Raw)
				}
				if c.Env.Channel != ingest.ChannelIMAP || !slices.Equal(c.Env.Recipients, []string{"it@example.com"}) || c.Env.RemoteAddr != r.cfg.Addr {
					t.Errorf("%s: envelope %+v, want channel imap, recipient it@example.com, remote %s", c.ID, c.Env, r.cfg.Addr)
				}
			}
			if n := r.srv.stores.Load(); (n > 0) != tc.stores {
				t.Errorf("%d STORE commands, want some: %v", n, tc.stores)
			}
			cur := r.cursor(p)
			if want := strconv.FormatUint(uint64(r.srv.uidValidity(t, "INBOX")), 10); cur["uidvalidity"] != want || cur["last_uid"] != "4" {
				t.Errorf("cursor %v, want uidvalidity %s and last_uid 4", cur, want)
			}
		})
	}
}

// TestNothingSettledBeforeHandleReturns: while the handler is still busy
// with a message (as when Redis is slow) it stays unseen in the mailbox.
func TestNothingSettledBeforeHandleReturns(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	r.cfg.Processed = "Processed"
	r.srv.add(t, "INBOX", mail("m1@example.com"))
	r.srv.add(t, "INBOX", mail("m2@example.com", "X-Want: rejected"))
	entered, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	f := &fakeHandler{}
	f.setOverride(func(id string) string {
		if id == "m1@example.com" {
			once.Do(func() { close(entered); <-release })
		}
		return ""
	})
	start(t, r.poller(f))
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the poller is stopped

	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never called")
	}
	if got := r.srv.ids(t, "INBOX"); !slices.Equal(got, []string{"m1@example.com", "m2@example.com"}) {
		t.Errorf("INBOX while Handle runs: %v, want both messages still unseen", got)
	}
	for _, folder := range []string{"Processed", "Rejected"} {
		if got := r.srv.ids(t, folder); len(got) != 0 {
			t.Errorf("%s while Handle runs: %v, want nothing", folder, got)
		}
	}

	releaseOnce.Do(func() { close(release) })
	waitFor(t, "both settled", func() bool {
		return slices.Equal(r.srv.ids(t, "INBOX"), []string{}) &&
			slices.Equal(r.srv.ids(t, "Processed"), []string{"m1@example.com"}) &&
			slices.Equal(r.srv.ids(t, "Rejected"), []string{"m2@example.com"})
	})
}

// TestStopFinishesMessage: a stop while a message is being handled lets
// that message finish, flag and cursor included, before Run returns.
func TestStopFinishesMessage(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	r.srv.add(t, "INBOX", mail("m1@example.com"))
	entered, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	f := &fakeHandler{}
	f.setOverride(func(string) string {
		once.Do(func() { close(entered); <-release })
		return ""
	})
	p := r.poller(f)
	run := start(t, p)
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })

	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never called")
	}
	run.cancel()
	releaseOnce.Do(func() { close(release) })
	run.stop()
	if got := r.srv.ids(t, "INBOX"); !slices.Equal(got, []string{"m1@example.com+seen"}) {
		t.Errorf("INBOX after stop: %v, want the handled message seen", got)
	}
	if last := r.cursor(p)["last_uid"]; last != "1" {
		t.Errorf("cursor last_uid %q after stop, want 1", last)
	}
	if v, err := r.rdb.Exists(context.Background(), p.key("lease")).Result(); err != nil || v != 0 {
		t.Errorf("lease still held after Run returned (%d, %v)", v, err)
	}
}

// TestDeferred: a deferred message stays unseen and so do the ones after
// it, which the handler does not even see; the poller retries with backoff
// and, once the handler stops deferring, settles each message once.
func TestDeferred(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	ids := []string{"m1@example.com", "m2@example.com", "m3@example.com", "m4@example.com"}
	for _, id := range ids {
		r.srv.add(t, "INBOX", mail(id))
	}
	var deferring atomic.Bool
	deferring.Store(true)
	f := &fakeHandler{}
	f.setOverride(func(id string) string {
		if id == "m2@example.com" && deferring.Load() {
			return string(identify.Deferred)
		}
		return ""
	})
	start(t, r.poller(f))

	waitFor(t, "m2 deferred three times", func() bool { n, _ := f.count("m2@example.com"); return n >= 3 })
	if got := r.srv.ids(t, "INBOX"); !slices.Equal(got, []string{"m1@example.com+seen", "m2@example.com", "m3@example.com", "m4@example.com"}) {
		t.Errorf("INBOX while m2 is deferred: %v, want only m1 seen", got)
	}
	for _, id := range ids[2:] {
		if n, _ := f.count(id); n != 0 {
			t.Errorf("%s handled %d times while m2 before it was deferred", id, n)
		}
	}
	retries := 0
	for _, e := range r.logged("warn", "session ended") {
		if s, _ := e["error"].(string); strings.Contains(s, "deferred") {
			retries++
		}
	}
	if retries < 2 {
		t.Errorf("%d sessions ended by the deferral, want one per retry", retries)
	}

	deferring.Store(false)
	waitFor(t, "all settled", func() bool {
		return slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen", "m2@example.com+seen", "m3@example.com+seen", "m4@example.com+seen"})
	})
	r.quiet()
	var settledOrder []string
	for _, c := range f.all() {
		if c.Outcome != string(identify.Deferred) {
			settledOrder = append(settledOrder, c.ID)
		}
	}
	if !slices.Equal(settledOrder, ids) {
		t.Errorf("messages settled by the handler: %v, want each of %v once", settledOrder, ids)
	}
}

// TestDeferredRedisDown: with the real handler, Redis failing while a
// message is handled writes nothing and leaves the mail unseen; once Redis
// is back every message is queued exactly once.
func TestDeferredRedisDown(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	h, cfg := realHandler(t, r.rdb, nil)
	var once sync.Once
	rec := &recorder{h: h, before: func(string) {
		once.Do(func() { r.mr.SetError("LOADING Redis is loading the dataset in memory") })
	}}
	r.srv.add(t, "INBOX", mail("m1@example.com"))
	r.srv.add(t, "INBOX", mail("m2@example.com"))
	p := r.poller(rec)
	start(t, p)

	waitFor(t, "the session the deferral ended", func() bool {
		for _, e := range r.logged("warn", "session ended") {
			if s, _ := e["error"].(string); strings.Contains(s, "deferred") {
				return true
			}
		}
		return false
	})
	if got := rec.outcomes(); len(got) != 1 || got[0] != "m1@example.com deferred/backend_unavailable" {
		t.Fatalf("handler calls while Redis is down: %v, want m1 deferred", got)
	}
	if got := r.srv.ids(t, "INBOX"); !slices.Equal(got, []string{"m1@example.com", "m2@example.com"}) {
		t.Errorf("INBOX while Redis is down: %v, want both unseen", got)
	}
	for _, k := range r.mr.Keys() {
		if strings.Contains(k, "{IT}") {
			t.Errorf("key %s written while Redis was failing", k)
		}
	}

	r.mr.SetError("")
	// The poller could not release its lease while Redis failed; it
	// expires after LeaseTTL, and miniredis only moves time when told.
	r.mr.FastForward(r.opt.LeaseTTL)
	waitFor(t, "both settled", func() bool {
		return slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen", "m2@example.com+seen"})
	})
	r.quiet()
	want := []string{"m1@example.com deferred/backend_unavailable", "m1@example.com queued/accepted", "m2@example.com queued/accepted"}
	if got := rec.outcomes(); !slices.Equal(got, want) {
		t.Errorf("handler outcomes %v, want %v", got, want)
	}
	if n := r.rdb.XLen(context.Background(), ingest.NewStore(cfg, r.rdb).StreamKey("IT")).Val(); n != 2 {
		t.Errorf("%d stream entries, want one per message", n)
	}
}

// TestPoison: a message whose handling panics MaxFailures times is moved
// to the rejected folder with an error log, and never holds up the
// messages after it.
func TestPoison(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	r.srv.add(t, "INBOX", mail("m1@example.com"))
	r.srv.add(t, "INBOX", mail("poison@example.com", "X-Want: panic"))
	r.srv.add(t, "INBOX", mail("m3@example.com"))
	f := &fakeHandler{}
	p := r.poller(f)
	start(t, p)

	waitFor(t, "poison moved aside", func() bool {
		return slices.Equal(r.srv.ids(t, "Rejected"), []string{"poison@example.com"}) &&
			slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen", "m3@example.com+seen"})
	})
	r.quiet()
	want := []string{"m1@example.com", "poison@example.com", "m3@example.com", "poison@example.com"}
	if got := f.order(); !slices.Equal(got, want) {
		t.Errorf("handler calls %v, want %v", got, want)
	}
	if n := len(r.logged("error", "panic while handling a message")); n != 2 {
		t.Errorf("%d panic logs, want 2", n)
	}
	poisoned := false
	for _, e := range r.logged("error", "message could not be handled") {
		if e["uid"] == float64(2) && e["poison"] == true && e["failures"] == float64(2) {
			poisoned = true
		}
	}
	if !poisoned {
		t.Errorf("no error log for uid 2 as poison; log:\n%s", r.logs)
	}
	if n := r.rdb.HLen(context.Background(), p.key("failures")).Val(); n != 0 {
		t.Errorf("failure counts left behind: %d", n)
	}
}

// TestSeenMail: mail that arrives already \Seen (read by a person before
// the poller got to it) is handled when it is newer than the cursor; mail
// that was read before the poller first ran is left alone.
func TestSeenMail(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	r.cfg.Processed = "Processed"
	r.srv.add(t, "INBOX", mail("old1@example.com"), goimap.FlagSeen)
	r.srv.add(t, "INBOX", mail("old2@example.com"), goimap.FlagSeen)
	r.srv.add(t, "INBOX", mail("u3@example.com"))
	f := &fakeHandler{}
	p := r.poller(f)
	start(t, p)

	waitFor(t, "u3 processed", func() bool {
		return slices.Equal(r.srv.ids(t, "Processed"), []string{"u3@example.com"})
	})
	if last := r.cursor(p)["last_uid"]; last != "3" {
		t.Errorf("cursor last_uid %s, want 3", last)
	}
	r.srv.add(t, "INBOX", mail("n4@example.com"), goimap.FlagSeen)
	waitFor(t, "n4 processed", func() bool {
		return slices.Equal(r.srv.ids(t, "Processed"), []string{"u3@example.com", "n4@example.com+seen"})
	})
	r.quiet()
	if got := f.order(); !slices.Equal(got, []string{"u3@example.com", "n4@example.com"}) {
		t.Errorf("handler saw %v, want u3 and n4 only", got)
	}
	if got := r.srv.ids(t, "INBOX"); !slices.Equal(got, []string{"old1@example.com+seen", "old2@example.com+seen"}) {
		t.Errorf("INBOX %v, want the old read mail untouched", got)
	}
}

// TestSeenMailAfterQuietStart: the same as TestSeenMail when the first
// run found nothing unseen: new mail read by a person before the poller
// got to it must still be handled.
func TestSeenMailAfterQuietStart(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	r.cfg.Processed = "Processed"
	r.srv.add(t, "INBOX", mail("old1@example.com"), goimap.FlagSeen)
	f := &fakeHandler{}
	p := r.poller(f)
	start(t, p)
	waitFor(t, "the cursor", func() bool { return r.cursor(p)["uidvalidity"] != "" })
	r.quiet()

	r.srv.add(t, "INBOX", mail("n2@example.com"), goimap.FlagSeen)
	waitFor(t, "n2, read before the poller got it, to be processed", func() bool {
		return slices.Equal(r.srv.ids(t, "Processed"), []string{"n2@example.com+seen"})
	})
	if got := f.order(); !slices.Equal(got, []string{"n2@example.com"}) {
		t.Errorf("handler saw %v, want n2 only", got)
	}
}

// TestBatches: with batch_size 3, ten messages are handled in UID order,
// at most three per FETCH.
func TestBatches(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	r.cfg.BatchSize = 3
	var ids, want []string
	for i := 1; i <= 10; i++ {
		id := fmt.Sprintf("m%02d@example.com", i)
		ids = append(ids, id)
		want = append(want, id+"+seen")
		r.srv.add(t, "INBOX", mail(id))
	}
	f := &fakeHandler{}
	start(t, r.poller(f))

	waitFor(t, "all ten settled", func() bool { return slices.Equal(r.srv.ids(t, "INBOX"), want) })
	r.quiet()
	if got := f.order(); !slices.Equal(got, ids) {
		t.Errorf("handler order %v, want %v", got, ids)
	}
	var fetched []goimap.UID
	for _, uids := range r.srv.fetches() {
		if len(uids) == 0 || len(uids) > 3 {
			t.Errorf("a FETCH of %d messages (%v), want 1 to 3", len(uids), uids)
		}
		fetched = append(fetched, uids...)
	}
	if !slices.Equal(fetched, []goimap.UID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Errorf("fetched UIDs %v, want 1 to 10 once each, in order", fetched)
	}
}

// TestUIDValidityChange: when the mailbox is recreated its UIDs mean
// nothing; the poller rescans it, and dedupe keeps the copies it already
// delivered from being queued again.
func TestUIDValidityChange(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	h, cfg := realHandler(t, r.rdb, nil)
	rec := &recorder{h: h}
	r.srv.add(t, "INBOX", mail("m1@example.com"))
	r.srv.add(t, "INBOX", mail("m2@example.com"))
	p := r.poller(rec)
	run := start(t, p)
	waitFor(t, "first delivery", func() bool {
		return slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen", "m2@example.com+seen"})
	})
	run.stop()
	old := r.cursor(p)["uidvalidity"]

	// The mailbox is rebuilt, say restored from a backup: same mail,
	// unseen again, plus a new message.
	if err := r.srv.user.Delete("INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m1@example.com", "m2@example.com", "m3@example.com"} {
		r.srv.add(t, "INBOX", mail(id))
	}
	validity := strconv.FormatUint(uint64(r.srv.uidValidity(t, "INBOX")), 10)
	if validity == old {
		t.Fatalf("UIDVALIDITY %s did not change", old)
	}
	p = r.poller(rec)
	start(t, p)
	waitFor(t, "rescan", func() bool {
		return slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen", "m2@example.com+seen", "m3@example.com+seen"})
	})
	r.quiet()

	want := []string{
		"m1@example.com queued/accepted", "m2@example.com queued/accepted",
		"m1@example.com ignored/duplicate", "m2@example.com ignored/duplicate", "m3@example.com queued/accepted",
	}
	if got := rec.outcomes(); !slices.Equal(got, want) {
		t.Errorf("outcomes %v, want %v", got, want)
	}
	if n := r.rdb.XLen(context.Background(), ingest.NewStore(cfg, r.rdb).StreamKey("IT")).Val(); n != 3 {
		t.Errorf("%d stream entries, want 3", n)
	}
	if cur := r.cursor(p); cur["uidvalidity"] != validity || cur["last_uid"] != "3" {
		t.Errorf("cursor %v, want uidvalidity %s, last_uid 3", cur, validity)
	}
	if n := len(r.logged("warn", "UIDVALIDITY changed: rescanning")); n != 1 {
		t.Errorf("%d UIDVALIDITY warnings, want 1", n)
	}
}

// TestIdle: with IDLE, new mail is handled as it arrives, not at the next
// poll (30 s away here).
func TestIdle(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	r.cfg.IDLE = true
	r.cfg.PollInterval = config.Duration(30 * time.Second)
	f := &fakeHandler{}
	start(t, r.poller(f))

	var want []string
	for _, id := range []string{"m1@example.com", "m2@example.com"} {
		// The previous IDLE ended before its message was handled, so
		// this is the poller idling again.
		waitFor(t, "the poller to idle", func() bool { return r.srv.idling.Load() > 0 })
		r.srv.add(t, "INBOX", mail(id))
		want = append(want, id+"+seen")
		waitFor(t, id+" handled while idling", func() bool { return slices.Equal(r.srv.ids(t, "INBOX"), want) })
	}
	if got := f.order(); !slices.Equal(got, []string{"m1@example.com", "m2@example.com"}) {
		t.Errorf("handler saw %v", got)
	}
}

// handlerFunc adapts a function to Handler.
type handlerFunc func(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result

func (f handlerFunc) Handle(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result {
	return f(ctx, env, raw)
}

// TestLease: two instances on one mailbox: only the lease holder polls;
// when it stops, the other takes over; each message is handled once.
func TestLease(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	f := &fakeHandler{}
	type seen struct{ instance, id, holder string }
	var (
		mu          sync.Mutex
		log         []seen
		inflight    atomic.Int32
		maxInflight atomic.Int32
	)
	var leaseKey string
	wrap := func(instance string) Handler {
		return handlerFunc(func(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result {
			n := inflight.Add(1)
			defer inflight.Add(-1)
			for m := maxInflight.Load(); n > m && !maxInflight.CompareAndSwap(m, n); m = maxInflight.Load() {
			}
			holder, _ := r.rdb.Get(ctx, leaseKey).Result()
			time.Sleep(10 * time.Millisecond) // room for the other instance to overlap, were it polling
			mu.Lock()
			log = append(log, seen{instance, messageID(raw), holder})
			mu.Unlock()
			return f.Handle(ctx, env, raw)
		})
	}
	runs := map[string]*running{}
	for _, inst := range []string{"instance-a", "instance-b"} {
		r.opt.Instance = inst
		p := r.poller(wrap(inst))
		leaseKey = p.key("lease")
		runs[inst] = start(t, p)
	}
	snapshot := func() []seen { mu.Lock(); defer mu.Unlock(); return slices.Clone(log) }

	var want []string
	add := func(ids ...string) {
		for _, id := range ids {
			r.srv.add(t, "INBOX", mail(id))
			want = append(want, id+"+seen")
		}
	}
	add("m1@example.com", "m2@example.com", "m3@example.com")
	waitFor(t, "first three", func() bool { return slices.Equal(r.srv.ids(t, "INBOX"), want) })
	first := snapshot()
	holder := first[0].instance
	for _, s := range first {
		if s.instance != holder || s.holder != holder {
			t.Errorf("%s handled by %s while the lease was %q; %s handled the first", s.id, s.instance, s.holder, holder)
		}
	}
	other := "instance-a"
	if holder == other {
		other = "instance-b"
	}

	runs[holder].stop()
	add("m4@example.com", "m5@example.com", "m6@example.com")
	waitFor(t, "the other instance to take over", func() bool { return slices.Equal(r.srv.ids(t, "INBOX"), want) })
	r.quiet()
	for _, s := range snapshot()[len(first):] {
		if s.instance != other || s.holder != other {
			t.Errorf("%s handled by %s while the lease was %q, want %s after %s stopped", s.id, s.instance, s.holder, other, holder)
		}
	}
	if got := f.order(); !slices.Equal(got, []string{"m1@example.com", "m2@example.com", "m3@example.com", "m4@example.com", "m5@example.com", "m6@example.com"}) {
		t.Errorf("handler calls %v, want each message once", got)
	}
	if n := maxInflight.Load(); n != 1 {
		t.Errorf("%d messages handled at once, want 1", n)
	}
}

// TestLeaseLost: when another instance takes the lease over, the poller
// ends its session, says why, and stays away until the lease is free.
func TestLeaseLost(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	f := &fakeHandler{}
	p := r.poller(f)
	start(t, p)
	r.srv.add(t, "INBOX", mail("m1@example.com"))
	waitFor(t, "m1", func() bool { return slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen"}) })

	if err := r.mr.Set(p.key("lease"), "intruder"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session to end", func() bool { return len(r.logged("warn", "session ended")) > 0 })
	if e := r.logged("warn", "session ended")[0]; !strings.Contains(fmt.Sprint(e["error"]), "lease lost") {
		t.Errorf("session ended with error %q, want it to say the lease was lost", e["error"])
	}
	r.srv.add(t, "INBOX", mail("m2@example.com"))
	time.Sleep(3 * r.opt.LeaseTTL) // the poller retries the lease every LeaseTTL/3
	if n, _ := f.count("m2@example.com"); n != 0 {
		t.Fatalf("m2 handled while another instance held the lease")
	}

	r.mr.Del(p.key("lease"))
	waitFor(t, "m2 after the lease came free", func() bool {
		return slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen", "m2@example.com+seen"})
	})
	if got := f.order(); !slices.Equal(got, []string{"m1@example.com", "m2@example.com"}) {
		t.Errorf("handler calls %v", got)
	}
}

// TestReconnect: when the server goes away (restart, or a connection cut
// while idling) the poller reconnects and carries on.
func TestReconnect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		idle bool
		cut  func(*memServer)
	}{
		{"server-restart", false, (*memServer).restart},
		{"connection-cut-while-idle", true, (*memServer).dropConnections},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, capsMove)
			if tc.idle {
				r.cfg.IDLE = true
				r.cfg.PollInterval = config.Duration(30 * time.Second)
			}
			f := &fakeHandler{}
			start(t, r.poller(f))
			r.srv.add(t, "INBOX", mail("m1@example.com"))
			waitFor(t, "m1", func() bool { return slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen"}) })
			if tc.idle {
				waitFor(t, "the poller to idle", func() bool { return r.srv.idling.Load() > 0 })
			}

			tc.cut(r.srv)
			r.srv.add(t, "INBOX", mail("m2@example.com"))
			waitFor(t, "m2 after reconnecting", func() bool {
				return slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen", "m2@example.com+seen"})
			})
			if got := f.order(); !slices.Equal(got, []string{"m1@example.com", "m2@example.com"}) {
				t.Errorf("handler calls %v", got)
			}
			if n := len(r.logged("info", "connected")); n < 2 {
				t.Errorf("%d connections logged, want a reconnect", n)
			}
		})
	}
}

// TestLoginFailure: a wrong password ends each session at login; the
// poller keeps retrying and touches nothing.
func TestLoginFailure(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	r.srv.add(t, "INBOX", mail("m1@example.com"))
	f := &fakeHandler{}
	p := New(r.cfg, "wrong", f, r.rdb, zerolog.New(r.logs), r.opt)
	start(t, p)
	waitFor(t, "two failed logins", func() bool {
		n := 0
		for _, e := range r.logged("warn", "session ended") {
			if strings.Contains(fmt.Sprint(e["error"]), "login as "+testUser) {
				n++
			}
		}
		return n >= 2
	})
	if n := len(f.all()); n != 0 {
		t.Errorf("handler called %d times without a login", n)
	}
	if got := r.srv.ids(t, "INBOX"); !slices.Equal(got, []string{"m1@example.com"}) {
		t.Errorf("INBOX %v, want m1 untouched", got)
	}
}

// TestOversize: a message over MaxMessageBytes is fetched only up to one
// byte over the limit, which the real handler rejects as too_large, and it
// goes to the rejected folder whole.
func TestOversize(t *testing.T) {
	t.Parallel()
	const limit = 512
	r := newRig(t, capsMove)
	r.opt.MaxMessageBytes = limit
	h, cfg := realHandler(t, r.rdb, func(c *config.Config) { c.SMTP.MaxMessageBytes = limit })
	rec := &recorder{h: h}
	big := mailFrom("Carol <carol@example.com>", "big@example.com", "Logs", strings.Repeat("2026-11-24 08:00:00 printer: paper jam\r\n", 100))
	small := mail("small@example.com")
	if len(small) >= limit {
		t.Fatalf("small message is %d bytes", len(small))
	}
	r.srv.add(t, "INBOX", big)
	r.srv.add(t, "INBOX", small)
	start(t, r.poller(rec))

	waitFor(t, "both settled", func() bool {
		return slices.Equal(r.srv.ids(t, "Rejected"), []string{"big@example.com"}) &&
			slices.Equal(r.srv.ids(t, "INBOX"), []string{"small@example.com+seen"})
	})
	r.quiet()
	calls := rec.all()
	if len(calls) != 2 {
		t.Fatalf("handler calls %v, want 2", rec.outcomes())
	}
	if c := calls[0]; !bytes.Equal(c.Raw, big[:limit+1]) || c.Outcome != "rejected/too_large" {
		t.Errorf("big: handler got %d bytes (%s), want the first %d bytes, rejected too_large", len(c.Raw), c.Outcome, limit+1)
	}
	if c := calls[1]; !bytes.Equal(c.Raw, small) || c.Outcome != "queued/accepted" {
		t.Errorf("small: handler got %d bytes (%s), want all %d, queued", len(c.Raw), c.Outcome, len(small))
	}
	if msgs, _ := r.srv.list(t, "Rejected"); len(msgs) != 1 || msgs[0].Size != int64(len(big)) {
		t.Errorf("rejected folder holds %+v, want the whole %d-byte message", msgs, len(big))
	}
	if n := r.rdb.XLen(context.Background(), ingest.NewStore(cfg, r.rdb).StreamKey("IT")).Val(); n != 1 {
		t.Errorf("%d stream entries, want 1", n)
	}
}
