package verify_test

import (
	"strings"
	"testing"

	"mailgw/config"
	"mailgw/internal/testkit"
	"mailgw/verify"
)

// TestNotMailable: no verification mail, and no token, for mail systems'
// mailboxes, no-reply addresses, the gateway's own addresses and blocked
// addresses: a verification mail must never be able to start a loop.
func TestNotMailable(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		for _, addr := range []string{
			"mailer-daemon@other.example",
			"postmaster@other.example",
			"noreply@other.example",
			"no-reply@other.example",
			"it@example.com",        // a support address
			"it+urgent@example.com", // a support address with a tag
			"billing@example.com",
			"support@example.com", // outbound.from
			"someone@spam.example",
			"someone@bad.example",
			"someone@mx.bad.example",
			"blocked@example.org",
		} {
			if err := f.svc.OnHeld(f.ctx, verify.Held{Address: addr, Space: "IT", Subject: "x"}); err != nil {
				t.Errorf("OnHeld(%s): %v", addr, err)
			}
			if n := f.outbox(); n != 0 {
				t.Fatalf("a verification mail to %s was queued", addr)
			}
		}
		for k := range dump(t, f.ctx, b.RDB) {
			if strings.Contains(k, ":token:") || strings.Contains(k, ":verify:cooldown:") {
				t.Errorf("key %s written for an address that gets no mail", k)
			}
		}

		// Through ingest: a no-reply sender on an allowed domain is held
		// like anyone, but gets no mail.
		f.hold("No Reply <noreply@other.example>", "n1@other.example")
		f.deliver()
		if n := f.sender.tries(); n != 0 {
			t.Fatalf("%d mails sent to unmailable addresses", n)
		}

		// The control: an ordinary address gets its mail.
		if err := f.svc.OnHeld(f.ctx, verify.Held{Address: "dave@other.example", Space: "IT"}); err != nil {
			t.Fatal(err)
		}
		if vm := f.deliverOne(); vm.To != "dave@other.example" {
			t.Fatalf("mail to %s", vm.To)
		}
	})
}

// TestNoSmarthostLogsLink: without outbound.smarthost the link is logged
// instead of mailed, and works.
func TestNoSmarthostLogsLink(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{mod: func(c *config.Config) { c.Outbound.Smarthost = "" }})
		f.hold("dave@other.example", "m1@other.example")
		if n := f.outbox(); n != 0 {
			t.Fatalf("%d mails queued without a smarthost", n)
		}
		m := linkRE.FindStringSubmatch(f.logs.String())
		if m == nil {
			t.Fatalf("no link in the log:\n%s", f.logs)
		}
		if _, ids, err := f.svc.Confirm(f.ctx, m[1]); err != nil || len(ids) != 1 {
			t.Fatalf("Confirm of the logged link = %v, %v", ids, err)
		}
	})
}
