package route

import (
	"fmt"
	"testing"
	"time"
)

func logEntry(i int, space string) Entry {
	return Entry{
		Time:    time.Date(2024, 5, 6, 7, 8, 9, i*1000+7, time.UTC),
		Channel: "smtp", MessageID: fmt.Sprintf("m%d@example.com", i), From: "alice@example.com",
		Space: space, Outcome: "queued", Reason: "accepted", Request: fmt.Sprintf("%s-%d", space, i),
		Detail: fmt.Sprintf("détail ✓ %d", i),
	}
}

// sameEntry compares all but the stream id.
func sameEntry(got, want Entry) bool {
	if !got.Time.Equal(want.Time) {
		return false
	}
	got.ID, want.ID, got.Time, want.Time = "", "", time.Time{}, time.Time{}
	return got == want
}

func TestLog(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, st := testCtx(t), newTestStore(b.rdb)

		if es, newest, err := st.LastLog(ctx, 10, func(Entry) bool { return true }); err != nil || len(es) != 0 || newest != "0-0" {
			t.Fatalf("LastLog of an empty log = %v, %q, %v; want none, 0-0", es, newest, err)
		}
		if es, err := st.ReadLog(ctx, "0", 10, 0); err != nil || len(es) != 0 {
			t.Fatalf("ReadLog of an empty log = %v, %v", es, err)
		}

		var want []Entry
		for i := range 10 {
			space := "IT"
			if i%3 == 0 {
				space = "BILL"
			}
			e := logEntry(i, space)
			if i == 9 {
				e = Entry{Time: e.Time, Channel: "imap", Outcome: "rejected", Reason: "no_route"} // empty fields
			}
			if err := st.Log(ctx, e); err != nil {
				t.Fatal(err)
			}
			want = append(want, e)
		}

		all, err := st.ReadLog(ctx, "0", 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(want) {
			t.Fatalf("ReadLog = %d entries, want %d", len(all), len(want))
		}
		for i := range want {
			if all[i].ID == "" || !sameEntry(all[i], want[i]) {
				t.Errorf("entry %d:\n got %+v\nwant %+v", i, all[i], want[i])
			}
		}
		// after is exclusive; count limits.
		if es, err := st.ReadLog(ctx, all[2].ID, 3, 0); err != nil || len(es) != 3 || es[0].ID != all[3].ID || es[2].ID != all[5].ID {
			t.Errorf("ReadLog(after entry 2, 3) = %v, %v; want entries 3..5", es, err)
		}
		if es, err := st.ReadLog(ctx, all[9].ID, 3, 0); err != nil || len(es) != 0 {
			t.Errorf("ReadLog(after the newest) = %v, %v; want none", es, err)
		}

		isIT := func(e Entry) bool { return e.Space == "IT" }
		es, newest, err := st.LastLog(ctx, 3, isIT)
		if err != nil {
			t.Fatal(err)
		}
		// IT entries are 1 2 4 5 7 8; the last three are 5 7 8, oldest first.
		if len(es) != 3 || es[0].ID != all[5].ID || es[1].ID != all[7].ID || es[2].ID != all[8].ID {
			t.Errorf("LastLog(3, IT) = %+v, want entries 5, 7, 8", es)
		}
		// The id to follow from is the newest entry of the log, matching or not.
		if newest != all[9].ID {
			t.Errorf("LastLog newest = %q, want %q", newest, all[9].ID)
		}
		if es, _, err := st.LastLog(ctx, 100, isIT); err != nil || len(es) != 6 || es[0].ID != all[1].ID {
			t.Errorf("LastLog(100, IT) = %d entries, %v; want all 6 IT entries oldest first", len(es), err)
		}
		if es, newest, err := st.LastLog(ctx, 5, func(Entry) bool { return false }); err != nil || len(es) != 0 || newest != all[9].ID {
			t.Errorf("LastLog with nothing matching = %v, %q, %v; want none, %s", es, newest, err, all[9].ID)
		}
	})
}

// TestLastLogZero: "mailgw log --follow -n 0" asks for no old entries, only
// new ones, so the id to follow from must still be the newest entry.
func TestLastLogZero(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, st := testCtx(t), newTestStore(b.rdb)
		for i := range 3 {
			if err := st.Log(ctx, logEntry(i, "IT")); err != nil {
				t.Fatal(err)
			}
		}
		all, err := st.ReadLog(ctx, "0", 100, 0)
		if err != nil || len(all) != 3 {
			t.Fatalf("ReadLog = %v, %v", all, err)
		}
		es, newest, err := st.LastLog(ctx, 0, func(Entry) bool { return true })
		if err != nil || len(es) != 0 {
			t.Fatalf("LastLog(0) = %v, %v; want no entries", es, err)
		}
		if newest != all[2].ID {
			t.Errorf("LastLog(0) newest = %q, want %q: following from there replays the whole log", newest, all[2].ID)
		}
	})
}

func TestLogCapped(t *testing.T) {
	const maxLen = 100
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, rdb := testCtx(t), b.rdb
		st := NewStore(rdb, Options{Prefix: testPrefix, LogMaxLen: maxLen})
		for i := range 3 * maxLen {
			if err := st.Log(ctx, logEntry(i, "IT")); err != nil {
				t.Fatal(err)
			}
		}
		// Trimming is approximate (whole stream nodes of 100 entries), so
		// the log may hold somewhat more than maxLen, never unbounded.
		n := xlen(t, rdb, st.LogKey())
		if n < maxLen || n > 2*maxLen {
			t.Errorf("log length after %d entries with LogMaxLen %d = %d, want between %d and %d", 3*maxLen, maxLen, n, maxLen, 2*maxLen)
		}
		// The newest entries are the ones kept.
		es, _, err := st.LastLog(ctx, 1, func(Entry) bool { return true })
		if err != nil || len(es) != 1 || es[0].MessageID != fmt.Sprintf("m%d@example.com", 3*maxLen-1) {
			t.Errorf("newest kept entry = %+v, %v", es, err)
		}
		if es, _, err := st.LastLog(ctx, 10*maxLen, func(Entry) bool { return true }); err != nil || int64(len(es)) != n {
			t.Errorf("LastLog(all) = %d entries, %v; want the %d in the log", len(es), err, n)
		}
	})
}

func TestReadLogBlocks(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, st := testCtx(t), newTestStore(b.rdb)
		if err := st.Log(ctx, logEntry(0, "IT")); err != nil {
			t.Fatal(err)
		}
		_, last, err := st.LastLog(ctx, 1, func(Entry) bool { return true })
		if err != nil {
			t.Fatal(err)
		}

		// A new entry written by another goroutine ends the wait.
		want := logEntry(1, "IT")
		errc := make(chan error, 1)
		go func() {
			time.Sleep(200 * time.Millisecond)
			errc <- st.Log(testCtx(t), want)
		}()
		start := time.Now()
		es, err := st.ReadLog(ctx, last, 10, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 || !sameEntry(es[0], want) {
			t.Fatalf("blocking ReadLog = %+v, want the new entry", es)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("blocking ReadLog returned after %v, want soon after the write", d)
		}

		// Nothing new: (nil, nil) after about the block time.
		const block = 300 * time.Millisecond
		start = time.Now()
		es, err = st.ReadLog(ctx, es[0].ID, 10, block)
		d := time.Since(start)
		if err != nil || len(es) != 0 {
			t.Errorf("ReadLog with nothing new = %v, %v; want no entries, no error", es, err)
		}
		if d < block-50*time.Millisecond || d > block+3*time.Second {
			t.Errorf("ReadLog with nothing new returned after %v, want about %v", d, block)
		}

		// ReadStream blocks the same way.
		go func() {
			time.Sleep(100 * time.Millisecond)
			_, err := st.Write(testCtx(t), sampleRequest("IT", "late@example.com", "alice@example.com"))
			errc <- err
		}()
		msgs, err := st.ReadStream(ctx, "IT", "0-0", 10, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 || msgs[0].Values["id"] != "IT-1" {
			t.Errorf("blocking ReadStream = %v, want IT-1", msgs)
		}
		start = time.Now()
		if msgs, err := st.ReadStream(ctx, "IT", msgs[0].ID, 10, block); err != nil || msgs != nil || time.Since(start) > block+3*time.Second {
			t.Errorf("ReadStream with nothing new = %v, %v after %v; want nil, nil", msgs, err, time.Since(start))
		}
	})
}

// TestReadCountZero: a count of 0 means no limit, as it does for XREAD
// (and for ReadLog with block > 0). XRANGE ... COUNT 0 answers a null
// array on redis-server, so passing 0 through must not become an error.
func TestReadCountZero(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, st := testCtx(t), newTestStore(b.rdb)
		for i := range 3 {
			if err := st.Log(ctx, logEntry(i, "IT")); err != nil {
				t.Fatal(err)
			}
		}
		if es, err := st.ReadLog(ctx, "0", 0, 0); err != nil || len(es) != 3 {
			t.Errorf("ReadLog(count 0) = %d entries, %v; want all 3", len(es), err)
		}
		if es, err := st.ReadLog(ctx, "0", 0, time.Second); err != nil || len(es) != 3 {
			t.Errorf("ReadLog(count 0, block) = %d entries, %v; want all 3", len(es), err)
		}
	})
}

func TestBareMessageID(t *testing.T) {
	for in, want := range map[string]string{
		"a@example.com":         "a@example.com",
		"<a@example.com>":       "a@example.com",
		" < a@example.com > ":   "a@example.com",
		"<<a@example.com>>":     "<a@example.com>",
		"<script>x@example.com": "<script>x@example.com",
		"a@example.com>":        "a@example.com>",
		"<>":                    "",
		"<":                     "<",
		"":                      "",
	} {
		if got := BareMessageID(in); got != want {
			t.Errorf("BareMessageID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLogFilter(t *testing.T) {
	e := Entry{Channel: "smtp", MessageID: "m@example.com", From: "carol@example.com", Space: "IT", Outcome: "rejected", Reason: "blocked_sender"}
	tests := []struct {
		f    LogFilter
		want bool
	}{
		{LogFilter{}, true},
		{LogFilter{Space: "it"}, true},
		{LogFilter{Space: "BILL"}, false},
		{LogFilter{Reason: "blocked_sender", Outcome: "rejected"}, true},
		{LogFilter{Reason: "blocked_sender", Outcome: "queued"}, false},
		{LogFilter{From: "carol@example.com", MessageID: "m@example.com"}, true},
		{LogFilter{From: "Carol@example.com"}, false}, // callers normalize first
		{LogFilter{MessageID: "<m@example.com>"}, false},
	}
	for _, tt := range tests {
		if got := tt.f.Match(e); got != tt.want {
			t.Errorf("%+v.Match = %v, want %v", tt.f, got, tt.want)
		}
	}
}
