package ingest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/redistest"
)

const testConfig = `
hostname: mx.example.com
access:
  internal_domains: [example.com]
  external_accounts: listed_domains
  external_domains: [partner.example]
  signup: verify
spaces:
  - {key: IT, name: IT help, addresses: [it@example.com]}
  - {key: BILL, name: Billing, addresses: [billing@example.com], channel_access: restricted}
customers:
  - {email: carol@example.com, name: Carol}
agents: [agent@example.com]
`

func newHandler(t testing.TB, rdb redis.UniversalClient, opt ingest.Options) (*ingest.Handler, *config.Config) {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	if err := identify.NewDirectory(rdb, cfg.Redis.Prefix, 0).Seed(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	h, err := ingest.New(cfg, rdb, zerolog.Nop(), opt)
	if err != nil {
		t.Fatal(err)
	}
	return h, cfg
}

func mail(from, to, id, subject string, extra ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Tue, 24 Nov 2026 08:00:00 +0000\r\n", from, to, subject)
	if id != "" {
		fmt.Fprintf(&b, "Message-ID: <%s>\r\n", id)
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe printer on floor 3 is jammed.\r\n")
	return []byte(b.String())
}

func only(t *testing.T, r ingest.Result) ingest.SpaceDecision {
	t.Helper()
	if len(r.Decisions) != 1 {
		t.Fatalf("got %d decisions %+v, want 1", len(r.Decisions), r.Decisions)
	}
	return r.Decisions[0]
}

// TestBackendDown: while Redis fails, mail that needs it is deferred and
// nothing is written; once Redis is back the same message is queued once.
func TestBackendDown(t *testing.T) {
	rdb, mr := redistest.Mini(t)
	h, cfg := newHandler(t, rdb, ingest.Options{})
	ctx := context.Background()
	env := ingest.Envelope{Channel: ingest.ChannelSMTP, Recipients: []string{"it@example.com"}}
	raw := mail("Carol <carol@example.com>", "it@example.com", "m1@example.com", "Printer")

	mr.SetError("LOADING Redis is loading the dataset in memory")
	d := only(t, h.Handle(ctx, env, raw))
	if d.Outcome != identify.Deferred || d.Reason != identify.ReasonBackendUnavailable {
		t.Fatalf("with Redis failing: %s %s, want deferred backend_unavailable", d.Outcome, d.Reason)
	}
	// Machine mail needs no Redis and is still settled.
	bounce := mail("MAILER-DAEMON@mx.other.example", "it@example.com", "b1@other.example", "Undelivered Mail")
	if d := only(t, h.Handle(ctx, env, bounce)); d.Outcome != identify.Ignored || d.Reason != identify.ReasonBounce {
		t.Fatalf("bounce with Redis failing: %s %s", d.Outcome, d.Reason)
	}
	mr.SetError("")

	store := ingest.NewStore(cfg, rdb)
	if n := rdb.XLen(ctx, store.StreamKey("IT")).Val(); n != 0 {
		t.Fatalf("%d stream entries after deferral, want 0", n)
	}
	for i, want := range []identify.Reason{identify.ReasonAccepted, identify.ReasonDuplicate} {
		d := only(t, h.Handle(ctx, env, raw))
		if d.Reason != want || d.Request != "IT-1" {
			t.Fatalf("delivery %d: %s %s %q, want %s IT-1", i+1, d.Outcome, d.Reason, d.Request, want)
		}
	}
	if n := rdb.XLen(ctx, store.StreamKey("IT")).Val(); n != 1 {
		t.Fatalf("%d stream entries, want 1", n)
	}
}

// TestBackendDownRealRedis stops a real redis-server mid-run.
func TestBackendDownRealRedis(t *testing.T) {
	srv := redistest.RealWith(t, redistest.Options{AppendOnly: true, ExtraArgs: []string{"--appendfsync", "always"}})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	h, cfg := newHandler(t, rdb, ingest.Options{})
	ctx := context.Background()
	env := ingest.Envelope{Channel: ingest.ChannelSMTP, Recipients: []string{"it@example.com"}}

	first := only(t, h.Handle(ctx, env, mail("carol@example.com", "it@example.com", "a@example.com", "First")))
	if first.Request != "IT-1" {
		t.Fatalf("first: %+v", first)
	}
	srv.Stop()
	raw := mail("carol@example.com", "it@example.com", "b@example.com", "Second")
	if d := only(t, h.Handle(ctx, env, raw)); d.Outcome != identify.Deferred {
		t.Fatalf("with Redis stopped: %+v", d)
	}
	srv.Start()
	for i, want := range []identify.Reason{identify.ReasonAccepted, identify.ReasonDuplicate} {
		if d := only(t, h.Handle(ctx, env, raw)); d.Reason != want || d.Request != "IT-2" {
			t.Fatalf("retry %d: %+v, want %s IT-2", i+1, d, want)
		}
	}
	if n := rdb.XLen(ctx, ingest.NewStore(cfg, rdb).StreamKey("IT")).Val(); n != 2 {
		t.Fatalf("%d stream entries, want 2", n)
	}
}

func TestStreamEntryFields(t *testing.T) {
	rdb, _ := redistest.Mini(t)
	h, cfg := newHandler(t, rdb, ingest.Options{})
	ctx := context.Background()
	raw := mail(`"Carol C." <Carol@Example.com>`, "IT <it+urgent@example.com>", "f1@example.com", "=?utf-8?q?Dr=C3=BCcker?=",
		"Cc: Dan <dan@example.com>, it@example.com", "Reply-To: other@example.com")
	d := only(t, h.Handle(ctx, ingest.Envelope{Channel: ingest.ChannelReplay, MailFrom: "bounce@example.com"}, raw))
	if d.Reason != identify.ReasonAccepted {
		t.Fatalf("%+v", d)
	}
	msgs := rdb.XRange(ctx, ingest.NewStore(cfg, rdb).StreamKey("IT"), "-", "+").Val()
	if len(msgs) != 1 {
		t.Fatalf("%d entries", len(msgs))
	}
	got := msgs[0].Values
	want := map[string]string{
		"id": "IT-1", "kind": "request", "request": "IT-1", "space": "IT", "from": "carol@example.com",
		"from_name": "Carol C.", "account_type": "internal", "new_customer": "false", "subject": "Drücker",
		"message_id": "f1@example.com", "in_reply_to": "", "references": "", "cc": "dan@example.com, it@example.com",
		"reply_to": "other@example.com", "envelope_from": "bounce@example.com", "attachments": "[]",
		"channel": "replay", "auth": "none: no trusted Authentication-Results", "raw_key": "mailgw:{IT}:raw:IT-1", "html": "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"text", "received_at"} {
		if got[k] == "" {
			t.Errorf("field %s empty", k)
		}
	}
	if rawStored := rdb.Get(ctx, "mailgw:{IT}:raw:IT-1").Val(); rawStored != string(raw) {
		t.Errorf("raw message not stored as received")
	}
}

func TestThreadingAndProvisioning(t *testing.T) {
	rdb, _ := redistest.Mini(t)
	h, _ := newHandler(t, rdb, ingest.Options{})
	ctx := context.Background()
	env := ingest.Envelope{Channel: ingest.ChannelSMTP, Recipients: []string{"it@example.com"}}
	steps := []struct {
		name    string
		raw     []byte
		outcome identify.Outcome
		reason  identify.Reason
		request string
	}{
		{"original", mail("carol@example.com", "it@example.com", "t1@example.com", "VPN down", "Cc: dan@example.com"), identify.Queued, identify.ReasonAccepted, "IT-1"},
		{"requester reply", mail("carol@example.com", "it@example.com", "t2@example.com", "Re: VPN down", "In-Reply-To: <t1@example.com>"), identify.Queued, identify.ReasonComment, "IT-1"},
		{"cc reply by references", mail("dan@example.com", "it@example.com", "t3@example.com", "Re: VPN down", "References: <t1@example.com> <t2@example.com>"), identify.Queued, identify.ReasonComment, "IT-1"},
		{"agent by subject tag", mail("agent@example.com", "it@example.com", "t4@example.com", "Re: [IT-1] VPN down"), identify.Queued, identify.ReasonComment, "IT-1"},
		{"stranger reply is a new message", mail("eve@example.com", "it@example.com", "t5@example.com", "Re: VPN down", "In-Reply-To: <t1@example.com>"), identify.Held, identify.ReasonPendingVerification, ""},
		{"pending sender held again", mail("eve@example.com", "it@example.com", "t6@example.com", "Still down"), identify.Held, identify.ReasonPendingVerification, ""},
		{"held copy redelivered", mail("eve@example.com", "it@example.com", "t6@example.com", "Still down"), identify.Ignored, identify.ReasonDuplicate, ""},
		{"tag of unknown request", mail("carol@example.com", "it@example.com", "t7@example.com", "[IT-99] hello"), identify.Queued, identify.ReasonAccepted, "IT-2"},
		{"restricted space", mail("carol@example.com", "billing@example.com", "t8@example.com", "Invoice"), identify.Rejected, identify.ReasonNotSpaceCustomer, ""},
	}
	for _, s := range steps {
		r := h.Handle(ctx, env, s.raw)
		if s.name == "restricted space" {
			r = h.Handle(ctx, ingest.Envelope{Channel: ingest.ChannelSMTP, Recipients: []string{"billing@example.com"}}, s.raw)
		}
		d := only(t, r)
		if d.Outcome != s.outcome || d.Reason != s.reason || d.Request != s.request {
			t.Fatalf("%s: %s %s %q (%s), want %s %s %q", s.name, d.Outcome, d.Reason, d.Request, d.Detail, s.outcome, s.reason, s.request)
		}
	}
	dir := identify.NewDirectory(rdb, "mailgw:", 0)
	c, err := dir.Customer(ctx, "eve@example.com")
	if err != nil || c.Status != identify.StatusPending || c.Type != identify.TypeInternal {
		t.Fatalf("eve: %+v %v, want a pending internal account", c, err)
	}
	holds, err := ingest.NewStore(&config.Config{Redis: config.Redis{Prefix: "mailgw:"}}, rdb).Holds(ctx, "eve@example.com")
	if err != nil || len(holds) != 2 {
		t.Fatalf("holds: %d %v, want 2", len(holds), err)
	}
}

func TestRecipients(t *testing.T) {
	rdb, _ := redistest.Mini(t)
	h, _ := newHandler(t, rdb, ingest.Options{DryRun: true})
	ctx := context.Background()
	raw := mail("carol@example.com", "IT <it@example.com>, billing@example.com", "r1@example.com", "Both", "Cc: IT+x@EXAMPLE.com")
	r := h.Handle(ctx, ingest.Envelope{Channel: ingest.ChannelReplay}, raw)
	if len(r.Decisions) != 2 || r.Decisions[0].Space != "IT" || r.Decisions[1].Space != "BILL" {
		t.Fatalf("header recipients: %+v", r.Decisions)
	}
	r = h.Handle(ctx, ingest.Envelope{Channel: ingest.ChannelReplay}, mail("carol@example.com", "sales@example.com", "r2@example.com", "x"))
	if d := only(t, r); d.Space != "" || d.Reason != identify.ReasonNoRoute {
		t.Fatalf("no space address: %+v", d)
	}
	r = h.Handle(ctx, ingest.Envelope{Channel: ingest.ChannelSMTP, Recipients: []string{"sales@example.com", "it@example.com"}}, raw)
	if len(r.Decisions) != 2 || r.Decisions[0].Reason != identify.ReasonNoRoute || r.Decisions[1].Space != "IT" {
		t.Fatalf("envelope recipients: %+v", r.Decisions)
	}
	// Only replay routes by headers: a message that reaches SMTP or IMAP
	// with no envelope recipient goes nowhere, whatever its To says.
	for _, channel := range []string{ingest.ChannelSMTP, ingest.ChannelIMAP} {
		r = h.Handle(ctx, ingest.Envelope{Channel: channel}, raw)
		if d := only(t, r); d.Space != "" || d.Outcome != identify.Rejected || d.Reason != identify.ReasonNoRoute {
			t.Errorf("%s without envelope recipients: %+v, want one no_route", channel, d)
		}
	}
	// A dry run writes nothing but what seeding wrote: no space keys, log or holds.
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, "{") || strings.HasSuffix(k, ":log") || strings.Contains(k, "hold:") {
			t.Errorf("dry run wrote %s", k)
		}
	}
}

func TestMissingMessageIDIsStable(t *testing.T) {
	rdb, _ := redistest.Mini(t)
	h, _ := newHandler(t, rdb, ingest.Options{})
	ctx := context.Background()
	env := ingest.Envelope{Channel: ingest.ChannelSMTP, Recipients: []string{"it@example.com"}}
	raw := mail("carol@example.com", "it@example.com", "", "No id")
	first := only(t, h.Handle(ctx, env, raw))
	relayed := append([]byte("Received: from relay.example.com by mx.example.com; Tue, 24 Nov 2026 08:01:00 +0000\r\n"), raw...)
	second := only(t, h.Handle(ctx, env, relayed))
	if first.Reason != identify.ReasonAccepted || second.Reason != identify.ReasonDuplicate || second.Request != first.Request {
		t.Fatalf("first %+v, relayed copy %+v", first, second)
	}
}
