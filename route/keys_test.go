package route

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/internal/redistest"
)

// writeEverything uses every write of the store once: a request, its
// duplicate (whose staged raw message must not stay), a comment, a hold and
// a log entry.
func writeEverything(t *testing.T, st *Store) {
	t.Helper()
	ctx := testCtx(t)
	mustWrite(t, st, sampleRequest("IT", "k1@example.com", "alice@example.com"))
	if w := mustWrite(t, st, sampleRequest("IT", "k1@example.com", "alice@example.com")); !w.Duplicate {
		t.Fatalf("second write of k1: %+v, want a duplicate", w)
	}
	mustWrite(t, st, commentRequest("IT", "k2@example.com", "IT-1", "bob@example.com"))
	if _, err := st.Hold(ctx, Held{Request: sampleRequest("IT", "k3@example.com", "new@example.org"), Sender: "new@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Log(ctx, logEntry(1, "IT")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Lookup(ctx, "IT", "k4@example.com", []string{"k1@example.com"}, "[IT-1]", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
}

func TestKeys(t *testing.T) {
	const prefix = "gw7:"
	eachBackend(t, func(t *testing.T, b *backend) {
		st := NewStore(b.rdb, Options{Prefix: prefix})
		if st.KeyPrefix() != prefix || st.LogKey() != prefix+"log" || st.StreamKey("IT") != prefix+"{IT}:requests" {
			t.Errorf("KeyPrefix %q LogKey %q StreamKey %q", st.KeyPrefix(), st.LogKey(), st.StreamKey("IT"))
		}
		writeEverything(t, st)

		got := allKeys(t, b.rdb)
		if bad := hasPrefix(got, prefix); len(bad) > 0 {
			t.Errorf("keys without the prefix %q: %q", prefix, bad)
		}
		space := prefix + "{IT}:"
		want := []string{
			space + "requests",
			space + "seq",
			space + "msg:" + sha("k1@example.com"),
			space + "msg:" + sha("k2@example.com"),
			space + "msg:" + sha("k3@example.com"),
			space + "raw:IT-1",
			space + "raw:IT-1:1",
			space + "req:IT-1:comments",
			space + "req:IT-1:participants",
			prefix + "hold:new@example.org",
			prefix + "log",
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("keys:\n got %q\nwant %q", got, want)
		}
		for _, k := range got {
			if strings.Contains(k, "{") && !strings.HasPrefix(k, space) {
				t.Errorf("key %q has a hash tag other than {IT} right after the prefix", k)
			}
			// Everything but the id counter and the streams expires.
			ttl, err := b.rdb.TTL(testCtx(t), k).Result()
			if err != nil {
				t.Fatal(err)
			}
			permanent := k == space+"seq" || k == space+"requests" || k == prefix+"log"
			if permanent != (ttl < 0) {
				t.Errorf("TTL %s = %v", k, ttl)
			}
		}

		// The default prefix is mailgw:.
		if def := NewStore(b.rdb, Options{}); def.KeyPrefix() != "mailgw:" || def.StreamKey("IT") != "mailgw:{IT}:requests" {
			t.Errorf("default prefix: %q, stream %q", def.KeyPrefix(), def.StreamKey("IT"))
		}
	})
}

// clusterNode starts a redis-server in cluster mode that serves every slot
// itself, so scripts and multi-key commands get Redis Cluster's checks.
func clusterNode(t *testing.T) *redistest.Server {
	t.Helper()
	s := redistest.RealWith(t, redistest.Options{ExtraArgs: []string{"--cluster-enabled", "yes"}})
	c := s.Client(t)
	ctx := testCtx(t)
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ready: %q, %v", info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKeysShareSlot: the keys of one space hash to one Redis Cluster slot
// (CLUSTER KEYSLOT on a real server), so the write script may touch them.
func TestKeysShareSlot(t *testing.T) {
	t.Parallel()
	data := redistest.Real(t)
	writeEverything(t, NewStore(data.Client(t), Options{}))
	node := clusterNode(t).Client(t)
	ctx := testCtx(t)

	want, err := node.ClusterKeySlot(ctx, "{IT}").Result()
	if err != nil {
		t.Fatal(err)
	}
	var space []string
	for _, k := range allKeys(t, data.Client(t)) {
		if strings.HasPrefix(k, "mailgw:{IT}:") {
			space = append(space, k)
		}
	}
	for _, kind := range []string{":msg:", ":seq", ":requests", ":raw:", ":req:"} {
		if !slices.ContainsFunc(space, func(k string) bool { return strings.Contains(k, kind) }) {
			t.Errorf("no %s key among the space keys %q", kind, space)
		}
	}
	for _, k := range space {
		slot, err := node.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if slot != want {
			t.Errorf("CLUSTER KEYSLOT %s = %d, want %d (the slot of {IT})", k, slot, want)
		}
	}
}

// TestCluster runs the store through a cluster client against a node in
// cluster mode: Redis then refuses scripts and MGETs whose keys span slots.
func TestCluster(t *testing.T) {
	t.Parallel()
	s := clusterNode(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{s.Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	ctx := testCtx(t)
	st := NewStore(cc, Options{})

	for _, space := range []string{"IT", "BILL", "OPS_2"} {
		w := mustWrite(t, st, sampleRequest(space, "c1@example.com", "alice@example.com"))
		if w.ID != space+"-1" || w.Duplicate {
			t.Fatalf("Write to %s = %+v", space, w)
		}
		if w := mustWrite(t, st, commentRequest(space, "c2@example.com", w.ID, "bob@example.com")); w.ID != space+"-1" || w.Duplicate {
			t.Fatalf("comment in %s = %+v", space, w)
		}
		if w := mustWrite(t, st, sampleRequest(space, "c1@example.com", "alice@example.com")); !w.Duplicate {
			t.Fatalf("duplicate in %s = %+v", space, w)
		}
		held := sampleRequest(space, "c3@example.com", "new@example.org")
		if dup, err := st.Hold(ctx, Held{Request: held, Sender: "new@example.org"}); err != nil || dup {
			t.Fatalf("Hold in %s = %v, %v", space, dup, err)
		}
		held.Release = true
		if w := mustWrite(t, st, held); w.ID != space+"-2" {
			t.Fatalf("release in %s = %+v", space, w)
		}
		parents := []string{"x@example.com", "c2@example.com", "c1@example.com"}
		seen, err := st.Lookup(ctx, space, "c4@example.com", parents, fmt.Sprintf("[%s-2]", space), "bob@example.com")
		if err != nil || seen.ThreadRequest != space+"-1" || !seen.Participant {
			t.Fatalf("Lookup in %s = %+v, %v", space, seen, err)
		}
		seen, err = st.Lookup(ctx, space, "c5@example.com", nil, fmt.Sprintf("Re: [%s-2]", space), "new@example.org")
		if err != nil || seen.ThreadRequest != space+"-2" || !seen.Participant {
			t.Fatalf("Lookup by subject in %s = %+v, %v", space, seen, err)
		}
		if msgs, err := st.ReadStream(ctx, space, "0", 100, 0); err != nil || len(msgs) != 3 {
			t.Fatalf("ReadStream %s = %d entries, %v; want 3", space, len(msgs), err)
		}
	}
	if err := st.Log(ctx, logEntry(1, "IT")); err != nil {
		t.Fatal(err)
	}
	if es, _, err := st.LastLog(ctx, 5, func(Entry) bool { return true }); err != nil || len(es) != 1 {
		t.Fatalf("LastLog = %v, %v", es, err)
	}
}
