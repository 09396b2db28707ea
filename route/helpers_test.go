package route

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"mailgw/internal/redistest"
)

// backend is one Redis the store tests run against: every store test runs
// against miniredis and a real redis-server.
type backend struct {
	name string
	rdb  *redis.Client
	mini *miniredis.Miniredis // set for miniredis
	real *redistest.Server    // set for redis-server
}

// stop simulates an outage; start ends it with the data kept (miniredis
// keeps it in memory, the real server in its append-only file when the
// backend is durable).
func (b *backend) stop(t *testing.T) {
	t.Helper()
	if b.mini != nil {
		b.mini.Close()
		return
	}
	b.real.Stop()
}

func (b *backend) start(t *testing.T) {
	t.Helper()
	if b.mini != nil {
		if err := b.mini.Restart(); err != nil {
			t.Fatalf("restart miniredis: %v", err)
		}
		return
	}
	b.real.Start()
}

// eachBackend runs f as a parallel subtest against miniredis and against a
// real redis-server.
func eachBackend(t *testing.T, f func(t *testing.T, b *backend)) {
	t.Helper()
	eachBackendWith(t, false, f)
}

// eachBackendWith is eachBackend; durable makes the real server keep its
// data across Stop and Start (append-only file, fsync on every write).
func eachBackendWith(t *testing.T, durable bool, f func(t *testing.T, b *backend)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) {
		t.Parallel()
		rdb, m := redistest.Mini(t)
		f(t, &backend{name: "miniredis", rdb: rdb, mini: m})
	})
	t.Run("redis-server", func(t *testing.T) {
		t.Parallel()
		var s *redistest.Server
		if durable {
			s = redistest.RealWith(t, redistest.Options{AppendOnly: true, ExtraArgs: []string{"--appendfsync", "always"}})
		} else {
			s = redistest.Real(t)
		}
		f(t, &backend{name: "redis-server", rdb: s.Client(t), real: s})
	})
}

// testCtx bounds every test so a hung Redis call fails instead of hanging.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const (
	testPrefix    = "mailgw:"
	testRetention = 7 * 24 * time.Hour
	testHoldTTL   = 48 * time.Hour
)

func newTestStore(rdb redis.UniversalClient) *Store {
	return NewStore(rdb, Options{Prefix: testPrefix, Retention: testRetention, HoldTTL: testHoldTTL})
}

// designFields are the stream fields of DESIGN §4 that callers pass in
// Request.Fields (the store adds id, kind, request, space and raw_key).
var designFields = []string{
	"from", "from_name", "account_type", "new_customer", "subject", "text", "html",
	"message_id", "in_reply_to", "references", "cc", "attachments", "received_at", "channel", "auth",
}

// sampleRaw is a raw message that is not valid UTF-8 and holds NULs, so a
// store that treats it as text would damage it.
func sampleRaw(messageID string, size int) []byte {
	head := "Message-ID: <" + messageID + ">\r\nSubject: =?utf-8?q?Drucker?=\r\n\r\n"
	b := []byte(head)
	for i := 0; len(b) < size; i++ {
		b = append(b, byte(i), 0x00, 0xff, 0xc3, 0x28, '\r', '\n')
	}
	return b[:max(size, len(head))]
}

// sampleRequest is a request with every field of DESIGN §4 set to a
// distinctive value.
func sampleRequest(space, messageID, from string) Request {
	fields := make([]Field, 0, len(designFields))
	for _, name := range designFields {
		v := name + " of " + messageID
		switch name {
		case "from":
			v = from
		case "message_id":
			v = messageID
		case "subject":
			v = "Drucker kaputt — ünïcödé ✓ " + messageID
		case "text":
			v = "line 1\r\nline 2\n\ttabbed \x00 nul"
		case "html":
			v = "" // an empty value must survive too
		case "attachments":
			v = `[{"name":"a.pdf","content_type":"application/pdf","size":3,"sha256":"abc"}]`
		case "received_at":
			v = "2024-05-06T07:08:09Z"
		case "new_customer":
			v = "false"
		}
		fields = append(fields, Field{name, v})
	}
	return Request{
		Space: space, Kind: "request", MessageID: messageID,
		Requester: from, Participants: []string{"cc1@example.com", "cc2@example.org"},
		Fields: fields, Raw: sampleRaw(messageID, 512),
	}
}

func sha(messageID string) string {
	sum := sha256.Sum256([]byte(messageID))
	return hex.EncodeToString(sum[:])
}

// Key names as DESIGN §4 spells them, built independently of the store.
func msgKeyOf(prefix, space, messageID string) string {
	return prefix + "{" + space + "}:msg:" + sha(messageID)
}
func seqKeyOf(prefix, space string) string    { return prefix + "{" + space + "}:seq" }
func streamKeyOf(prefix, space string) string { return prefix + "{" + space + "}:requests" }
func rawKeyOf(prefix, space, id string) string {
	return prefix + "{" + space + "}:raw:" + id
}

// getOr returns a string key's value, or "" when the key does not exist.
func getOr(t *testing.T, rdb redis.Cmdable, key string) string {
	t.Helper()
	v, err := rdb.Get(testCtx(t), key).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

func xlen(t *testing.T, rdb redis.Cmdable, key string) int64 {
	t.Helper()
	n, err := rdb.XLen(testCtx(t), key).Result()
	if err != nil {
		t.Fatalf("XLEN %s: %v", key, err)
	}
	return n
}

func exists(t *testing.T, rdb redis.Cmdable, key string) bool {
	t.Helper()
	n, err := rdb.Exists(testCtx(t), key).Result()
	if err != nil {
		t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

// checkTTL asserts that key expires in about want (the real server counts
// down; miniredis does not).
func checkTTL(t *testing.T, rdb redis.Cmdable, key string, want time.Duration) {
	t.Helper()
	got, err := rdb.TTL(testCtx(t), key).Result()
	if err != nil {
		t.Fatalf("TTL %s: %v", key, err)
	}
	if got > want || got < want-time.Minute {
		t.Errorf("TTL %s = %v, want about %v", key, got, want)
	}
}

// allKeys lists every key with SCAN.
func allKeys(t *testing.T, rdb redis.Cmdable) []string {
	t.Helper()
	var out []string
	iter := rdb.Scan(testCtx(t), 0, "*", 100).Iterator()
	for iter.Next(testCtx(t)) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return out
}

// values turns a stream entry's values into strings.
func values(t *testing.T, m redis.XMessage) map[string]string {
	t.Helper()
	out := make(map[string]string, len(m.Values))
	for k, v := range m.Values {
		s, ok := v.(string)
		if !ok {
			t.Fatalf("entry %s field %s is %T, want string", m.ID, k, v)
		}
		out[k] = s
	}
	return out
}

func mustWrite(t *testing.T, st *Store, r Request) Written {
	t.Helper()
	w, err := st.Write(testCtx(t), r)
	if err != nil {
		t.Fatalf("Write %s/%s: %v", r.Space, r.MessageID, err)
	}
	return w
}

func ids(prefix string, from, to int) []string {
	out := make([]string, 0, to-from+1)
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

func hasPrefix(keys []string, prefix string) (bad []string) {
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			bad = append(bad, k)
		}
	}
	return bad
}
