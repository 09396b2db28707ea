package ingest_test

import (
	"context"
	"fmt"
	"github.com/alicebob/miniredis/v2"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/redistest"
	"mailgw/verify"
)

// spoofConfig is the site of the spoofing tests: carol and jürgen are
// active customers, agent@example.com an agent, IT is open and BILL
// restricted (with no customers of its own), unknown senders must verify.
// %s is the access.authentication.require setting.
const spoofConfig = `
hostname: mx.example.com
access:
  internal_domains: [example.com]
  external_accounts: listed_domains
  external_domains: [partner.example]
  signup: verify
  authentication: {trusted_authserv_ids: [mx.example.com], require: %s}
spaces:
  - {key: IT, name: IT help, addresses: [it@example.com], channel_access: open}
  - {key: BILL, name: Billing, addresses: [billing@example.com], channel_access: restricted}
customers:
  - {email: carol@example.com, name: Carol}
  - {email: jürgen@example.com, name: Jürgen}
agents: [agent@example.com]
`

// mailbox is a Verifier that keeps the verification mails it was asked to send.
type mailbox struct {
	mu   sync.Mutex
	sent []verify.Held
}

func (m *mailbox) OnHeld(_ context.Context, h verify.Held) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, h)
	return nil
}

func (m *mailbox) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sent)
}

// site is a Handler on a fresh miniredis with the directory seeded from yaml.
type site struct {
	h    *ingest.Handler
	cfg  *config.Config
	rdb  *redis.Client
	mr   *miniredis.Miniredis
	mail *mailbox
}

func newSite(t testing.TB, yaml string, opt ingest.Options) *site {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	rdb, mr := redistest.Mini(t)
	if err := identify.NewDirectory(rdb, cfg.Redis.Prefix, 0).Seed(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	mb := &mailbox{}
	if opt.Verifier == nil {
		opt.Verifier = mb
	}
	h, err := ingest.New(cfg, rdb, zerolog.Nop(), opt)
	if err != nil {
		t.Fatal(err)
	}
	return &site{h: h, cfg: cfg, rdb: rdb, mr: mr, mail: mb}
}

// stream returns the entries of a space's request stream.
func (s *site) stream(t testing.TB, space string) []redis.XMessage {
	t.Helper()
	msgs, err := s.rdb.XRange(context.Background(), ingest.NewStore(s.cfg, s.rdb).StreamKey(space), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// customerExists reports whether the directory has an account for addr.
func (s *site) customerExists(t testing.TB, addr string) bool {
	t.Helper()
	n, err := s.rdb.Exists(context.Background(), s.cfg.Redis.Prefix+"customer:"+addr).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// spoofMail is a message to both spaces whose originator fields are
// fromLines (one header field a line, as written), with extra fields on top.
func spoofMail(fromLines, id string, top ...string) []byte {
	var b strings.Builder
	for _, h := range top {
		b.WriteString(h + "\r\n")
	}
	for _, l := range strings.Split(fromLines, "\n") {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("To: IT <it@example.com>, billing@example.com\r\nSubject: Invoice 4711\r\n" +
		"Date: Tue, 24 Nov 2026 08:00:00 +0000\r\nMessage-ID: <" + id + ">\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Please pay the attached invoice today.\r\n")
	return []byte(b.String())
}

type spaceWant struct {
	outcome identify.Outcome
	reason  identify.Reason
}

func (w spaceWant) String() string { return string(w.outcome) + " " + string(w.reason) }

// want is the expected decision in IT and in BILL.
type want [2]spaceWant

var (
	rejected   = func(r identify.Reason) spaceWant { return spaceWant{identify.Rejected, r} }
	wCarol     = want{{identify.Queued, identify.ReasonAccepted}, rejected(identify.ReasonNotSpaceCustomer)}
	wAgent     = want{{identify.Queued, identify.ReasonAccepted}, {identify.Queued, identify.ReasonAccepted}}
	wNewSender = want{{identify.Held, identify.ReasonPendingVerification}, rejected(identify.ReasonNotSpaceCustomer)}
	wOutsider  = want{rejected(identify.ReasonDomainNotAllowed), rejected(identify.ReasonNotSpaceCustomer)}
	wMalformed = want{rejected(identify.ReasonMalformed), rejected(identify.ReasonMalformed)}
	wUnauth    = want{rejected(identify.ReasonUnauthenticated), rejected(identify.ReasonUnauthenticated)}
)

// spoofCase is one way of writing a From header, drawn from published
// research on From-header spoofing ("Composition Kills", Chen et al.,
// USENIX Security 2020; "Mailsploit", Haddouche 2017) and RFC 5322 corners.
type spoofCase struct {
	name string
	// from is the originator header fields, one a line.
	from string
	// identity is who mailgw must take the sender to be (normalized), ""
	// when the message has no usable From.
	identity string
	// legit marks mail the sender really wrote: the trusted MTA says
	// dmarc=pass. Otherwise it says dmarc=fail for arDomain.
	legit    bool
	arDomain string // header.from of the trusted result; "" means example.com
	none     want   // decisions with require: none, no Authentication-Results
	dmarc    want   // decisions with require: dmarc and the trusted result on top
	// check, when set, inspects the site after the require: none run.
	check func(t *testing.T, s *site)
}

var spoofCases = []spoofCase{
	{name: "plain spoof of a customer", from: "From: Carol <carol@example.com>",
		identity: "carol@example.com", none: wCarol, dmarc: wUnauth},
	{name: "plain spoof of an agent", from: "From: agent@example.com",
		identity: "agent@example.com", none: wAgent, dmarc: wUnauth},
	{name: "two From fields", from: "From: attacker@evil.example\nFrom: Carol <carol@example.com>",
		none: wMalformed, dmarc: wMalformed},
	{name: "two From fields, customer first", from: "From: Carol <carol@example.com>\nFrom: attacker@evil.example",
		none: wMalformed, dmarc: wMalformed},
	{name: "one From with two addresses", from: "From: Carol <carol@example.com>, <attacker@evil.example>",
		none: wMalformed, dmarc: wMalformed},
	{name: "group with two addresses", from: "From: Team: carol@example.com, attacker@evil.example;",
		none: wMalformed, dmarc: wMalformed},
	{name: "address in a quoted display name", from: `From: "carol@example.com" <attacker@evil.example>`,
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "address in an unquoted display name", from: "From: carol@example.com <attacker@evil.example>",
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "encoded-word name with NUL, CRLF, @ and an angle-addr", from: "From: =?utf-8?q?Carol_=00=0D=0ABcc=3A_x=40evil.example_=3Ccarol=40example.com=3E?= <attacker@evil.example>",
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "base64 encoded-word name holding an angle-addr", from: "From: =?utf-8?b?PGNhcm9sQGV4YW1wbGUuY29tPg==?= <attacker@evil.example>",
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "encoded-word name in a quoted string", from: `From: "=?utf-8?q?carol=40example.com?=" <attacker@evil.example>`,
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "encoded-word as the address", from: "From: =?utf-8?q?carol=40example.com?=",
		none: wMalformed, dmarc: wMalformed},
	{name: "encoded-word angle-addr as the address", from: "From: =?utf-8?q?=3Ccarol=40example.com=3E?=",
		none: wMalformed, dmarc: wMalformed},
	{name: "customer's own mail with a hostile encoded name", from: "From: =?utf-8?q?Carol=0D=0ABcc=3A_victim=40evil.example=00?= <carol@example.com>",
		identity: "carol@example.com", legit: true, none: wCarol, dmarc: wCarol,
		check: func(t *testing.T, s *site) {
			entries := s.stream(t, "IT")
			if len(entries) != 1 {
				t.Fatalf("%d IT entries, want 1", len(entries))
			}
			if name, _ := entries[0].Values["from_name"].(string); strings.ContainsAny(name, "\r\n\x00") || name == "" {
				t.Errorf("from_name %q: want the decoded name without CR, LF or NUL", name)
			}
		}},
	{name: "comment after the address", from: "From: attacker@evil.example (carol@example.com)",
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "comment before the address", from: "From: (carol@example.com) attacker@evil.example",
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "folded display name", from: "From: attacker@evil.example\n\tcarol@example.com",
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "IDN homograph domain (Cyrillic е)", from: "From: Carol <carol@еxample.com>",
		identity: "carol@xn--xample-2of.com", arDomain: "xn--xample-2of.com", none: wOutsider, dmarc: wUnauth},
	{name: "homograph local part (Cyrillic с)", from: "From: Carol <сarol@example.com>",
		identity: "сarol@example.com", none: wNewSender, dmarc: wUnauth},
	{name: "NFD spelling of a customer", from: "From: J\u00fcrgen <ju\u0308rgen@example.com>",
		identity: "jürgen@example.com", legit: true, none: wUnauth, dmarc: wUnauth},
	{name: "NFC spelling of that customer", from: "From: J\u00fcrgen <j\u00fcrgen@example.com>",
		identity: "jürgen@example.com", legit: true, none: wCarol, dmarc: wCarol},
	{name: "case variant", from: "From: Carol <Carol@EXAMPLE.com>",
		identity: "carol@example.com", legit: true, none: wCarol, dmarc: wCarol},
	{name: "quoted local part", from: `From: "carol"@example.com`,
		identity: "carol@example.com", legit: true, none: wCarol, dmarc: wCarol},
	{name: "Sender and Reply-To name the customer", from: "From: attacker@evil.example\nSender: Carol <carol@example.com>\nReply-To: carol@example.com",
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "customer in Reply-To only", from: "From: Carol <carol@example.com>\nReply-To: attacker@evil.example",
		identity: "carol@example.com", none: wCarol, dmarc: wUnauth},
	{name: "trailing root dot", from: "From: carol@example.com.",
		identity: "carol@example.com", none: wCarol, dmarc: wUnauth},
	{name: "source route to the customer", from: "From: <@evil.example:carol@example.com>",
		identity: "carol@example.com", none: wCarol, dmarc: wUnauth},
	{name: "source route from the customer's domain", from: "From: <@example.com:attacker@evil.example>",
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "quoted local part holding the customer", from: `From: "carol@example.com"@evil.example`,
		none: wMalformed, dmarc: wMalformed},
	{name: "empty From", from: "From:",
		none: wMalformed, dmarc: wMalformed},
	{name: "null address", from: "From: <>",
		none: wMalformed, dmarc: wMalformed},
	{name: "group without members", from: "From: Undisclosed recipients:;",
		none: wMalformed, dmarc: wMalformed},
	{name: "overlong address", from: "From: <" + strings.Repeat("a", 600) + "@example.com>",
		none: wMalformed, dmarc: wMalformed},
	{name: "overlong display name pushing the address out of sight", from: `From: "carol@example.com` + strings.Repeat(" ", 2000) + `" <attacker@evil.example>`,
		identity: "attacker@evil.example", arDomain: "evil.example", none: wOutsider, dmarc: wUnauth},
	{name: "NUL splitting two addresses", from: "From: carol@example.com\x00@evil.example",
		none: wMalformed, dmarc: wMalformed},
	// A NUL is no part of any address; parsers written in C stop at it.
	{name: "NUL inside the address", from: "From: car\x00ol@example.com",
		none: wMalformed, dmarc: wMalformed},
	{name: "NUL inside the angle-addr", from: "From: <carol@example.com\x00>",
		none: wMalformed, dmarc: wMalformed},
	// An angle-addr followed by another addr-spec is two addresses.
	{name: "second address after the angle-addr", from: "From: <carol@example.com>attacker@evil.example",
		none: wMalformed, dmarc: wMalformed},
	{name: "address literal", from: "From: carol@[192.0.2.1]",
		identity: "carol@[192.0.2.1]", arDomain: "[192.0.2.1]", none: wOutsider, dmarc: wUnauth},
	{name: "new sender on the internal domain", from: "From: Eve <eve@example.com>",
		identity: "eve@example.com", legit: true, none: wNewSender, dmarc: wNewSender},
}

// TestSpoofing runs every way of writing a From header through a real
// Handler three times: with require: none and no Authentication-Results,
// with require: dmarc and the trusted MTA's result on top (pass for mail
// the sender wrote, fail for the domain it claims otherwise), and, for
// spoofs, with require: dmarc and a trusted pass for the attacker's own
// domain, which is what an MTA that parses the From differently from
// mailgw reports (Composition Kills' cross-parser attacks).
func TestSpoofing(t *testing.T) {
	if len(spoofCases) < 20 {
		t.Fatalf("only %d cases", len(spoofCases))
	}
	for i, tc := range spoofCases {
		t.Run(tc.name, func(t *testing.T) {
			ar := "mx.example.com; dmarc=fail header.from="
			domain := tc.arDomain
			if domain == "" {
				domain = "example.com"
			}
			if tc.legit {
				ar = "mx.example.com; dmarc=pass header.from="
			}
			runs := []struct {
				name    string
				require string
				top     []string
				want    want
			}{
				{"require none", config.RequireNone, nil, tc.none},
				{"require dmarc", config.RequireDMARC, []string{"Authentication-Results: " + ar + domain}, tc.dmarc},
			}
			if !tc.legit {
				// The attacker's domain passes at the MTA: mailgw must only
				// believe it for an identity on that domain.
				cross := wUnauth
				switch {
				case tc.identity == "":
					cross = wMalformed
				case strings.HasSuffix(tc.identity, "@evil.example"):
					cross = wOutsider
				}
				runs = append(runs, struct {
					name    string
					require string
					top     []string
					want    want
				}{"require dmarc, attacker's domain passes", config.RequireDMARC,
					[]string{"Authentication-Results: mx.example.com; dmarc=pass header.from=evil.example"}, cross})
			}
			for _, run := range runs {
				t.Run(run.name, func(t *testing.T) {
					s := newSite(t, fmt.Sprintf(spoofConfig, run.require), ingest.Options{})
					raw := spoofMail(tc.from, fmt.Sprintf("spoof-%d@client.example", i), run.top...)
					res := s.h.Handle(context.Background(), ingest.Envelope{
						Channel: ingest.ChannelSMTP, MailFrom: "bounces@relay.example",
						Recipients: []string{"it@example.com", "billing@example.com"},
					}, raw)
					checkSpoof(t, s, tc, run.name, run.want, res)
					if tc.check != nil && run.require == config.RequireNone {
						tc.check(t, s)
					}
				})
			}
		})
	}
}

func checkSpoof(t *testing.T, s *site, tc spoofCase, run string, w want, res ingest.Result) {
	t.Helper()
	if res.From != tc.identity {
		t.Errorf("%s: sender %q, want %q", run, res.From, tc.identity)
	}
	if len(res.Decisions) != 2 || res.Decisions[0].Space != "IT" || res.Decisions[1].Space != "BILL" {
		t.Fatalf("%s: decisions %+v, want one for IT and one for BILL", run, res.Decisions)
	}
	for i, d := range res.Decisions {
		if d.Outcome != w[i].outcome || d.Reason != w[i].reason {
			t.Errorf("%s: %s: %s %s (%s), want %s", run, d.Space, d.Outcome, d.Reason, d.Detail, w[i])
		}
	}
	// Whatever was queued carries the identity decided on, never another.
	for _, sp := range []string{"IT", "BILL"} {
		for _, e := range s.stream(t, sp) {
			if from := e.Values["from"]; from != res.From {
				t.Errorf("%s: %s entry from %v, sender was %q", run, sp, from, res.From)
			}
		}
	}
	// Refused mail provisions nobody and mails nobody.
	refused := true
	for _, d := range res.Decisions {
		refused = refused && d.Outcome == identify.Rejected
	}
	if refused {
		if res.From != "" && res.From != "carol@example.com" && res.From != "jürgen@example.com" && s.customerExists(t, res.From) {
			t.Errorf("%s: refused sender %s got an account", run, res.From)
		}
		if n := s.mail.count(); n != 0 {
			t.Errorf("%s: %d verification mails for refused mail", run, n)
		}
	}
}

// TestRequireDMARC: with require: dmarc, unauthenticated mail neither
// speaks for a customer nor provisions an account nor triggers a
// verification mail; a trusted pass lets the same mail through.
func TestRequireDMARC(t *testing.T) {
	ctx := context.Background()
	env := ingest.Envelope{Channel: ingest.ChannelSMTP, Recipients: []string{"it@example.com"}}
	forged := []string{
		"Authentication-Results: mx.evil.example; dmarc=pass header.from=example.com", // untrusted id
	}
	pass := "Authentication-Results: mx.example.com; dmarc=pass header.from=example.com"

	t.Run("customer", func(t *testing.T) {
		s := newSite(t, fmt.Sprintf(spoofConfig, config.RequireDMARC), ingest.Options{})
		for i, top := range [][]string{nil, forged} {
			d := only(t, s.h.Handle(ctx, env, spoofMail("From: Carol <carol@example.com>", fmt.Sprintf("c%d@client.example", i), top...)))
			if d.Outcome != identify.Rejected || d.Reason != identify.ReasonUnauthenticated {
				t.Fatalf("unauthenticated mail from carol (%d): %s %s", i, d.Outcome, d.Reason)
			}
			if !strings.Contains(d.Detail, "none") {
				t.Errorf("detail %q does not name the verdict", d.Detail)
			}
		}
		d := only(t, s.h.Handle(ctx, env, spoofMail("From: Carol <carol@example.com>", "c9@client.example", pass)))
		if d.Outcome != identify.Queued || d.Reason != identify.ReasonAccepted {
			t.Fatalf("authenticated mail from carol: %s %s (%s)", d.Outcome, d.Reason, d.Detail)
		}
		entries := s.stream(t, "IT")
		if len(entries) != 1 || entries[0].Values["auth"] != "pass (authres:mx.example.com): dmarc=pass header.from=example.com" {
			t.Fatalf("stream %+v, want one entry with the verdict in auth", entries)
		}
	})

	t.Run("unknown sender", func(t *testing.T) {
		s := newSite(t, fmt.Sprintf(spoofConfig, config.RequireDMARC), ingest.Options{})
		for i, top := range [][]string{nil, forged} {
			d := only(t, s.h.Handle(ctx, env, spoofMail("From: Eve <eve@example.com>", fmt.Sprintf("e%d@client.example", i), top...)))
			if d.Outcome != identify.Rejected || d.Reason != identify.ReasonUnauthenticated {
				t.Fatalf("unauthenticated unknown sender (%d): %s %s", i, d.Outcome, d.Reason)
			}
		}
		if s.customerExists(t, "eve@example.com") {
			t.Fatal("unauthenticated unknown sender became a customer")
		}
		if n := s.rdb.Exists(ctx, s.cfg.Redis.Prefix+"hold:eve@example.com").Val(); n != 0 {
			t.Fatal("unauthenticated mail was held")
		}
		if n := s.mail.count(); n != 0 {
			t.Fatalf("%d verification mails to an unauthenticated sender", n)
		}

		d := only(t, s.h.Handle(ctx, env, spoofMail("From: Eve <eve@example.com>", "e9@client.example", pass)))
		if d.Outcome != identify.Held || d.Reason != identify.ReasonPendingVerification {
			t.Fatalf("authenticated unknown sender: %s %s (%s)", d.Outcome, d.Reason, d.Detail)
		}
		if !s.customerExists(t, "eve@example.com") || s.mail.count() != 1 {
			t.Fatalf("authenticated unknown sender: account %v, %d verification mails; want a pending account and one mail",
				s.customerExists(t, "eve@example.com"), s.mail.count())
		}
	})

	t.Run("require none still refuses NFD", func(t *testing.T) {
		s := newSite(t, fmt.Sprintf(spoofConfig, config.RequireNone), ingest.Options{})
		d := only(t, s.h.Handle(ctx, env, spoofMail("From: ju\u0308rgen@example.com", "n1@client.example", pass)))
		if d.Outcome != identify.Rejected || d.Reason != identify.ReasonUnauthenticated {
			t.Fatalf("NFD spelling of a customer: %s %s", d.Outcome, d.Reason)
		}
		if !strings.Contains(d.Detail, "NFC") {
			t.Errorf("detail %q does not say why", d.Detail)
		}
	})
}
