package imap

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
)

// gate is a handler that holds each message until the test lets it go,
// and records which messages had returned when each one started, so that
// the order can be checked afterwards without relying on timing.
type gate struct {
	mu       sync.Mutex
	open     map[string]chan struct{}
	calls    map[string]int
	returned map[string]bool
	atEntry  map[string][]string // the messages returned when it first started
	answer   func(id string) string
}

func newGate() *gate {
	return &gate{open: map[string]chan struct{}{}, calls: map[string]int{}, returned: map[string]bool{}, atEntry: map[string][]string{}}
}

// startGated runs p, whose handler is g; g lets everything go before the
// poller is stopped.
func startGated(t *testing.T, p *Poller, g *gate) {
	start(t, p)
	t.Cleanup(g.releaseAll)
}

func (g *gate) ch(id string) chan struct{} {
	c, ok := g.open[id]
	if !ok {
		c = make(chan struct{})
		g.open[id] = c
	}
	return c
}

func (g *gate) Handle(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result {
	id := messageID(raw)
	g.mu.Lock()
	g.calls[id]++
	if _, ok := g.atEntry[id]; !ok {
		var done []string
		for r := range g.returned {
			done = append(done, r)
		}
		g.atEntry[id] = done
	}
	c := g.ch(id)
	g.mu.Unlock()
	<-c
	g.mu.Lock()
	defer g.mu.Unlock()
	g.returned[id] = true
	o := string(identify.Queued)
	if g.answer != nil {
		if a := g.answer(id); a != "" {
			o = a
		}
	}
	return ingest.Result{MessageID: id, Decisions: []ingest.SpaceDecision{{
		Space: "IT", Recipient: "it@example.com", Decision: identify.Decision{Outcome: identify.Outcome(o)},
	}}}
}

func (g *gate) setAnswer(fn func(id string) string) {
	g.mu.Lock()
	g.answer = fn
	g.mu.Unlock()
}

// release lets the messages go (and any later call for them).
func (g *gate) release(ids ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		c := g.ch(id)
		select {
		case <-c:
		default:
			close(c)
		}
	}
}

func (g *gate) releaseAll() {
	g.mu.Lock()
	ids := make([]string, 0, len(g.open))
	for id := range g.open {
		ids = append(ids, id)
	}
	g.mu.Unlock()
	g.release(ids...)
}

// inside lists the messages in the handler now, sorted.
func (g *gate) inside() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for id, n := range g.calls {
		if n > 0 && !g.returned[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// waitInside waits until at least ids are in the handler at once.
func (g *gate) waitInside(t *testing.T, ids ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%v in the handler at once", ids), func() bool {
		in := g.inside()
		for _, id := range ids {
			if !slices.Contains(in, id) {
				return false
			}
		}
		return true
	})
}

func (g *gate) count(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[id]
}

// returnedBefore says whether x had returned when y first started.
func (g *gate) returnedBefore(x, y string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Contains(g.atEntry[y], x)
}

// rawMail is a message from from (no From field when from is ""), with
// extra header fields.
func rawMail(from, id string, extra ...string) []byte {
	raw := mailFrom(from, id, "About "+id, "Hello.\r\n", extra...)
	if from == "" {
		raw = []byte(strings.Replace(string(raw), "From: \r\n", "", 1))
	}
	return raw
}

// TestOrder: a batch's messages are handled concurrently, except that one
// sender's messages go in UID order, a reply waits for every message
// before it, and a message whose sender cannot be told goes alone. The
// handler holds every message until the test lets it go: that several
// are inside at once shows concurrency, and what had returned when each
// started shows the order.
func TestOrder(t *testing.T) {
	t.Parallel()
	type msg struct {
		id, from string
		extra    []string
	}
	type step struct {
		inside  []string // wait until these are in the handler at once
		release []string // then let these go
	}
	for _, tc := range []struct {
		name   string
		msgs   []msg
		steps  []step
		before [][2]string // x returned before y started
	}{
		{
			name: "different senders at once",
			msgs: []msg{{"a1", "Alice <alice@example.com>", nil}, {"b1", "bob@example.com", nil}, {"c1", "carol@example.com", nil}, {"d1", "dave@example.com", nil}},
			steps: []step{
				{inside: []string{"a1", "b1", "c1", "d1"}, release: []string{"a1", "b1", "c1", "d1"}},
			},
		},
		{
			name: "one sender in UID order",
			msgs: []msg{
				{"a1", "Alice <alice@example.com>", nil},
				{"a2", "ALICE@Example.COM", nil},
				{"b1", "bob@example.com", nil},
				{"a3", "alice@example.com (Alice at work)", nil},
				{"c1", "carol@example.com", nil},
			},
			steps: []step{
				// c1 running shows a2 and a3 were read and held back.
				{inside: []string{"a1", "b1", "c1"}, release: []string{"a1", "b1", "c1"}},
				{inside: []string{"a2"}, release: []string{"a2"}},
				{inside: []string{"a3"}, release: []string{"a3"}},
			},
			before: [][2]string{{"a1", "a2"}, {"a2", "a3"}},
		},
		{
			name: "a reply waits for every earlier message",
			msgs: []msg{
				{"a1", "alice@example.com", nil},
				{"b1", "bob@example.com", nil},
				{"r1", "carol@example.com", []string{"In-Reply-To: <a1@example.com>"}},
				{"d1", "dave@example.com", nil},
			},
			steps: []step{
				// d1 running shows later mail does not wait for the reply.
				{inside: []string{"a1", "b1", "d1"}, release: []string{"a1"}},
				{release: []string{"b1"}},
				{inside: []string{"r1"}, release: []string{"r1", "d1"}},
			},
			before: [][2]string{{"a1", "r1"}, {"b1", "r1"}},
		},
		{
			name: "References makes a reply too",
			msgs: []msg{
				{"a1", "alice@example.com", nil},
				{"r1", "carol@example.com", []string{"References: <x@example.com>\r\n <a1@example.com>"}},
				{"b1", "bob@example.com", nil},
			},
			steps: []step{
				{inside: []string{"a1", "b1"}, release: []string{"a1", "b1"}},
				{inside: []string{"r1"}, release: []string{"r1"}},
			},
			before: [][2]string{{"a1", "r1"}},
		},
		{
			name: "no From: alone",
			msgs: []msg{{"a1", "alice@example.com", nil}, {"x1", "", nil}, {"b1", "bob@example.com", nil}},
			steps: []step{
				{inside: []string{"a1"}, release: []string{"a1"}},
				{inside: []string{"x1"}, release: []string{"x1"}},
				{inside: []string{"b1"}, release: []string{"b1"}},
			},
			before: [][2]string{{"a1", "x1"}, {"x1", "b1"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, capsMove)
			var ids, want []string
			for _, m := range tc.msgs {
				id := m.id + "@example.com"
				ids = append(ids, id)
				want = append(want, id+"+seen")
				r.srv.add(t, "INBOX", rawMail(m.from, id, m.extra...))
			}
			full := func(short []string) []string {
				var out []string
				for _, s := range short {
					out = append(out, s+"@example.com")
				}
				return out
			}
			g := newGate()
			startGated(t, r.poller(g), g)
			for _, s := range tc.steps {
				g.waitInside(t, full(s.inside)...)
				g.release(full(s.release)...)
			}
			waitFor(t, "every message settled", func() bool { return slices.Equal(r.srv.ids(t, "INBOX"), want) })
			for _, b := range tc.before {
				if x, y := b[0]+"@example.com", b[1]+"@example.com"; !g.returnedBefore(x, y) {
					t.Errorf("%s started before %s had returned", y, x)
				}
			}
			for _, id := range ids {
				if n := g.count(id); n != 1 {
					t.Errorf("%s handled %d times, want once", id, n)
				}
			}
		})
	}
}

// TestDeferredInFlight: when a message is deferred while others are being
// handled, those finish and are settled, nothing new starts (the
// deferred sender's next message stays untouched), and the cursor stays
// below the deferred message.
func TestDeferredInFlight(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	r.cfg.Processed = "Processed"
	for _, m := range []struct{ id, from string }{
		{"x1@example.com", "xavier@example.com"},
		{"a1@example.com", "alice@example.com"},
		{"b1@example.com", "bob@example.com"},
		{"a2@example.com", "alice@example.com"},
		{"c1@example.com", "carol@example.com"},
	} {
		r.srv.add(t, "INBOX", rawMail(m.from, m.id))
	}
	p := r.poller(nil)
	// The poller starts from the beginning of the mailbox, not at its end.
	if err := r.rdb.HSet(context.Background(), p.key("cursor"), "uidvalidity", r.srv.uidValidity(t, "INBOX"), "last_uid", 0).Err(); err != nil {
		t.Fatal(err)
	}
	g := newGate()
	var deferring atomic.Bool
	deferring.Store(true)
	g.setAnswer(func(id string) string {
		if id == "a1@example.com" && deferring.Load() {
			return string(identify.Deferred)
		}
		return ""
	})
	startGated(t, r.poller(g), g)

	// c1 in the handler shows a2 was read, waiting for a1.
	g.waitInside(t, "x1@example.com", "a1@example.com", "b1@example.com", "c1@example.com")
	g.release("a1@example.com")
	waitFor(t, "a1 deferred", func() bool {
		return slices.Equal(g.inside(), []string{"b1@example.com", "c1@example.com", "x1@example.com"})
	})
	g.release("x1@example.com", "b1@example.com", "c1@example.com")
	waitFor(t, "the session the deferral ended", func() bool {
		for _, e := range r.logged("warn", "session ended") {
			if s, _ := e["error"].(string); strings.Contains(s, "deferred") {
				return true
			}
		}
		return false
	})
	waitFor(t, "the messages in flight settled", func() bool {
		return slices.Equal(r.srv.ids(t, "Processed"), []string{"x1@example.com", "b1@example.com", "c1@example.com"})
	})
	if got := r.srv.ids(t, "INBOX"); !slices.Equal(got, []string{"a1@example.com", "a2@example.com"}) {
		t.Errorf("INBOX %v, want a1 and a2, unseen", got)
	}
	if n := g.count("a2@example.com"); n != 0 {
		t.Errorf("a2 handled %d times while a1 before it was deferred", n)
	}
	// Settled only once every message was done: no cursor passed a1.
	waitFor(t, "the cursor after x1", func() bool { return r.cursor(p)["last_uid"] == "1" })

	deferring.Store(false)
	g.release("a2@example.com")
	waitFor(t, "all processed", func() bool { return len(r.srv.ids(t, "Processed")) == 5 })
	r.quiet()
	if got := r.srv.ids(t, "INBOX"); len(got) != 0 {
		t.Errorf("INBOX %v, want empty", got)
	}
	// The last drain found a1 and a2 only: c1 had gone to Processed.
	if last := r.cursor(p)["last_uid"]; last != "4" {
		t.Errorf("cursor last_uid %s, want 4", last)
	}
	for _, id := range []string{"x1@example.com", "b1@example.com", "a2@example.com", "c1@example.com"} {
		if n := g.count(id); n != 1 {
			t.Errorf("%s handled %d times, want once", id, n)
		}
	}
}

// TestSearchOnce: the poller searches the mailbox once and works through
// what it found in batches, rather than searching again for every batch;
// it searches again only when the list is used up and was longer than a
// batch.
func TestSearchOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		messages, batch int
		searches        int64
		fetches         [][]goimap.UID
	}{
		{10, 3, 2, [][]goimap.UID{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10}}},
		{3, 3, 1, [][]goimap.UID{{1, 2, 3}}},
		{4, 50, 1, [][]goimap.UID{{1, 2, 3, 4}}},
	} {
		t.Run(fmt.Sprintf("%d-by-%d", tc.messages, tc.batch), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, capsMove)
			r.cfg.BatchSize = tc.batch
			r.cfg.Processed = "Processed"
			r.cfg.IDLE = true
			r.cfg.PollInterval = config.Duration(time.Minute)
			var ids []string
			for i := 1; i <= tc.messages; i++ {
				id := fmt.Sprintf("m%02d@example.com", i)
				ids = append(ids, id)
				r.srv.add(t, "INBOX", mail(id))
			}
			f := &fakeHandler{}
			start(t, r.poller(f))
			waitFor(t, "all processed and the poller idling", func() bool {
				return slices.Equal(r.srv.ids(t, "Processed"), ids) && r.srv.idling.Load() > 0
			})
			if n := r.srv.mailSearch.Load(); n != tc.searches {
				t.Errorf("%d searches for mail, want %d", n, tc.searches)
			}
			if got := r.srv.fetches(); !slices.EqualFunc(got, tc.fetches, slices.Equal) {
				t.Errorf("FETCHes of %v, want %v", got, tc.fetches)
			}
			if got := f.order(); !slices.Equal(got, ids) {
				t.Errorf("handler order %v, want %v", got, ids)
			}
		})
	}
}

// TestMoveOverlapsNextBatch: the next batch is fetched and handled while
// the server is still moving the last one, and the cursor passes a batch
// only once its MOVE was answered.
func TestMoveOverlapsNextBatch(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	r.cfg.BatchSize = 2
	r.cfg.Processed = "Processed"
	ids := []string{"m1@example.com", "m2@example.com", "m3@example.com", "m4@example.com"}
	for _, id := range ids {
		r.srv.add(t, "INBOX", mail(id))
	}
	p := r.poller(nil)
	if err := r.rdb.HSet(context.Background(), p.key("cursor"), "uidvalidity", r.srv.uidValidity(t, "INBOX"), "last_uid", 0).Err(); err != nil {
		t.Fatal(err)
	}
	moving, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	hook := func() {
		once.Do(func() { close(moving); <-release })
	}
	r.srv.moveHook.Store(&hook)
	f := &fakeHandler{}
	start(t, r.poller(f))
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })

	select {
	case <-moving:
	case <-time.After(10 * time.Second):
		t.Fatal("no MOVE")
	}
	waitFor(t, "the second batch handled while the first is being moved", func() bool { return len(f.all()) == 4 })
	if last := r.cursor(p)["last_uid"]; last != "0" {
		t.Errorf("cursor last_uid %s while the first MOVE is unanswered, want 0", last)
	}
	releaseOnce.Do(func() { close(release) })
	waitFor(t, "all processed", func() bool { return slices.Equal(r.srv.ids(t, "Processed"), ids) })
	waitFor(t, "the cursor at the end", func() bool { return r.cursor(p)["last_uid"] == "4" })
	if got := f.order(); !slices.Equal(got, ids) {
		t.Errorf("handler order %v, want %v", got, ids)
	}
}

// TestFinishMoves: mail a crashed session flagged \Seen with a keyword but
// did not move (on a server without MOVE) is moved to the folder the
// keyword names when the next session starts, without being handled
// again; each folder's leftovers are found even when the other has none.
func TestFinishMoves(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                string
		caps                goimap.CapSet
		processed, rejected []string // left flagged for each folder
	}{
		{"rejected-only-move", capsMove, nil, []string{"r1@example.com"}},
		{"both-copy-fallback", capsRev1, []string{"p1@example.com", "p2@example.com"}, []string{"r1@example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, tc.caps)
			r.cfg.Processed = "Processed"
			for _, id := range tc.processed {
				r.srv.add(t, "INBOX", mail(id), goimap.FlagSeen, keywordProcessed)
			}
			for _, id := range tc.rejected {
				r.srv.add(t, "INBOX", mail(id), goimap.FlagSeen, keywordRejected)
			}
			r.srv.add(t, "INBOX", mail("new@example.com"))
			f := &fakeHandler{}
			start(t, r.poller(f))
			var wantP, wantR []string
			for _, id := range tc.processed {
				wantP = append(wantP, id+"+seen")
			}
			for _, id := range tc.rejected {
				wantR = append(wantR, id+"+seen")
			}
			if tc.caps.Has(goimap.CapMove) {
				wantP = append(wantP, "new@example.com")
			} else {
				wantP = append(wantP, "new@example.com+seen")
			}
			waitFor(t, "the leftovers moved", func() bool {
				return slices.Equal(r.srv.ids(t, "Processed"), wantP) && slices.Equal(r.srv.ids(t, "Rejected"), wantR)
			})
			r.quiet()
			if got := f.order(); !slices.Equal(got, []string{"new@example.com"}) {
				t.Errorf("handler saw %v, want only the new message", got)
			}
			if n := len(r.logged("warn", "finishing moves an earlier session left undone")); n == 0 {
				t.Errorf("no warning about the moves finished")
			}
		})
	}
}

// TestOrderKey: the header pre-scan finds the sender's address however
// From is written, and whether the message is a reply.
func TestOrderKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		header string
		from   string
		reply  bool
	}{
		{"display name", "From: Carol <Carol@Example.com>\r\n", "carol@example.com", false},
		{"bare", "from: carol@example.com\r\n", "carol@example.com", false},
		{"comment", "From: carol@example.com (Carol)\r\n", "carol@example.com", false},
		{"folded", "From: \"Carol, IT\"\r\n <carol@example.com>\r\n", "carol@example.com", false},
		{"LF only", "From: carol@example.com\nIn-Reply-To: <a@example.com>\n", "carol@example.com", true},
		{"unparsable", "From: =?x-unknown?q?Carol?= <carol@example.com\r\n", "=?x-unknown?q?carol?= <carol@example.com", false},
		{"none", "Subject: hi\r\n", "", false},
		{"two", "From: a@example.com\r\nFrom: b@example.com\r\n", "", false},
		{"in-reply-to", "From: c@example.com\r\nIn-Reply-To: <x@example.com>\r\n", "c@example.com", true},
		{"references folded", "From: c@example.com\r\nReferences:\r\n <x@example.com>\r\n", "c@example.com", true},
		{"empty references", "From: c@example.com\r\nReferences: \r\n", "c@example.com", false},
		{"in the body", "From: c@example.com\r\n\r\nIn-Reply-To: <x@example.com>\r\nFrom: d@example.com\r\n", "c@example.com", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, reply := orderKey([]byte(tc.header + "\r\nbody\r\n"))
			if from != tc.from || reply != tc.reply {
				t.Errorf("orderKey = %q, %v; want %q, %v", from, reply, tc.from, tc.reply)
			}
		})
	}
}

// TestWindow: a message may enter while fewer than maxN are held and
// they hold fewer than maxBytes; the first always may, however large.
func TestWindow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n     int
		bytes int64
		room  bool
	}{
		{0, 0, true},
		{1, 99, true},
		{1, 100, false},
		{1, 5000, false},
		{3, 10, true},
		{4, 0, false},
	} {
		w := newWindow(4, 100)
		w.n, w.bytes = tc.n, tc.bytes
		if got := w.room(); got != tc.room {
			t.Errorf("%d messages, %d bytes: room %v, want %v", tc.n, tc.bytes, got, tc.room)
		}
	}

	w := newWindow(4, 100)
	w.enter()
	w.grow(150)
	entered := make(chan struct{})
	go func() {
		w.enter()
		close(entered)
	}()
	w.leave(150)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("enter still waiting after the window emptied")
	}
}
