package route

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// heldMarker is the value of a Message-ID key while the message waits for
// its sender's verification: it dedupes redeliveries but names no request.
const heldMarker = "held"

// Field is one field of a stream entry; order is kept so entries read well.
type Field struct{ Name, Value string }

// Request is one message to be written to one space.
type Request struct {
	Space     string // space key
	Kind      string // "request" or "comment"
	Parent    string // for a comment: the request it belongs to
	MessageID string // the dedupe id (a synthesized one when the message had none)
	// Requester and Participants are normalized addresses that may reply to
	// the request as comments.
	Requester    string
	Participants []string
	Fields       []Field // the stream fields other than id, kind, request, space and raw_key
	Raw          []byte
	// Release is set when a held request is queued after verification:
	// its Message-ID key then says "held" and must not count as a duplicate.
	Release bool
}

// Written is the result of a write.
type Written struct {
	ID        string // request id (for a comment, the request it joined)
	Duplicate bool   // the Message-ID was already routed here; ID is where
	EntryID   string // stream entry id of a new entry
}

// Options configure a Store.
type Options struct {
	Prefix       string
	Retention    time.Duration // TTL of raw messages, Message-ID keys, request metadata
	HoldTTL      time.Duration // TTL of hold lists
	LogMaxLen    int64
	Timeout      time.Duration // per Redis call
	WaitReplicas int
}

// Store writes to Redis.
type Store struct {
	rdb redis.UniversalClient
	opt Options
}

// NewStore returns a store; zero options get defaults.
func NewStore(rdb redis.UniversalClient, opt Options) *Store {
	if opt.Prefix == "" {
		opt.Prefix = "mailgw:"
	}
	if opt.Retention <= 0 {
		opt.Retention = 30 * 24 * time.Hour
	}
	if opt.HoldTTL <= 0 {
		opt.HoldTTL = 48 * time.Hour
	}
	if opt.LogMaxLen <= 0 {
		opt.LogMaxLen = 100000
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Second
	}
	return &Store{rdb: rdb, opt: opt}
}

// spacePrefix carries the hash tag that puts all of a space's keys in one
// Redis Cluster slot, so one script may touch them together.
func (s *Store) spacePrefix(space string) string { return s.opt.Prefix + "{" + space + "}:" }

// StreamKey is the key of a space's request stream.
func (s *Store) StreamKey(space string) string { return s.spacePrefix(space) + "requests" }

// LogKey is the key of the decision log stream.
func (s *Store) LogKey() string { return s.opt.Prefix + "log" }

func (s *Store) msgKey(space, messageID string) string {
	return s.spacePrefix(space) + "msg:" + hashID(messageID)
}

func (s *Store) holdKey(addr string) string { return s.opt.Prefix + "hold:" + addr }

func hashID(messageID string) string {
	sum := sha256.Sum256([]byte(messageID))
	return hex.EncodeToString(sum[:])
}

func (s *Store) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.opt.Timeout)
}

// writeScript is the whole write of a request or comment: dedupe, id,
// raw message, participants and stream entry happen together or not at all.
// KEYS: msg key, seq key, stream key, staged raw message. The raw message
// does not pass through the script: Lua copies every argument twice (into
// Lua and back), which cost more than all the script's commands together.
// It is written to a staged key in the same pipeline, just before, and the
// script renames it into place (keeping its TTL) or deletes it. The raw and
// participant keys are derived from the id inside the script; every key
// shares the space's hash tag.
var writeScript = redis.NewScript(`
local existing = redis.call('GET', KEYS[1])
if existing and not (existing == 'held' and ARGV[6] == '1') then
  redis.call('DEL', KEYS[4])
  return {0, existing, ''}
end
if redis.call('EXISTS', KEYS[4]) == 0 then
  return redis.error_reply('STAGED raw message missing')
end
local p, ttl = ARGV[1], tonumber(ARGV[5])
local id, rawkey
if ARGV[3] == 'comment' then
  id = ARGV[4]
  local ck = p .. 'req:' .. id .. ':comments'
  rawkey = p .. 'raw:' .. id .. ':' .. redis.call('INCR', ck)
  redis.call('EXPIRE', ck, ttl)
else
  id = ARGV[2] .. '-' .. redis.call('INCR', KEYS[2])
  rawkey = p .. 'raw:' .. id
end
redis.call('SET', KEYS[1], id, 'EX', ttl)
redis.call('RENAME', KEYS[4], rawkey)
local np = tonumber(ARGV[7])
local pk = p .. 'req:' .. id .. ':participants'
for i = 8, 7 + np, 100 do
  redis.call('SADD', pk, unpack(ARGV, i, math.min(i + 99, 7 + np)))
end
redis.call('EXPIRE', pk, ttl)
local fields = {'id', id, 'kind', ARGV[3], 'request', id, 'space', ARGV[2], 'raw_key', rawkey}
for i = 8 + np, #ARGV do fields[#fields + 1] = ARGV[i] end
local eid = redis.call('XADD', KEYS[3], '*', unpack(fields))
return {1, id, eid}
`)

// maxParticipants bounds the participants stored per write: a message with
// thousands of Cc addresses still becomes one request, but only the first
// addresses may reply to it as comments.
const maxParticipants = 500

// Write queues a request or comment. It returns only after Redis ran the
// whole script (and, with WaitReplicas, after the replicas confirmed it).
func (s *Store) Write(ctx context.Context, r Request) (Written, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.runWrite(ctx, s.prepareWrite(r))
	if err != nil {
		return Written{}, fmt.Errorf("route: write to %s: %w", r.Space, err)
	}
	return written(r.Space, res)
}

// WriteBatched is Write with the script sent through b, in one pipeline
// with other messages' commands. It writes on its own when Redis lost the
// script (after a restart) and when replicas must confirm.
func (s *Store) WriteBatched(ctx context.Context, b *Batcher, r Request) (Written, error) {
	if s.opt.WaitReplicas > 0 {
		return s.Write(ctx, r)
	}
	w := s.prepareWrite(r)
	var cmd *redis.Cmd
	err := b.Do(ctx, func(pipe redis.Pipeliner) { cmd = w.queue(ctx, pipe, true) })
	if err != nil {
		return Written{}, fmt.Errorf("route: write to %s: %w", r.Space, err)
	}
	res, err := cmd.Slice()
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The same staged key again, so the copy already staged is
		// overwritten and renamed, not left behind.
		wctx, cancel := s.ctx(ctx)
		defer cancel()
		res, err = s.runWrite(wctx, w)
	}
	if err != nil {
		return Written{}, fmt.Errorf("route: write to %s: %w", r.Space, err)
	}
	return written(r.Space, res)
}

// writeCall is one prepared write: the staged raw message and the script.
type writeCall struct {
	keys []string // msg, seq, stream, staged raw
	args []any
	raw  []byte
	ttl  time.Duration
}

func (s *Store) prepareWrite(r Request) writeCall {
	release := "0"
	if r.Release {
		release = "1"
	}
	participants := append([]string{r.Requester}, r.Participants...)
	if len(participants) > maxParticipants {
		participants = participants[:maxParticipants]
	}
	args := make([]any, 0, 7+len(participants)+2*len(r.Fields))
	args = append(args, s.spacePrefix(r.Space), r.Space, r.Kind, r.Parent,
		int64(s.opt.Retention/time.Second), release, len(participants))
	for _, p := range participants {
		args = append(args, p)
	}
	for _, f := range r.Fields {
		args = append(args, f.Name, f.Value)
	}
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	keys := []string{s.msgKey(r.Space, r.MessageID), s.spacePrefix(r.Space) + "seq", s.StreamKey(r.Space),
		s.spacePrefix(r.Space) + "stage:" + hex.EncodeToString(nonce[:])}
	return writeCall{keys: keys, args: args, raw: r.Raw, ttl: s.opt.Retention}
}

// queue adds the staging of the raw message and the script to pipe. The
// staged key carries the raw message's final TTL, which RENAME keeps; if the
// script never runs (a connection lost in between), it expires unseen.
func (w writeCall) queue(ctx context.Context, pipe redis.Pipeliner, bySHA bool) *redis.Cmd {
	pipe.Set(ctx, w.keys[3], w.raw, w.ttl)
	if bySHA {
		return writeScript.EvalSha(ctx, pipe, w.keys, w.args...)
	}
	return writeScript.Eval(ctx, pipe, w.keys, w.args...)
}

// exec runs the write in one round trip on c, sending the whole script
// only when Redis does not have it yet.
func (w writeCall) exec(ctx context.Context, c redis.Cmdable) ([]any, error) {
	run := func(bySHA bool) ([]any, error) {
		pipe := c.Pipeline()
		cmd := w.queue(ctx, pipe, bySHA)
		_, _ = pipe.Exec(ctx) // each command keeps its own error
		return cmd.Slice()
	}
	res, err := run(true)
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		return run(false)
	}
	return res, err
}

func written(space string, res []any) (Written, error) {
	if len(res) != 3 {
		return Written{}, fmt.Errorf("route: write to %s: unexpected script result %v", space, res)
	}
	w := Written{Duplicate: fmt.Sprint(res[0]) == "0", ID: fmt.Sprint(res[1]), EntryID: fmt.Sprint(res[2])}
	if w.Duplicate && w.ID == heldMarker {
		w.ID = ""
	}
	return w, nil
}

// LoadScripts makes sure Redis has the write script, so that batched
// writes, which can only use EVALSHA, find it.
func (s *Store) LoadScripts(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := writeScript.Load(ctx, s.rdb).Err(); err != nil {
		return fmt.Errorf("route: load scripts: %w", err)
	}
	return nil
}

// runWrite runs the write. With WaitReplicas it runs it and WAIT on one
// connection to the primary that owns the space's slot: WAIT counts the
// writes of its own connection only.
func (s *Store) runWrite(ctx context.Context, w writeCall) ([]any, error) {
	if s.opt.WaitReplicas <= 0 {
		return w.exec(ctx, s.rdb)
	}
	var primary *redis.Client
	switch c := s.rdb.(type) {
	case *redis.Client:
		primary = c
	case *redis.ClusterClient:
		var err error
		if primary, err = c.MasterForKey(ctx, w.keys[0]); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("redis.wait_replicas needs a single server or a cluster client, not %T", s.rdb)
	}
	conn := primary.Conn()
	defer conn.Close()
	res, err := w.exec(ctx, conn)
	if err != nil {
		return nil, err
	}
	n, err := conn.Wait(ctx, s.opt.WaitReplicas, s.opt.Timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("wait for replicas: %w", err)
	}
	if n < int64(s.opt.WaitReplicas) {
		return nil, fmt.Errorf("%d of %d replicas confirmed the write", n, s.opt.WaitReplicas)
	}
	return res, nil
}

// Seen is what Redis knows of a message in a space before deciding it.
type Seen struct {
	Duplicate   bool
	DuplicateOf string // "" when the earlier copy is held
	// ThreadRequest is the request the message replies to, if any;
	// Participant says sender is one of its participants.
	ThreadRequest string
	Participant   bool
}

// maxThreadIDs bounds how many References are looked up: the newest ones
// are the ones that can name a request.
const maxThreadIDs = 50

// Lookup answers the duplicate and thread questions for one space in at most
// two round trips. parents are In-Reply-To then References, most relevant first.
func (s *Store) Lookup(ctx context.Context, space, messageID string, parents []string, subject, sender string) (Seen, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	pipe := s.rdb.Pipeline()
	read := s.QueueLookup(ctx, pipe, space, messageID, parents, subject, sender)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Seen{}, fmt.Errorf("route: look up %s in %s: %w", messageID, space, err)
	}
	return read(ctx)
}

// QueueLookup adds Lookup's first round trip to pipe, so that callers can
// share it with other look-ups; after pipe ran, the returned function reads
// the answer, asking Redis once more only to check a thread's participants.
func (s *Store) QueueLookup(ctx context.Context, pipe redis.Pipeliner, space, messageID string, parents []string, subject, sender string) func(context.Context) (Seen, error) {
	if len(parents) > maxThreadIDs {
		parents = parents[:maxThreadIDs]
	}
	keys := make([]string, 0, 1+len(parents))
	keys = append(keys, s.msgKey(space, messageID))
	for _, p := range parents {
		keys = append(keys, s.msgKey(space, p))
	}
	tag := SubjectTag(subject, space)
	vals := pipe.MGet(ctx, keys...)
	var tagged *redis.IntCmd
	if tag != "" {
		tagged = pipe.Exists(ctx, s.spacePrefix(space)+"req:"+tag+":participants")
	}
	return func(ctx context.Context) (Seen, error) {
		var seen Seen
		if err := vals.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return seen, fmt.Errorf("route: look up %s in %s: %w", messageID, space, err)
		}
		v := vals.Val()
		if len(v) > 0 && v[0] != nil {
			seen.Duplicate = true
			if id, _ := v[0].(string); id != heldMarker {
				seen.DuplicateOf = id
			}
			return seen, nil
		}
		for _, x := range v[1:] {
			if id, ok := x.(string); ok && id != heldMarker && id != "" {
				seen.ThreadRequest = id
				break
			}
		}
		if seen.ThreadRequest == "" && tagged != nil && tagged.Val() == 1 {
			seen.ThreadRequest = tag
		}
		if seen.ThreadRequest == "" || sender == "" {
			return seen, nil
		}
		ctx, cancel := s.ctx(ctx)
		defer cancel()
		ok, err := s.rdb.SIsMember(ctx, s.spacePrefix(space)+"req:"+seen.ThreadRequest+":participants", sender).Result()
		if err != nil {
			return seen, fmt.Errorf("route: participants of %s: %w", seen.ThreadRequest, err)
		}
		seen.Participant = ok
		return seen, nil
	}
}

var tagPattern = regexp.MustCompile(`\[([A-Z][A-Z0-9_]{0,19})-([1-9][0-9]{0,17})\]`)

// SubjectTag returns the first "[KEY-N]" request id of space in subject, or "".
func SubjectTag(subject, space string) string {
	for _, m := range tagPattern.FindAllStringSubmatch(subject, 8) {
		if m[1] == space {
			return m[1] + "-" + m[2]
		}
	}
	return ""
}

// Held is a request waiting for its sender's verification.
type Held struct {
	Request
	Sender   string    `json:"sender"`
	HeldAt   time.Time `json:"held_at"`
	Channel  string    `json:"channel"`
	Subject  string    `json:"subject"`
	Reason   string    `json:"reason"`
	Received string    `json:"received_at"`
}

// Hold stores a request until its sender verifies the address. The item is
// pushed before the Message-ID is marked, so a crash in between can only
// leave a second copy, which the write script dedupes on release; the
// reverse order could mark a message held that was never stored.
func (s *Store) Hold(ctx context.Context, h Held) (duplicate bool, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	mk := s.msgKey(h.Space, h.MessageID)
	n, err := s.rdb.Exists(ctx, mk).Result()
	if err != nil {
		return false, fmt.Errorf("route: hold for %s: %w", h.Sender, err)
	}
	if n > 0 {
		return true, nil
	}
	item, err := json.Marshal(h)
	if err != nil {
		return false, fmt.Errorf("route: hold for %s: %w", h.Sender, err)
	}
	hk := s.holdKey(h.Sender)
	pipe := s.rdb.TxPipeline()
	pipe.RPush(ctx, hk, item)
	pipe.Expire(ctx, hk, s.opt.HoldTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("route: hold for %s: %w", h.Sender, err)
	}
	if err := s.rdb.SetNX(ctx, mk, heldMarker, s.opt.Retention).Err(); err != nil {
		return false, fmt.Errorf("route: hold for %s: %w", h.Sender, err)
	}
	return false, nil
}

// OldestHold returns the oldest request held for a sender and its stored
// form, which PopHold needs; ok is false when nothing is held.
func (s *Store) OldestHold(ctx context.Context, sender string) (h Held, item string, ok bool, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	item, err = s.rdb.LIndex(ctx, s.holdKey(sender), 0).Result()
	if errors.Is(err, redis.Nil) {
		return h, "", false, nil
	}
	if err != nil {
		return h, "", false, fmt.Errorf("route: holds of %s: %w", sender, err)
	}
	if err := json.Unmarshal([]byte(item), &h); err != nil {
		return h, item, true, fmt.Errorf("route: holds of %s: %w", sender, err)
	}
	return h, item, true, nil
}

// popIfOldest removes the oldest held item only if it is still item, so
// that two releases running at once never remove an item twice.
var popIfOldest = redis.NewScript(`
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then return redis.call('LPOP', KEYS[1]) end
return false
`)

// PopHold removes item, returned by OldestHold, once it has been handled.
func (s *Store) PopHold(ctx context.Context, sender, item string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := popIfOldest.Run(ctx, s.rdb, []string{s.holdKey(sender)}, item).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("route: pop hold of %s: %w", sender, err)
	}
	return nil
}

// Holds returns the requests held for a sender, oldest first.
func (s *Store) Holds(ctx context.Context, sender string) ([]Held, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	items, err := s.rdb.LRange(ctx, s.holdKey(sender), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("route: holds of %s: %w", sender, err)
	}
	out := make([]Held, 0, len(items))
	for _, it := range items {
		var h Held
		if err := json.Unmarshal([]byte(it), &h); err != nil {
			return nil, fmt.Errorf("route: holds of %s: %w", sender, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// Entry is one decision in the log.
type Entry struct {
	ID        string    `json:"id,omitempty"` // stream id, set when read
	Time      time.Time `json:"time"`
	Channel   string    `json:"channel"`
	MessageID string    `json:"message_id"`
	From      string    `json:"from"`
	Space     string    `json:"space"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason"`
	Request   string    `json:"request,omitempty"`
	Detail    string    `json:"detail,omitempty"`
	// Recipient and Size go to the log line only, not the stream.
	Recipient string `json:"-"`
	Size      int    `json:"-"`
}

// Log appends a decision to the capped log stream.
func (s *Store) Log(ctx context.Context, e Entry) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.rdb.XAdd(ctx, s.logArgs(e)).Err(); err != nil {
		return fmt.Errorf("route: log: %w", err)
	}
	return nil
}

// EntryFromStream decodes a log stream message.
func EntryFromStream(m redis.XMessage) Entry {
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	t, _ := time.Parse(time.RFC3339Nano, str("time"))
	return Entry{
		ID: m.ID, Time: t, Channel: str("channel"), MessageID: str("message_id"), From: str("from"),
		Space: str("space"), Outcome: str("outcome"), Reason: str("reason"), Request: str("request"), Detail: str("detail"),
	}
}

// ReadLog returns up to count log entries after the stream id after ("0" for
// the start), waiting up to block for new ones when block > 0. Unlike
// XREAD's BLOCK 0, it never waits forever.
func (s *Store) ReadLog(ctx context.Context, after string, count int64, block time.Duration) ([]Entry, error) {
	msgs, err := s.read(ctx, s.LogKey(), after, count, block)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(msgs))
	for i, m := range msgs {
		out[i] = EntryFromStream(m)
	}
	return out, nil
}

// ReadStream reads a space's request stream like ReadLog.
func (s *Store) ReadStream(ctx context.Context, space, after string, count int64, block time.Duration) ([]redis.XMessage, error) {
	return s.read(ctx, s.StreamKey(space), after, count, block)
}

func (s *Store) read(ctx context.Context, key, after string, count int64, block time.Duration) ([]redis.XMessage, error) {
	if block <= 0 {
		ctx, cancel := s.ctx(ctx)
		defer cancel()
		start := "(" + after
		if after == "0" || after == "" {
			start = "-"
		}
		var msgs []redis.XMessage
		var err error
		if count > 0 {
			msgs, err = s.rdb.XRangeN(ctx, key, start, "+", count).Result()
		} else {
			msgs, err = s.rdb.XRange(ctx, key, start, "+").Result()
		}
		if err != nil {
			return nil, fmt.Errorf("route: read %s: %w", key, err)
		}
		return msgs, nil
	}
	ctx, cancel := context.WithTimeout(ctx, block+s.opt.Timeout)
	defer cancel()
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, after}, Count: count, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("route: read %s: %w", key, err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res[0].Messages, nil
}

// KeyPrefix returns the configured key prefix.
func (s *Store) KeyPrefix() string { return s.opt.Prefix }

// LogFilter selects decision log entries; an empty field matches all.
// From and MessageID are compared as stored: a normalized address and a
// Message-ID without angle brackets.
type LogFilter struct {
	Space, Reason, Outcome, From, MessageID string
}

// BareMessageID returns id as the log stores it: without surrounding
// space and one enclosing pair of angle brackets. Only a pair is taken
// off, so an id that merely starts with "<" is still found.
func BareMessageID(id string) string {
	id = strings.TrimSpace(id)
	if len(id) >= 2 && id[0] == '<' && id[len(id)-1] == '>' {
		id = strings.TrimSpace(id[1 : len(id)-1])
	}
	return id
}

// Match reports whether e passes the filter.
func (f LogFilter) Match(e Entry) bool {
	return (f.Space == "" || strings.EqualFold(e.Space, f.Space)) &&
		(f.Reason == "" || e.Reason == f.Reason) &&
		(f.Outcome == "" || e.Outcome == f.Outcome) &&
		(f.From == "" || e.From == f.From) &&
		(f.MessageID == "" || e.MessageID == f.MessageID)
}

// LastLog returns up to n of the newest log entries that match, oldest
// first, and the id of the newest entry of the log ("0-0" when empty) to
// follow from.
func (s *Store) LastLog(ctx context.Context, n int64, match func(Entry) bool) ([]Entry, string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	const batch = 500
	var found []Entry
	newest, end := "0-0", "+"
	for scanned := int64(0); (scanned == 0 || int64(len(found)) < n) && scanned < s.opt.LogMaxLen+batch; scanned += batch {
		msgs, err := s.rdb.XRevRangeN(ctx, s.LogKey(), end, "-", batch).Result()
		if err != nil {
			return nil, "", fmt.Errorf("route: read log: %w", err)
		}
		if len(msgs) == 0 {
			break
		}
		if newest == "0-0" {
			newest = msgs[0].ID
		}
		for _, m := range msgs {
			if e := EntryFromStream(m); match(e) && int64(len(found)) < n {
				found = append(found, e)
			}
		}
		end = "(" + msgs[len(msgs)-1].ID
		if len(msgs) < batch {
			break
		}
	}
	for i, j := 0, len(found)-1; i < j; i, j = i+1, j-1 {
		found[i], found[j] = found[j], found[i]
	}
	return found, newest, nil
}

// LastStream returns the n newest entries of a space's stream, oldest
// first, and the id to follow from ("0-0" when the stream is empty).
func (s *Store) LastStream(ctx context.Context, space string, n int64) ([]redis.XMessage, string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	msgs, err := s.rdb.XRevRangeN(ctx, s.StreamKey(space), "+", "-", max(n, 1)).Result()
	if err != nil {
		return nil, "", fmt.Errorf("route: read %s: %w", s.StreamKey(space), err)
	}
	if len(msgs) == 0 {
		return nil, "0-0", nil
	}
	newest := msgs[0].ID
	if n <= 0 {
		return nil, newest, nil
	}
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	return msgs, newest, nil
}
