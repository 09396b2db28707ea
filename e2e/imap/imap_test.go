package imap_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"mailgw/internal/dovecottest"
	"mailgw/internal/redistest"
)

// TestDrainMixedFixtures fills INBOX with 500 messages cycling through
// the fixture corpus (requests, rejections, auto-replies, bounces, loops,
// charsets, broken MIME, oversized mail, ...), each with a Message-ID of
// its own, and lets mailgw drain it. Every message must end up in
// Processed or Rejected, in the right one for its decision; the stream
// must hold exactly the messages the decision log says were queued, each
// once.
func TestDrainMixedFixtures(t *testing.T) {
	t.Parallel()
	const total = 500
	rs := redistest.Real(t)
	rdb := rs.Client(t)
	dc := dovecottest.Start(t)
	raws, ids := fixtureMessages(t, total)
	uids := dc.AppendAll(t, "INBOX", raws)

	g := startGateway(t, "mailgw", gwOptions{RedisURL: rs.URL, IMAP: dc})
	took := waitInboxEmpty(t, dc, 120*time.Second)
	t.Logf("%d messages drained in %v (%.0f msg/s)", total, took.Round(time.Millisecond), total/took.Seconds())

	// None lost: each message in exactly one of the two folders.
	folder := map[string]string{}
	for _, name := range []string{"Processed", "Rejected"} {
		for _, m := range dc.Messages(t, name) {
			id := messageID(m.Raw)
			if prev, dup := folder[id]; dup {
				t.Errorf("message %q is in %s and in %s", id, prev, name)
			}
			folder[id] = name
		}
	}
	if len(folder) != total {
		t.Errorf("Processed and Rejected hold %d distinct messages, want %d", len(folder), total)
	}
	for _, id := range ids {
		if folder[id] == "" {
			t.Errorf("message %q is in neither Processed nor Rejected", id)
		}
	}

	// The decision log: one imap decision per message.
	waitLog(t, rdb, total)
	var queued []string
	outcomes := map[string][]string{} // message id -> outcomes
	reasons := map[string]int{}
	for _, e := range decisionLog(t, g.Config) {
		if e.Channel != "imap" {
			continue
		}
		outcomes[e.MessageID] = append(outcomes[e.MessageID], e.Outcome)
		reasons[e.Outcome+"/"+e.Reason]++
		if e.Outcome == "queued" {
			if e.Space != "IT" {
				t.Errorf("message %q queued in space %q, want IT", e.MessageID, e.Space)
			}
			queued = append(queued, e.MessageID)
		}
	}
	t.Logf("imap decisions: %v", reasons)
	n := 0
	for _, o := range outcomes {
		n += len(o)
	}
	if n != total {
		t.Errorf("%d imap decisions in the log for %d messages", n, total)
	}
	if reasons["deferred/backend_unavailable"] > 0 || reasons["deferred/rate_limited"] > 0 {
		t.Errorf("deferrals with Redis up and rate limits off: %v", reasons)
	}

	// Folder by decision: rejected mail in Rejected, the rest in Processed.
	for id, o := range outcomes {
		want := "Processed"
		if !slices.ContainsFunc(o, func(s string) bool { return s != "rejected" }) {
			want = "Rejected"
		}
		if got := folder[id]; got != want {
			t.Errorf("message %q decided %v is in %q, want %s", id, o, got, want)
		}
	}

	// The stream holds exactly the queued messages, each once.
	stream := streamIDs(t, rdb)
	if len(stream) != len(queued) {
		t.Errorf("stream has %d entries, the decision log %d queued decisions", len(stream), len(queued))
	}
	checkExactlyOnce(t, stream, queued)

	// The cursor ends at the last UID.
	cur, err := rdb.HGetAll(rctx(t), cursorKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	inbox := dc.Status(t, "INBOX")
	if cur["last_uid"] != strconv.Itoa(int(uids[len(uids)-1])) || cur["uidvalidity"] != strconv.Itoa(int(inbox.UIDValidity)) {
		t.Errorf("cursor %v, want last_uid %d, uidvalidity %d", cur, uids[len(uids)-1], inbox.UIDValidity)
	}
	g.stop(t)
}

// TestIdleLatency: with mailgw idling on INBOX, a new message is queued
// at once, long before the poll interval (30 s here, so only IDLE can
// explain a quick pick-up). The issue asks for "within 2 s"; Dovecot
// itself waits 0.5 s before it reports new mail to an idling client.
func TestIdleLatency(t *testing.T) {
	// Not parallel: the latency is measured on a quiet machine.
	const rounds = 5
	rs := redistest.Real(t)
	rdb := rs.Client(t)
	dc := dovecottest.Start(t)
	g := startGateway(t, "mailgw", gwOptions{RedisURL: rs.URL, IMAP: dc, PollInterval: "30s"})
	waitFor(t, 15*time.Second, "poller connected", func() (bool, string) {
		return g.connects() > 0, "no connected line"
	})

	var lat []time.Duration
	for i := range rounds {
		// Time for the empty batch after connecting (or after the last
		// message) and for IDLE to begin.
		time.Sleep(500 * time.Millisecond)
		id := fmt.Sprintf("idle-%d@imap.example", i)
		dc.Append(t, "INBOX", carolMessage(id, fmt.Sprintf("Idle %d", i)))
		appended := time.Now()
		waitFor(t, 10*time.Second, "message "+id+" queued", func() (bool, string) {
			n := xlen(t, rdb)
			return n == int64(i+1), fmt.Sprintf("%d stream entries", n)
		})
		lat = append(lat, time.Since(appended))
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	t.Logf("APPEND to stream entry while idling: %v (median %v, max %v)", lat, median, sorted[len(sorted)-1])
	if median > 2*time.Second {
		t.Errorf("median latency %v, want at most 2 s", median)
	}
	checkExactlyOnce(t, streamIDs(t, rdb), []string{"idle-0@imap.example", "idle-1@imap.example", "idle-2@imap.example", "idle-3@imap.example", "idle-4@imap.example"})
	if n := g.connects(); n != 1 {
		t.Errorf("%d IMAP sessions, want the one session idling throughout", n)
	}
}

// TestRedisOutage: while Redis is down, new mail stays unseen in INBOX;
// once Redis is back, it is processed, exactly once.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	rs := redistest.RealWith(t, redistest.Options{AppendOnly: true, ExtraArgs: []string{"--appendfsync", "always"}})
	rdb := rs.Client(t)
	dc := dovecottest.Start(t)
	g := startGateway(t, "mailgw", gwOptions{RedisURL: rs.URL, IMAP: dc})

	dc.Append(t, "INBOX", carolMessage("before@imap.example", "Before the outage"))
	waitFor(t, 15*time.Second, "first message queued", func() (bool, string) {
		n := xlen(t, rdb)
		return n == 1, fmt.Sprintf("%d stream entries", n)
	})

	rs.Stop()
	stopped := time.Now()
	dc.Append(t, "INBOX", carolMessage("during@imap.example", "During the outage"))
	// Several poll intervals and reconnects: the message must stay unseen.
	for time.Since(stopped) < 5*time.Second {
		msgs := dc.Messages(t, "INBOX")
		if len(msgs) != 1 || msgs[0].Seen() || messageID(msgs[0].Raw) != "during@imap.example" {
			t.Fatalf("%v into the outage INBOX holds %d messages (want the new one, unseen): %+v", time.Since(stopped).Round(time.Millisecond), len(msgs), msgs)
		}
		time.Sleep(250 * time.Millisecond)
	}

	rs.Start()
	took := waitInboxEmpty(t, dc, 60*time.Second)
	t.Logf("Redis down for %v; message processed %v after Redis was back", time.Since(stopped).Round(time.Millisecond)-took.Round(time.Millisecond), took.Round(time.Millisecond))
	checkExactlyOnce(t, streamIDs(t, rdb), []string{"before@imap.example", "during@imap.example"})
	if got := dc.Messages(t, "Processed"); len(got) != 2 {
		t.Errorf("Processed holds %d messages, want 2", len(got))
	}
	g.stop(t)
}

// TestDovecotRestart: the poller reconnects after Dovecot is stopped and
// started again, and after it crashed (its process group killed).
func TestDovecotRestart(t *testing.T) {
	t.Parallel()
	rs := redistest.Real(t)
	rdb := rs.Client(t)
	dc := dovecottest.Start(t)
	g := startGateway(t, "mailgw", gwOptions{RedisURL: rs.URL, IMAP: dc})

	want := []string{"first@imap.example"}
	dc.Append(t, "INBOX", carolMessage(want[0], "First"))
	waitFor(t, 15*time.Second, "first message queued", func() (bool, string) {
		n := xlen(t, rdb)
		return n == 1, fmt.Sprintf("%d stream entries", n)
	})

	for i, outage := range []struct {
		name string
		down func()
	}{
		{"stop", dc.Stop},
		{"kill", dc.Kill},
	} {
		connects := g.connects()
		outage.down()
		time.Sleep(2 * time.Second)
		dc.Start()
		id := fmt.Sprintf("after-%s@imap.example", outage.name)
		want = append(want, id)
		dc.Append(t, "INBOX", carolMessage(id, "After "+outage.name))
		took := waitFor(t, 30*time.Second, "message after Dovecot "+outage.name+" queued", func() (bool, string) {
			n := xlen(t, rdb)
			return n == int64(i+2), fmt.Sprintf("%d stream entries", n)
		})
		t.Logf("Dovecot %s, down 2 s: the new message was queued %v after Dovecot was back", outage.name, took.Round(time.Millisecond))
		if g.connects() <= connects {
			t.Errorf("no new IMAP session after Dovecot %s", outage.name)
		}
	}
	waitInboxEmpty(t, dc, 15*time.Second)
	checkExactlyOnce(t, streamIDs(t, rdb), want)
	if got := dc.Messages(t, "Processed"); len(got) != len(want) {
		t.Errorf("Processed holds %d messages, want %d", len(got), len(want))
	}
	g.stop(t)
}

// TestKillMidBatch kills mailgw with SIGKILL while it drains 300 messages
// and starts it again: in the end every message is queued exactly once.
// Messages written to Redis but not yet flagged or moved when it died are
// fetched again and recognised as duplicates.
func TestKillMidBatch(t *testing.T) {
	t.Parallel()
	const total = 300
	rs := redistest.Real(t)
	rdb := rs.Client(t)
	dc := dovecottest.Start(t)
	raws, ids := carolMessages("kill", total)
	dc.AppendAll(t, "INBOX", raws)

	g := startGateway(t, "mailgw", gwOptions{RedisURL: rs.URL, IMAP: dc})
	atKill := killWhenQueued(t, g, rdb, 20, nil)
	if atKill >= total {
		t.Fatalf("all %d messages were queued before mailgw could be killed", total)
	}
	after := xlen(t, rdb)
	inbox := dc.Status(t, "INBOX")
	t.Logf("killed mailgw with %d stream entries (%d once it was dead); INBOX still held %d messages, %d unseen",
		atKill, after, inbox.Messages, inbox.Unseen)
	if inbox.Messages == 0 {
		t.Fatal("INBOX was empty when mailgw died: nothing left to test")
	}

	g2 := g.restart(t)
	waitInboxEmpty(t, dc, 90*time.Second)
	checkExactlyOnce(t, streamIDs(t, rdb), ids)
	if got := dc.Messages(t, "Processed"); len(got) != total {
		t.Errorf("Processed holds %d messages, want %d", len(got), total)
	}
	// The restarted instance decided every message once more: the ones
	// the dead one had written as duplicates, the rest as requests.
	waitLog(t, rdb, total)
	dups, queuedLogged := 0, 0
	for _, e := range decisionLog(t, g.Config) {
		switch {
		case e.Channel != "imap":
		case e.Reason == "duplicate":
			dups++
		case e.Outcome == "queued":
			queuedLogged++
		}
	}
	t.Logf("%d messages queued before the kill were fetched again and ignored as duplicates; "+
		"the decision log has %d queued decisions for %d stream entries (a shortfall is entries "+
		"lost with the dead instance's background log writer)", dups, queuedLogged, total)
	if int64(dups) > after {
		t.Errorf("%d duplicate decisions, but only %d messages had been written before the kill", dups, after)
	}
	g2.stop(t)
}

// TestKilledBetweenSeenAndMove kills mailgw right after it flagged its
// first batch \Seen and before it moved the batch to Processed. Only a
// server without MOVE needs that flag first (go-imap falls back to COPY,
// STORE \Deleted and EXPUNGE), so a proxy between mailgw and Dovecot
// hides Dovecot's MOVE and holds back everything after the first STORE.
// The requests are in Redis already; a new mailgw, straight to Dovecot,
// must still finish the job: move what the dead one flagged (its
// keyword says where to), and fetch the rest again as duplicates, so
// that no message is left behind in INBOX.
func TestKilledBetweenSeenAndMove(t *testing.T) {
	t.Parallel()
	const total = 100
	rs := redistest.Real(t)
	rdb := rs.Client(t)
	dc := dovecottest.Start(t)
	raws, ids := carolMessages("seen", total)
	dc.AppendAll(t, "INBOX", raws) // a backlog, there before mailgw first looks

	proxy := startStallProxy(t, dc.Addr(), stallOptions{Command: "STORE", Forward: true, HideMove: true})
	g := startGateway(t, "mailgw", gwOptions{RedisURL: rs.URL, IMAP: dc, IMAPAddr: proxy.Addr})
	select {
	case <-proxy.Stalled:
	case <-time.After(60 * time.Second):
		t.Fatal("mailgw sent no UID STORE within 60 s")
	}
	g.kill(t)
	st := dc.Status(t, "INBOX")
	t.Logf("killed mailgw between STORE and COPY: %d stream entries; INBOX %d messages, %d unseen", xlen(t, rdb), st.Messages, st.Unseen)
	if st.Messages != total || st.Unseen == total {
		t.Fatalf("INBOX has %d messages, %d unseen: the kill did not land between STORE and COPY", st.Messages, st.Unseen)
	}
	if !slices.ContainsFunc(g.logLines(), func(m map[string]any) bool { return m["message"] == "connected" && m["move"] == false }) {
		t.Fatalf("mailgw did not connect without MOVE through the proxy")
	}

	// A new instance, straight to Dovecot. It waits for the dead one's
	// lease (15 s).
	g2 := startGateway(t, "mailgw (restarted)", gwOptions{RedisURL: rs.URL, IMAP: dc})
	deadline := time.Now().Add(45 * time.Second)
	for {
		st = dc.Status(t, "INBOX")
		if st.Messages == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("INBOX still holds %d messages (%d unseen) 45 s after the restart: the %d messages "+
				"the killed instance had flagged \\Seen but not moved are never fetched again", st.Messages, st.Unseen, st.Messages-st.Unseen)
		}
		time.Sleep(pollEvery)
	}
	checkExactlyOnce(t, streamIDs(t, rdb), ids)
	if got := dc.Messages(t, "Processed"); len(got) != total {
		t.Errorf("Processed holds %d messages, want %d", len(got), total)
	}
	if !slices.ContainsFunc(g2.logLines(), func(m map[string]any) bool {
		return m["message"] == "finishing moves an earlier session left undone"
	}) {
		t.Errorf("the restarted mailgw did not finish the dead one's moves by their keyword")
	}
	g2.stop(t)
}

// TestKilledBeforeMove kills mailgw as it sends its first UID MOVE, which
// a proxy holds back from Dovecot. With MOVE nothing is flagged first:
// the whole backlog is still in INBOX, unseen, though the first batch is
// in Redis already (nothing is moved before its write returned). A new
// mailgw fetches that batch again, finds duplicates and moves them;
// every message is queued exactly once.
func TestKilledBeforeMove(t *testing.T) {
	t.Parallel()
	const total, batch = 100, 50
	rs := redistest.Real(t)
	rdb := rs.Client(t)
	dc := dovecottest.Start(t)
	raws, ids := carolMessages("move", total)
	dc.AppendAll(t, "INBOX", raws)

	proxy := startStallProxy(t, dc.Addr(), stallOptions{Command: "MOVE"})
	g := startGateway(t, "mailgw", gwOptions{RedisURL: rs.URL, IMAP: dc, IMAPAddr: proxy.Addr})
	select {
	case <-proxy.Stalled:
	case <-time.After(60 * time.Second):
		t.Fatal("mailgw sent no UID MOVE within 60 s")
	}
	g.kill(t)
	written := xlen(t, rdb)
	st := dc.Status(t, "INBOX")
	t.Logf("killed mailgw at its first MOVE: %d stream entries; INBOX %d messages, %d unseen", written, st.Messages, st.Unseen)
	if st.Messages != total || st.Unseen != total {
		t.Errorf("INBOX has %d messages, %d unseen, want all %d unseen: nothing may be flagged before MOVE", st.Messages, st.Unseen, total)
	}
	if written < batch {
		t.Errorf("%d stream entries when the first MOVE went out, want at least the %d of its batch", written, batch)
	}

	g2 := startGateway(t, "mailgw (restarted)", gwOptions{RedisURL: rs.URL, IMAP: dc})
	waitInboxEmpty(t, dc, 45*time.Second)
	checkExactlyOnce(t, streamIDs(t, rdb), ids)
	if got := dc.Messages(t, "Processed"); len(got) != total {
		t.Errorf("Processed holds %d messages, want %d", len(got), total)
	}
	g2.stop(t)
}

// TestTwoInstancesShareMailbox runs two mailgw on the same Redis and
// mailbox: the lease lets only one drain it. When that one is killed, the
// other takes over once the lease has expired, and the mail that arrives
// meanwhile is queued exactly once. (A kill in the middle of a batch is
// TestKillMidBatch's subject.)
func TestTwoInstancesShareMailbox(t *testing.T) {
	t.Parallel()
	const first, later = 150, 50
	rs := redistest.Real(t)
	rdb := rs.Client(t)
	dc := dovecottest.Start(t)

	a := startGateway(t, "mailgw A", gwOptions{RedisURL: rs.URL, IMAP: dc})
	waitFor(t, 15*time.Second, "A holds the lease", func() (bool, string) {
		h := leaseHolder(t, rdb)
		return h == a.pid(), fmt.Sprintf("holder pid %d, A is %d", h, a.pid())
	})
	b := startGateway(t, "mailgw B", gwOptions{RedisURL: rs.URL, IMAP: dc})

	raws, ids := carolMessages("shared", first)
	dc.AppendAll(t, "INBOX", raws)
	waitFor(t, 60*time.Second, "A drained INBOX", func() (bool, string) {
		if h := leaseHolder(t, rdb); h != a.pid() {
			t.Fatalf("lease held by pid %d while A (pid %d) is alive", h, a.pid())
		}
		st := dc.Status(t, "INBOX")
		return st.Messages == 0, fmt.Sprintf("INBOX: %d messages", st.Messages)
	})
	if n := b.connects(); n != 0 {
		t.Errorf("B began %d IMAP sessions while A held the lease", n)
	}
	if n := b.imapDecisions(); n != 0 {
		t.Errorf("B decided %d IMAP messages while A held the lease", n)
	}
	if n := a.imapDecisions(); n != first {
		t.Errorf("A decided %d messages, want %d", n, first)
	}

	a.kill(t)
	killed := time.Now()
	raws, more := carolMessages("later", later)
	dc.AppendAll(t, "INBOX", raws)
	ids = append(ids, more...)

	// A's lease runs out 15 s after its last renewal; B looks every 5 s
	// or so.
	takeover := waitFor(t, 30*time.Second, "B holds the lease", func() (bool, string) {
		h := leaseHolder(t, rdb)
		return h == b.pid(), fmt.Sprintf("holder pid %d, B is %d", h, b.pid())
	})
	waitInboxEmpty(t, dc, 30*time.Second)
	t.Logf("B took the lease %v after A was killed and had drained the mailbox %v after the kill",
		takeover.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	checkExactlyOnce(t, streamIDs(t, rdb), ids)
	if got := dc.Messages(t, "Processed"); len(got) != first+later {
		t.Errorf("Processed holds %d messages, want %d", len(got), first+later)
	}
	if n := b.imapDecisions(); n != later {
		t.Errorf("B decided %d messages after the takeover, want %d", n, later)
	}
	b.stop(t)
}
