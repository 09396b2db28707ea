package route

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWriteRequests(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, rdb, st := testCtx(t), b.rdb, newTestStore(b.rdb)

		r1 := sampleRequest("IT", "m1@example.com", "alice@example.com")
		w1 := mustWrite(t, st, r1)
		if w1.ID != "IT-1" || w1.Duplicate || w1.EntryID == "" {
			t.Fatalf("first Write = %+v, want IT-1, not duplicate, with an entry id", w1)
		}
		r2 := sampleRequest("IT", "m2@example.com", "bob@example.com")
		w2 := mustWrite(t, st, r2)
		if w2.ID != "IT-2" || w2.Duplicate || w2.EntryID == "" || w2.EntryID == w1.EntryID {
			t.Fatalf("second Write = %+v, want IT-2 with a new entry id", w2)
		}
		// Each space counts on its own.
		if w := mustWrite(t, st, sampleRequest("BILL", "m1@example.com", "alice@example.com")); w.ID != "BILL-1" || w.Duplicate {
			t.Fatalf("first Write to BILL = %+v, want BILL-1 (a Message-ID is deduped per space)", w)
		}

		msgs, err := st.ReadStream(ctx, "IT", "0", 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 2 || msgs[0].ID != w1.EntryID || msgs[1].ID != w2.EntryID {
			t.Fatalf("IT stream = %v, want the entries %s and %s", msgs, w1.EntryID, w2.EntryID)
		}
		for i, tc := range []struct {
			r  Request
			id string
		}{{r1, "IT-1"}, {r2, "IT-2"}} {
			want := map[string]string{
				"id": tc.id, "kind": "request", "request": tc.id, "space": "IT",
				"raw_key": rawKeyOf(testPrefix, "IT", tc.id),
			}
			for _, f := range tc.r.Fields {
				want[f.Name] = f.Value
			}
			if got := values(t, msgs[i]); !maps.Equal(got, want) {
				t.Errorf("entry %s:\n got %q\nwant %q", tc.id, got, want)
			}
			for _, name := range designFields {
				if _, ok := msgs[i].Values[name]; !ok {
					t.Errorf("entry %s lacks DESIGN §4 field %s", tc.id, name)
				}
			}

			rawKey := rawKeyOf(testPrefix, "IT", tc.id)
			if got := getOr(t, rdb, rawKey); got != string(tc.r.Raw) {
				t.Errorf("raw %s = %d bytes %q..., want the %d raw bytes unchanged", rawKey, len(got), got[:min(len(got), 40)], len(tc.r.Raw))
			}
			checkTTL(t, rdb, rawKey, testRetention)
			mk := msgKeyOf(testPrefix, "IT", tc.r.MessageID)
			if got := getOr(t, rdb, mk); got != tc.id {
				t.Errorf("Message-ID key %s = %q, want %q", mk, got, tc.id)
			}
			checkTTL(t, rdb, mk, testRetention)
		}
		if got := getOr(t, rdb, seqKeyOf(testPrefix, "IT")); got != "2" {
			t.Errorf("IT seq = %q, want 2", got)
		}

		// LastStream returns the newest entries oldest first.
		last, newest, err := st.LastStream(ctx, "IT", 1)
		if err != nil || len(last) != 1 || last[0].ID != w2.EntryID || newest != w2.EntryID {
			t.Errorf("LastStream(IT, 1) = %v, %q, %v; want [%s], %s", last, newest, err, w2.EntryID, w2.EntryID)
		}
		last, newest, err = st.LastStream(ctx, "IT", 10)
		if err != nil || len(last) != 2 || last[0].ID != w1.EntryID || newest != w2.EntryID {
			t.Errorf("LastStream(IT, 10) = %v, %q, %v; want both entries oldest first", last, newest, err)
		}
		last, newest, err = st.LastStream(ctx, "IT", 0)
		if err != nil || len(last) != 0 || newest != w2.EntryID {
			t.Errorf("LastStream(IT, 0) = %v, %q, %v; want none and %s to follow from", last, newest, err, w2.EntryID)
		}
		last, newest, err = st.LastStream(ctx, "NONE", 5)
		if err != nil || len(last) != 0 || newest != "0-0" {
			t.Errorf("LastStream of an empty space = %v, %q, %v; want none, 0-0", last, newest, err)
		}
		// ReadStream after an id is exclusive.
		after, err := st.ReadStream(ctx, "IT", w1.EntryID, 10, 0)
		if err != nil || len(after) != 1 || after[0].ID != w2.EntryID {
			t.Errorf("ReadStream(IT, after %s) = %v, %v; want only %s", w1.EntryID, after, err, w2.EntryID)
		}
	})
}

func TestWriteDuplicate(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		rdb, st := b.rdb, newTestStore(b.rdb)
		w1 := mustWrite(t, st, sampleRequest("IT", "dup@example.com", "alice@example.com"))

		// The same Message-ID again, even with other content, is a duplicate.
		again := sampleRequest("IT", "dup@example.com", "mallory@example.com")
		again.Raw = []byte("other raw")
		w, err := st.Write(testCtx(t), again)
		if err != nil {
			t.Fatal(err)
		}
		if !w.Duplicate || w.ID != w1.ID || w.EntryID != "" {
			t.Fatalf("duplicate Write = %+v, want Duplicate of %s without an entry", w, w1.ID)
		}
		if n := xlen(t, rdb, streamKeyOf(testPrefix, "IT")); n != 1 {
			t.Errorf("stream has %d entries after a duplicate, want 1", n)
		}
		if got := getOr(t, rdb, seqKeyOf(testPrefix, "IT")); got != "1" {
			t.Errorf("seq = %q after a duplicate, want 1 (no INCR)", got)
		}
		if got := getOr(t, rdb, rawKeyOf(testPrefix, "IT", "IT-1")); got == "other raw" {
			t.Error("a duplicate overwrote the raw message")
		}
		if exists(t, rdb, rawKeyOf(testPrefix, "IT", "IT-2")) {
			t.Error("a duplicate stored a raw message")
		}
		// A duplicate comment is a duplicate too.
		c := commentRequest("IT", "dup@example.com", "IT-1", "bob@example.com")
		if w, err := st.Write(testCtx(t), c); err != nil || !w.Duplicate || w.ID != "IT-1" {
			t.Errorf("comment with a routed Message-ID = %+v, %v; want Duplicate of IT-1", w, err)
		}
		if n := xlen(t, rdb, streamKeyOf(testPrefix, "IT")); n != 1 {
			t.Errorf("stream has %d entries after a duplicate comment, want 1", n)
		}
	})
}

func commentRequest(space, messageID, parent, from string) Request {
	r := sampleRequest(space, messageID, from)
	r.Kind, r.Parent = "comment", parent
	r.Participants = []string{"dave@example.net"}
	return r
}

func TestWriteComment(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, rdb, st := testCtx(t), b.rdb, newTestStore(b.rdb)
		req := mustWrite(t, st, sampleRequest("IT", "req@example.com", "alice@example.com"))

		c1 := commentRequest("IT", "c1@example.com", req.ID, "carol@example.com")
		w1 := mustWrite(t, st, c1)
		if w1.ID != "IT-1" || w1.Duplicate || w1.EntryID == "" {
			t.Fatalf("comment Write = %+v, want IT-1 with a new entry", w1)
		}
		c2 := commentRequest("IT", "c2@example.com", req.ID, "alice@example.com")
		c2.Raw = []byte("second comment\x00\xff")
		w2 := mustWrite(t, st, c2)
		if w2.ID != "IT-1" || w2.Duplicate {
			t.Fatalf("second comment Write = %+v, want IT-1", w2)
		}
		if got := getOr(t, rdb, seqKeyOf(testPrefix, "IT")); got != "1" {
			t.Errorf("seq = %q after comments, want 1 (comments take no request id)", got)
		}

		msgs, err := st.ReadStream(ctx, "IT", req.EntryID, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 2 || msgs[0].ID != w1.EntryID || msgs[1].ID != w2.EntryID {
			t.Fatalf("entries after the request = %v, want the two comments", msgs)
		}
		for i, c := range []Request{c1, c2} {
			rawKey := rawKeyOf(testPrefix, "IT", fmt.Sprintf("IT-1:%d", i+1))
			v := values(t, msgs[i])
			if v["kind"] != "comment" || v["request"] != "IT-1" || v["space"] != "IT" || v["raw_key"] != rawKey {
				t.Errorf("comment %d entry: kind %q request %q space %q raw_key %q; want comment IT-1 IT %s",
					i+1, v["kind"], v["request"], v["space"], v["raw_key"], rawKey)
			}
			if v["message_id"] != c.MessageID || v["from"] != c.Requester {
				t.Errorf("comment %d entry: message_id %q from %q; want the caller's fields", i+1, v["message_id"], v["from"])
			}
			if got := getOr(t, rdb, rawKey); got != string(c.Raw) {
				t.Errorf("raw of comment %d at %s = %q..., want the comment's raw bytes", i+1, rawKey, got[:min(len(got), 40)])
			}
			checkTTL(t, rdb, rawKey, testRetention)
			if got := getOr(t, rdb, msgKeyOf(testPrefix, "IT", c.MessageID)); got != "IT-1" {
				t.Errorf("Message-ID key of comment %d = %q, want IT-1 (so replies to it thread)", i+1, got)
			}
		}
		// The request's raw message is untouched.
		if got := getOr(t, rdb, rawKeyOf(testPrefix, "IT", "IT-1")); got != string(sampleRaw("req@example.com", 512)) {
			t.Error("a comment changed the request's raw message")
		}

		// Commenters and their Cc became participants; a reply to a comment
		// threads to the request.
		for sender, want := range map[string]bool{
			"alice@example.com": true, "cc1@example.com": true, "carol@example.com": true,
			"dave@example.net": true, "mallory@example.com": false,
		} {
			seen, err := st.Lookup(ctx, "IT", "reply-"+sender, []string{c1.MessageID}, "Re: printer", sender)
			if err != nil {
				t.Fatal(err)
			}
			if seen.ThreadRequest != "IT-1" || seen.Participant != want || seen.Duplicate {
				t.Errorf("Lookup of a reply to the comment by %s = %+v, want thread IT-1, Participant %v", sender, seen, want)
			}
		}
	})
}

func TestWriteRelease(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, rdb, st := testCtx(t), b.rdb, newTestStore(b.rdb)
		r := sampleRequest("IT", "held@example.com", "new@example.org")
		if dup, err := st.Hold(ctx, Held{Request: r, Sender: "new@example.org"}); err != nil || dup {
			t.Fatalf("Hold = %v, %v; want stored", dup, err)
		}
		// A redelivery while held is a duplicate naming no request.
		if w, err := st.Write(ctx, r); err != nil || !w.Duplicate || w.ID != "" || w.EntryID != "" {
			t.Fatalf("Write of a held message without Release = %+v, %v; want Duplicate with empty ID", w, err)
		}
		if n := xlen(t, rdb, streamKeyOf(testPrefix, "IT")); n != 0 {
			t.Fatalf("stream has %d entries before the release", n)
		}

		r.Release = true
		w := mustWrite(t, st, r)
		if w.ID != "IT-1" || w.Duplicate || w.EntryID == "" {
			t.Fatalf("release Write = %+v, want IT-1 queued", w)
		}
		if got := getOr(t, rdb, msgKeyOf(testPrefix, "IT", r.MessageID)); got != "IT-1" {
			t.Errorf("Message-ID key after release = %q, want IT-1", got)
		}
		// Confirming twice (two clicks, two instances) queues it once.
		w2, err := st.Write(ctx, r)
		if err != nil || !w2.Duplicate || w2.ID != "IT-1" {
			t.Fatalf("second release Write = %+v, %v; want Duplicate of IT-1", w2, err)
		}
		if n := xlen(t, rdb, streamKeyOf(testPrefix, "IT")); n != 1 {
			t.Errorf("stream has %d entries after two releases, want 1", n)
		}
		if got := getOr(t, rdb, seqKeyOf(testPrefix, "IT")); got != "1" {
			t.Errorf("seq = %q after two releases, want 1", got)
		}
		if seen, err := st.Lookup(ctx, "IT", r.MessageID, nil, "", ""); err != nil || !seen.Duplicate || seen.DuplicateOf != "IT-1" {
			t.Errorf("Lookup after release = %+v, %v; want Duplicate of IT-1", seen, err)
		}
	})
}

// TestWriteOutage: a Write while Redis is down fails, and once Redis is back
// nothing of it is there: no id was used up, no Message-ID key would make a
// redelivery look like a duplicate.
func TestWriteOutage(t *testing.T) {
	eachBackendWith(t, true, func(t *testing.T, b *backend) {
		rdb := b.rdb
		st := NewStore(rdb, Options{Prefix: testPrefix, Retention: testRetention, Timeout: time.Second})
		if w := mustWrite(t, st, sampleRequest("IT", "before@example.com", "alice@example.com")); w.ID != "IT-1" {
			t.Fatalf("Write before the outage = %+v", w)
		}

		b.stop(t)
		r := sampleRequest("IT", "during@example.com", "bob@example.com")
		start := time.Now()
		w, err := st.Write(testCtx(t), r)
		if err == nil {
			t.Fatalf("Write with Redis down = %+v, want an error", w)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("Write with Redis down took %v", d)
		}
		if _, err := st.Lookup(testCtx(t), "IT", "x", nil, "", ""); err == nil {
			t.Error("Lookup with Redis down: no error")
		}
		if _, err := st.Hold(testCtx(t), Held{Request: r, Sender: "bob@example.com"}); err == nil {
			t.Error("Hold with Redis down: no error")
		}
		if err := st.Log(testCtx(t), Entry{Time: time.Now()}); err == nil {
			t.Error("Log with Redis down: no error")
		}
		b.start(t)

		if got := getOr(t, rdb, seqKeyOf(testPrefix, "IT")); got != "1" {
			t.Errorf("seq = %q after a failed write, want 1", got)
		}
		if n := xlen(t, rdb, streamKeyOf(testPrefix, "IT")); n != 1 {
			t.Errorf("stream has %d entries after a failed write, want 1", n)
		}
		if exists(t, rdb, msgKeyOf(testPrefix, "IT", r.MessageID)) {
			t.Error("the failed write left a Message-ID key")
		}
		if exists(t, rdb, rawKeyOf(testPrefix, "IT", "IT-2")) {
			t.Error("the failed write left a raw message")
		}
		// The redelivery is queued, with the next id (on the real server
		// the script cache is empty now: EVALSHA falls back to EVAL).
		if w := mustWrite(t, st, r); w.ID != "IT-2" || w.Duplicate {
			t.Errorf("redelivery after the outage = %+v, want IT-2 queued", w)
		}
		if n := xlen(t, rdb, streamKeyOf(testPrefix, "IT")); n != 2 {
			t.Errorf("stream has %d entries, want 2", n)
		}
	})
}

// TestWriteManyParticipantsIsAtomic: a message copied to thousands of
// addresses is legitimate mail (a large Cc list). The write must either
// queue it or leave nothing behind; a half-done write used up an id and set
// the Message-ID key, so the redelivery after the 451 is dropped as a
// duplicate of a request that was never queued. Only the first
// maxParticipants addresses are kept as participants.
func TestWriteManyParticipantsIsAtomic(t *testing.T) {
	const n = 10000
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, rdb, st := testCtx(t), b.rdb, newTestStore(b.rdb)
		r := sampleRequest("IT", "big-cc@example.com", "alice@example.com")
		r.Participants = make([]string, n)
		for i := range r.Participants {
			r.Participants[i] = fmt.Sprintf("p%05d@example.com", i)
		}
		w, err := st.Write(ctx, r)
		if err == nil {
			if w.ID != "IT-1" || w.Duplicate {
				t.Fatalf("Write = %+v, want IT-1", w)
			}
			got, err := rdb.SCard(ctx, testPrefix+"{IT}:req:IT-1:participants").Result()
			if err != nil || got != maxParticipants {
				t.Errorf("participants = %d, %v; want %d", got, err, maxParticipants)
			}
			return
		}
		t.Errorf("Write with %d participants: %v", n, err)

		seq := getOr(t, rdb, seqKeyOf(testPrefix, "IT"))
		entries := xlen(t, rdb, streamKeyOf(testPrefix, "IT"))
		if seq != "" && entries == 0 {
			t.Errorf("half-written: seq is %s but the stream has no entry", seq)
		}
		if exists(t, rdb, rawKeyOf(testPrefix, "IT", "IT-1")) && entries == 0 {
			t.Error("half-written: raw message stored without a stream entry")
		}
		seen, err := st.Lookup(ctx, "IT", r.MessageID, nil, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if seen.Duplicate {
			t.Errorf("after the failed write the redelivery looks like a duplicate of %q, which was never queued: the message would be lost", seen.DuplicateOf)
		}
	})
}

func TestWriteConcurrentSameMessageID(t *testing.T) {
	const n = 50
	eachBackend(t, func(t *testing.T, b *backend) {
		rdb, st := b.rdb, newTestStore(b.rdb)
		r := sampleRequest("IT", "race@example.com", "alice@example.com")
		res := make([]Written, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				res[i], errs[i] = st.Write(testCtx(t), r)
			})
		}
		close(start)
		wg.Wait()
		fresh := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("writer %d: %v", i, errs[i])
			}
			if res[i].ID != "IT-1" {
				t.Errorf("writer %d got %+v, want id IT-1", i, res[i])
			}
			if !res[i].Duplicate {
				fresh++
			}
		}
		if fresh != 1 {
			t.Errorf("%d writers were told they queued the message, want exactly 1", fresh)
		}
		if got := xlen(t, rdb, streamKeyOf(testPrefix, "IT")); got != 1 {
			t.Errorf("stream has %d entries, want 1", got)
		}
		if got := getOr(t, rdb, seqKeyOf(testPrefix, "IT")); got != "1" {
			t.Errorf("seq = %q, want 1", got)
		}
	})
}

func TestWriteConcurrentDistinct(t *testing.T) {
	const n = 200
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, rdb, st := testCtx(t), b.rdb, newTestStore(b.rdb)
		got := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				r := sampleRequest("IT", fmt.Sprintf("distinct-%d@example.com", i), "alice@example.com")
				var w Written
				w, errs[i] = st.Write(testCtx(t), r)
				if w.Duplicate {
					errs[i] = fmt.Errorf("reported as duplicate of %s", w.ID)
				}
				got[i] = w.ID
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("writer %d: %v", i, err)
			}
		}
		sorted := slices.Clone(got)
		sort.Slice(sorted, func(i, j int) bool {
			var a, b int
			fmt.Sscanf(sorted[i], "IT-%d", &a)
			fmt.Sscanf(sorted[j], "IT-%d", &b)
			return a < b
		})
		if want := ids("IT", 1, n); !slices.Equal(sorted, want) {
			t.Errorf("ids = %v, want IT-1..IT-%d each once", sorted, n)
		}
		if l := xlen(t, rdb, streamKeyOf(testPrefix, "IT")); l != n {
			t.Errorf("stream has %d entries, want %d", l, n)
		}
		// Every entry names the id its writer got, and the raw it points to.
		msgs, err := st.ReadStream(ctx, "IT", "0", 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			v := values(t, m)
			var i int
			if _, err := fmt.Sscanf(v["message_id"], "distinct-%d@example.com", &i); err != nil || got[i] != v["id"] {
				t.Errorf("entry %s: id %q message_id %q; the writer got %q", m.ID, v["id"], v["message_id"], got[i])
			}
			if v["raw_key"] != rawKeyOf(testPrefix, "IT", v["id"]) {
				t.Errorf("entry %s: raw_key %q for id %q", m.ID, v["raw_key"], v["id"])
			}
		}
	})
}

// A script that finds no staged raw message (the staging SET lost, or the
// key evicted) writes nothing and fails, so the message is deferred and
// sent again rather than queued without its raw copy.
func TestWriteWithoutStagedRawWritesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		st := NewStore(b.rdb, Options{Prefix: testPrefix})
		ctx := testCtx(t)
		w := st.prepareWrite(sampleRequest("IT", "lost@example.com", "alice@example.com"))
		err := writeScript.Run(ctx, b.rdb, w.keys, w.args...).Err()
		if err == nil || !strings.Contains(err.Error(), "STAGED") {
			t.Fatalf("script without a staged message: %v, want the STAGED error", err)
		}
		keys, err := b.rdb.Keys(ctx, testPrefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 0 {
			t.Fatalf("keys after a failed write: %v", keys)
		}
	})
}

// Batched writes go through EVALSHA only; after Redis lost its scripts (a
// restart) the write is sent once more with the script itself, reusing
// the staged raw message rather than leaving a copy of it behind.
func TestWriteBatchedAfterScriptsLost(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx := testCtx(t)
		st := newTestStore(b.rdb)
		bctx, stop := context.WithCancel(ctx)
		defer stop()
		batcher := NewBatcher(bctx, b.rdb, 1, 5*time.Second)
		if err := st.LoadScripts(ctx); err != nil {
			t.Fatal(err)
		}
		for i, flush := range []bool{false, true} {
			if flush {
				if err := b.rdb.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			w, err := st.WriteBatched(ctx, batcher, sampleRequest("IT", fmt.Sprintf("batched-%d@example.com", i), "alice@example.com"))
			if err != nil || w.Duplicate || w.ID != fmt.Sprintf("IT-%d", i+1) {
				t.Fatalf("batched write %d (scripts flushed: %v): %+v, %v", i, flush, w, err)
			}
		}
		staged, err := b.rdb.Keys(ctx, testPrefix+"{IT}:stage:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(staged) != 0 {
			t.Errorf("staged keys left behind: %v", staged)
		}
		if n := b.rdb.XLen(ctx, st.StreamKey("IT")).Val(); n != 2 {
			t.Errorf("%d stream entries, want 2", n)
		}
	})
}
