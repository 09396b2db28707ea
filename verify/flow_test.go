package verify_test

import (
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/testkit"
	"mailgw/verify"
)

var ownMessageID = regexp.MustCompile(`^<mailgw\.[0-9a-f]+@mx\.example\.com>$`)

// TestEndToEnd follows an unknown sender from the first message to the
// confirmed account, through ingest with the verification mail captured.
func TestEndToEnd(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		const dave = "dave@other.example"

		f.hold("Dave Jones <Dave@Other.Example>", "m1@other.example")
		if s := f.status(dave); s != identify.StatusPending {
			t.Fatalf("status %q, want pending", s)
		}
		if n := f.outbox(); n != 1 {
			t.Fatalf("%d mails in the outbox, want 1", n)
		}
		if n := f.sender.tries(); n != 0 {
			t.Fatalf("%d mails sent before DeliverDue", n)
		}
		if n := f.deliver(); n != 1 {
			t.Fatalf("DeliverDue tried %d mails, want 1", n)
		}
		sent := f.sender.sent()
		if len(sent) != 1 {
			t.Fatalf("%d mails sent, want 1", len(sent))
		}
		vm := sent[0]
		if vm.From != "support@example.com" || vm.To != dave {
			t.Errorf("envelope %s -> %s, want support@example.com -> %s", vm.From, vm.To, dave)
		}
		m := parseMail(t, vm.Msg)
		for k, want := range map[string]string{
			"From":                     "Example Support <support@example.com>",
			"To":                       dave,
			"Auto-Submitted":           "auto-generated",
			"X-Auto-Response-Suppress": "All",
			"X-Mailgw-Loop":            "mx.example.com",
			"MIME-Version":             "1.0",
		} {
			if got := m.Header.Get(k); got != want {
				t.Errorf("%s: %q, want %q", k, got, want)
			}
		}
		if id := m.Header.Get("Message-ID"); !ownMessageID.MatchString(id) {
			t.Errorf("Message-ID %q, want <mailgw.*@mx.example.com>", id)
		}
		if d, err := m.Header.Date(); err != nil || !d.Equal(start) {
			t.Errorf("Date %v (%v), want %v", d, err, start)
		}
		if m.Header.Get("Subject") == "" {
			t.Error("no Subject")
		}
		token := tokenOf(t, vm.Msg)
		link := "https://help.example.com/verify/" + token
		for part, body := range map[string]string{"text": m.Text, "HTML": m.HTML} {
			if !strings.Contains(body, link) {
				t.Errorf("%s part lacks %s", part, link)
			}
			if !strings.Contains(body, "IT help") {
				t.Errorf("%s part does not name the space", part)
			}
		}
		if !strings.Contains(m.HTML, `href="`+link+`"`) {
			t.Errorf("HTML part has no anchor to the link:\n%s", m.HTML)
		}

		// The very mail comes back to the support address (a forwarding
		// rule, an auto-responder that ignores the headers): a loop.
		back := f.h.Handle(f.ctx, ingest.Envelope{Channel: ingest.ChannelSMTP, MailFrom: "support@example.com",
			Recipients: []string{"it@example.com"}}, vm.Msg)
		if len(back.Decisions) != 1 || back.Decisions[0].Outcome != identify.Ignored || back.Decisions[0].Reason != identify.ReasonLoop {
			t.Fatalf("the verification mail fed back: %+v, want ignored loop", back.Decisions)
		}

		// A second message within the cooldown is held without a new mail.
		f.advance(5 * time.Minute)
		f.hold("Dave Jones <dave@other.example>", "m2@other.example")
		if n := f.outbox(); n != 0 {
			t.Fatalf("%d mails in the outbox after the second message, want 0", n)
		}
		f.deliver()
		if n := f.sender.tries(); n != 1 {
			t.Fatalf("%d mails sent, want still 1", n)
		}
		if p, err := f.svc.Inspect(f.ctx, token); err != nil || p.Held != 2 {
			t.Fatalf("Inspect = %+v, %v; want 2 held", p, err)
		}

		p, ids, err := f.svc.Confirm(f.ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(ids, ",") != "IT-1,IT-2" || p.Address != dave {
			t.Fatalf("Confirm = %+v, %v; want IT-1,IT-2 in order", p, ids)
		}
		if s := f.status(dave); s != identify.StatusActive {
			t.Fatalf("status %q, want active", s)
		}
		if n := len(f.holds(dave)); n != 0 {
			t.Fatalf("%d holds left", n)
		}
		entries := f.stream("IT")
		if len(entries) != 2 {
			t.Fatalf("%d stream entries, want 2", len(entries))
		}
		for i, e := range entries {
			wantID := []string{"m1@other.example", "m2@other.example"}[i]
			if field(e, "message_id") != wantID || field(e, "new_customer") != "true" || field(e, "from") != dave ||
				field(e, "id") != ids[i] || field(e, "account_type") != identify.TypePortal || field(e, "kind") != "request" {
				t.Errorf("entry %d: %v", i, e.Values)
			}
		}
		logged := f.logEntries(string(identify.ReasonAcceptedNewCustomer))
		if len(logged) != 2 {
			t.Fatalf("%d accepted_new_customer log entries, want 2: %+v", len(logged), logged)
		}
		for i, e := range logged {
			if e.Outcome != string(identify.Queued) || e.Request != ids[i] || e.Space != "IT" || e.From != dave ||
				e.MessageID != []string{"m1@other.example", "m2@other.example"}[i] {
				t.Errorf("log entry %d: %+v", i, e)
			}
		}

		// Now a customer: the next message is queued at once, no mail.
		ds := f.handle(mailFrom(dave, "it@example.com", "m3@other.example", "More"), "it@example.com")
		if len(ds) != 1 || ds[0].Outcome != identify.Queued || ds[0].Reason != identify.ReasonAccepted {
			t.Fatalf("message after confirmation: %+v", ds)
		}
		if n := f.outbox(); n != 0 {
			t.Fatalf("%d mails queued for an active customer", n)
		}
	})
}

// TestCooldownOver: once verify.cooldown has passed, the next held message
// brings a new mail with a new link; both links work.
func TestCooldownOver(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		f.hold("dave@other.example", "m1@other.example")
		first := tokenOf(t, f.deliverOne().Msg)

		f.advance(f.cfg.Verify.Cooldown.D() - time.Second)
		f.hold("dave@other.example", "m2@other.example")
		if f.deliver() != 0 || f.sender.tries() != 1 {
			t.Fatalf("a mail went out within the cooldown")
		}
		f.advance(2 * time.Second)
		f.hold("dave@other.example", "m3@other.example")
		second := tokenOf(t, f.deliverOne().Msg)
		if second == first {
			t.Fatal("the new mail reuses the old link")
		}
		for _, tok := range []string{first, second} {
			if p, err := f.svc.Inspect(f.ctx, tok); err != nil || p.Held != 3 {
				t.Fatalf("Inspect = %+v, %v; want 3 held", p, err)
			}
		}
		_, ids, err := f.svc.Confirm(f.ctx, second)
		if err != nil || len(ids) != 3 {
			t.Fatalf("Confirm = %v, %v; want 3 queued", ids, err)
		}
		// The first link finds nothing left to queue.
		if _, ids, err := f.svc.Confirm(f.ctx, first); err != nil || len(ids) != 0 {
			t.Fatalf("Confirm of the older link = %v, %v; want nothing queued", ids, err)
		}
		if n := len(f.stream("IT")); n != 3 {
			t.Fatalf("%d stream entries, want 3", n)
		}
	})
}

// TestResend: a new link now, ignoring the cooldown, for pending accounts only.
func TestResend(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		f.hold("Dave <dave@other.example>", "m1@other.example")
		first := tokenOf(t, f.deliverOne().Msg)
		if err := f.svc.Resend(f.ctx, "dave@other.example"); err != nil {
			t.Fatal(err)
		}
		again := f.deliverOne()
		if tok := tokenOf(t, again.Msg); tok == first {
			t.Fatal("Resend reused the link")
		}
		if m := parseMail(t, again.Msg); !strings.Contains(m.Text, "IT help") || !strings.Contains(m.Text, "Dave") {
			t.Errorf("resent mail lacks the space or the name:\n%s", m.Text)
		}
		for _, addr := range []string{"carol@example.com", "nobody@other.example"} {
			if err := f.svc.Resend(f.ctx, addr); err == nil {
				t.Errorf("Resend to %s (not pending) succeeded", addr)
			}
		}
		if n := f.outbox(); n != 0 {
			t.Fatalf("%d mails queued for accounts that are not pending", n)
		}
	})
}

// TestConcurrentConfirm: twenty presses of the button at once queue each
// held request exactly once.
func TestConcurrentConfirm(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		const dave = "dave@other.example"
		f.hold(dave, "m1@other.example", "it@example.com", "billing@example.com")
		token := tokenOf(t, f.deliverOne().Msg)
		f.hold(dave, "m2@other.example")
		f.hold(dave, "m3@other.example")

		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			all  []string
			errs []error
		)
		for range 20 {
			wg.Go(func() {
				_, ids, err := f.svc.Confirm(f.ctx, token)
				mu.Lock()
				defer mu.Unlock()
				all = append(all, ids...)
				if err != nil {
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("%d Confirm calls failed, first: %v", len(errs), errs[0])
		}
		sort.Strings(all)
		if strings.Join(all, ",") != "BILL-1,IT-1,IT-2,IT-3" {
			t.Fatalf("queued %v, want each of BILL-1, IT-1..3 once", all)
		}
		count := map[string]int{}
		for _, space := range []string{"IT", "BILL"} {
			for _, e := range f.stream(space) {
				count[space+" "+field(e, "message_id")]++
			}
		}
		want := []string{"BILL m1@other.example", "IT m1@other.example", "IT m2@other.example", "IT m3@other.example"}
		for _, k := range want {
			if count[k] != 1 {
				t.Errorf("%s is on the stream %d times, want once", k, count[k])
			}
		}
		if len(count) != len(want) {
			t.Errorf("stream entries %v, want %v", count, want)
		}
		if n := len(f.holds(dave)); n != 0 {
			t.Errorf("%d holds left", n)
		}
		if n := len(f.logEntries(string(identify.ReasonAcceptedNewCustomer))); n != 4 {
			t.Errorf("%d accepted_new_customer log entries, want 4", n)
		}
	})
}

// TestConcurrentHoldsOneMail: several messages of one new sender that
// arrive at once (parallel SMTP sessions) still bring one mail per
// cooldown, not one each.
func TestConcurrentHoldsOneMail(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				if err := f.svc.OnHeld(f.ctx, verify.Held{Address: "dave@other.example", Space: "IT", Subject: "Printer " + string(rune('a'+i))}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := f.outbox(); n != 1 {
			t.Errorf("%d verification mails queued for one address within the cooldown, want 1", n)
		}
	})
}

// TestComposeLongSubject: the sender's subject is cut to fit the mail,
// and never in the middle of a character.
func TestComposeLongSubject(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		subject := strings.Repeat("a", 199) + strings.Repeat("ü", 50) + "\r\nBcc: victim@example.net"
		if err := f.svc.OnHeld(f.ctx, verify.Held{Address: "dave@other.example", Name: "Dave\r\nX-Injected: 1", Space: "IT", Subject: subject}); err != nil {
			t.Fatal(err)
		}
		vm := f.deliverOne()
		m := parseMail(t, vm.Msg)
		if m.Header.Get("X-Injected") != "" || m.Header.Get("Bcc") != "" {
			t.Errorf("sender-supplied text became a header:\n%s", vm.Msg)
		}
		for part, body := range map[string]string{"text": m.Text, "HTML": m.HTML} {
			if !utf8.ValidString(body) {
				t.Errorf("%s part is not valid UTF-8 (a character cut in half):\n%q", part, body)
			}
		}
		if tokenOf(t, vm.Msg) == "" {
			t.Fatal("no link")
		}
	})
}
