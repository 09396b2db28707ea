package verify_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailgw/identify"
	"mailgw/internal/testkit"
	"mailgw/verify"
)

var tokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// TestTokenFormatAndStorage: a link's token is 32 random bytes in
// base64url, and Redis keeps only its SHA-256.
func TestTokenFormatAndStorage(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		f.hold("Dave <dave@other.example>", "m1@other.example")
		token := tokenOf(t, f.deliverOne().Msg)

		if !tokenPattern.MatchString(token) {
			t.Fatalf("token %q is not 43 base64url characters", token)
		}
		raw, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || len(raw) != 32 {
			t.Fatalf("token decodes to %d bytes (%v), want 32", len(raw), err)
		}
		if n := b.RDB.Exists(f.ctx, f.tokenKey(token)).Val(); n != 1 {
			t.Fatalf("no key %s for the token's SHA-256", f.tokenKey(token))
		}
		ttl := b.RDB.TTL(f.ctx, f.tokenKey(token)).Val()
		if ttl < f.cfg.Verify.TTL.D() {
			t.Errorf("token key TTL %v, want at least verify.ttl %v", ttl, f.cfg.Verify.TTL.D())
		}
		// With the mail delivered, the token is nowhere in Redis: not in a
		// key, not in a value.
		for k, v := range dump(t, f.ctx, b.RDB) {
			if strings.Contains(k, token) || strings.Contains(v, token) {
				t.Errorf("raw token found in Redis key %s", k)
			}
		}

		// Two links never share a token.
		f.hold("Erin <erin@other.example>", "m2@other.example")
		if other := tokenOf(t, f.deliverOne().Msg); other == token {
			t.Fatal("two links got the same token")
		}
	})
}

// TestInspectChangesNothing: opening the link (GET) only reads.
func TestInspectChangesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		f.hold("Dave <dave@other.example>", "m1@other.example", "it@example.com", "billing@example.com")
		token := tokenOf(t, f.deliverOne().Msg)

		before := dump(t, f.ctx, b.RDB)
		for range 3 {
			p, err := f.svc.Inspect(f.ctx, token)
			if err != nil {
				t.Fatal(err)
			}
			if p.Address != "dave@other.example" || p.Held != 2 || p.Used ||
				strings.Join(p.Spaces, ",") != "IT help,Billing" {
				t.Fatalf("Inspect = %+v", p)
			}
		}
		sameDump(t, "Inspect", before, dump(t, f.ctx, b.RDB))
		if s := f.status("dave@other.example"); s != identify.StatusPending {
			t.Errorf("status %q after Inspect, want pending", s)
		}
		if n := len(f.holds("dave@other.example")); n != 2 {
			t.Errorf("%d holds after Inspect, want 2", n)
		}
	})
}

// TestUnknownToken: tokens that were never issued, of any length, are
// unknown to Inspect and Confirm, and Confirm changes nothing for them.
func TestUnknownToken(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		f.hold("dave@other.example", "m1@other.example")
		token := tokenOf(t, f.deliverOne().Msg)

		var random [32]byte
		_, _ = rand.Read(random[:])
		bad := map[string]string{
			"never issued":       base64.RawURLEncoding.EncodeToString(random[:]),
			"empty":              "",
			"short":              "abc",
			"one short":          token[:42],
			"one long":           token + "A",
			"padded":             base64.URLEncoding.EncodeToString(random[:]),
			"standard alphabet":  strings.NewReplacer("-", "+", "_", "/").Replace(token) + "+",
			"43 non-base64":      strings.Repeat("!", 43),
			"upper-cased":        strings.ToUpper(token),
			"very long":          strings.Repeat("A", 4096),
			"token with a slash": token[:21] + "/" + token[22:],
		}
		before := dump(t, f.ctx, b.RDB)
		for name, tok := range bad {
			if tok == token {
				continue // an all-upper-case token is possible in theory
			}
			if _, err := f.svc.Inspect(f.ctx, tok); !errors.Is(err, verify.ErrUnknownToken) {
				t.Errorf("%s: Inspect error %v, want ErrUnknownToken", name, err)
			}
			if _, ids, err := f.svc.Confirm(f.ctx, tok); !errors.Is(err, verify.ErrUnknownToken) || len(ids) != 0 {
				t.Errorf("%s: Confirm = %v, %v; want ErrUnknownToken", name, ids, err)
			}
		}
		sameDump(t, "unknown tokens", before, dump(t, f.ctx, b.RDB))
	})
}

// TestExpiredToken: at verify.ttl the link stops working and says so,
// rather than being unknown; confirming it changes nothing.
func TestExpiredToken(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		f.hold("dave@other.example", "m1@other.example")
		token := tokenOf(t, f.deliverOne().Msg)

		f.advance(f.cfg.Verify.TTL.D() - time.Second)
		if _, err := f.svc.Inspect(f.ctx, token); err != nil {
			t.Fatalf("a second before expiry: %v", err)
		}
		f.advance(time.Second)
		if _, err := f.svc.Inspect(f.ctx, token); !errors.Is(err, verify.ErrExpired) {
			t.Fatalf("Inspect at expiry: %v, want ErrExpired", err)
		}
		before := dump(t, f.ctx, b.RDB)
		if _, ids, err := f.svc.Confirm(f.ctx, token); !errors.Is(err, verify.ErrExpired) || len(ids) != 0 {
			t.Fatalf("Confirm at expiry = %v, %v; want ErrExpired", ids, err)
		}
		sameDump(t, "Confirm of an expired link", before, dump(t, f.ctx, b.RDB))
		if s := f.status("dave@other.example"); s != identify.StatusPending {
			t.Errorf("status %q, want pending", s)
		}
		// Days later, while its record is kept, the link still says expired.
		f.advance(5 * 24 * time.Hour)
		if _, err := f.svc.Inspect(f.ctx, token); !errors.Is(err, verify.ErrExpired) {
			t.Fatalf("Inspect 5 days after expiry: %v, want ErrExpired", err)
		}
	})
}

// TestConfirmOnce: Confirm activates and queues; a second Confirm queues
// nothing new and reports Used; a used link keeps saying so after the TTL.
func TestConfirmOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		f.hold("Dave <dave@other.example>", "m1@other.example")
		token := tokenOf(t, f.deliverOne().Msg)

		p, ids, err := f.svc.Confirm(f.ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		if p.Used || p.Address != "dave@other.example" || len(ids) != 1 || ids[0] != "IT-1" ||
			strings.Join(p.Spaces, ",") != "IT help" {
			t.Fatalf("first Confirm = %+v, %v", p, ids)
		}
		if s := f.status("dave@other.example"); s != identify.StatusActive {
			t.Fatalf("status %q, want active", s)
		}
		if p, err := f.svc.Inspect(f.ctx, token); err != nil || !p.Used {
			t.Fatalf("Inspect after Confirm = %+v, %v; want Used", p, err)
		}

		before := dump(t, f.ctx, b.RDB)
		p, ids, err = f.svc.Confirm(f.ctx, token)
		if err != nil || !p.Used || len(ids) != 0 {
			t.Fatalf("second Confirm = %+v, %v, %v; want Used and nothing queued", p, ids, err)
		}
		sameDump(t, "second Confirm", before, dump(t, f.ctx, b.RDB))
		if n := len(f.stream("IT")); n != 1 {
			t.Fatalf("%d stream entries, want 1", n)
		}

		f.advance(f.cfg.Verify.TTL.D() + time.Hour)
		if p, err := f.svc.Inspect(f.ctx, token); err != nil || !p.Used {
			t.Fatalf("used link after the TTL: %+v, %v; want Used", p, err)
		}
	})
}

// TestConfirmKeepsDisabledAccountDisabled: an administrator who disables
// an account means it. Neither a used link pressed again nor the unused
// link of a pending account the administrator disabled may reactivate it.
func TestConfirmKeepsDisabledAccountDisabled(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})

		t.Run("used link", func(t *testing.T) {
			f.hold("dave@other.example", "m1@other.example")
			token := tokenOf(t, f.deliverOne().Msg)
			if _, _, err := f.svc.Confirm(f.ctx, token); err != nil {
				t.Fatal(err)
			}
			if err := f.dir.SetStatus(f.ctx, "dave@other.example", identify.StatusDisabled); err != nil {
				t.Fatal(err)
			}
			_, ids, _ := f.svc.Confirm(f.ctx, token)
			if s := f.status("dave@other.example"); s != identify.StatusDisabled || len(ids) != 0 {
				t.Errorf("after pressing a used link again: status %q, queued %v; want disabled, nothing", s, ids)
			}
		})
		t.Run("pending account disabled", func(t *testing.T) {
			f.hold("erin@other.example", "m2@other.example")
			token := tokenOf(t, f.deliverOne().Msg)
			if err := f.dir.SetStatus(f.ctx, "erin@other.example", identify.StatusDisabled); err != nil {
				t.Fatal(err)
			}
			_, ids, _ := f.svc.Confirm(f.ctx, token)
			if s := f.status("erin@other.example"); s != identify.StatusDisabled || len(ids) != 0 {
				t.Errorf("after confirming: status %q, queued %v; want disabled, nothing", s, ids)
			}
		})
	})
}
