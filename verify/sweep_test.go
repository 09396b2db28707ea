package verify_test

import (
	"errors"
	"testing"
	"time"

	"mailgw/identify"
	"mailgw/internal/testkit"
	"mailgw/verify"
)

func (f *fixture) sweep() int {
	f.t.Helper()
	n, err := f.svc.Sweep(f.ctx)
	if err != nil {
		f.t.Fatalf("Sweep: %v", err)
	}
	return n
}

// TestSweepNeverConfirmed: at expiry every held request of a sender who
// never confirmed is dropped and logged, the pending account removed, and
// the sender's next mail starts over with a new link.
func TestSweepNeverConfirmed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		const dave = "dave@other.example"
		f.hold(dave, "m1@other.example", "it@example.com", "billing@example.com")
		f.hold(dave, "m2@other.example")
		old := tokenOf(t, f.deliverOne().Msg)

		f.advance(f.cfg.Verify.TTL.D() - time.Minute)
		if n := f.sweep(); n != 0 {
			t.Fatalf("Sweep settled %d addresses before expiry", n)
		}
		if n := len(f.holds(dave)); n != 3 {
			t.Fatalf("%d holds before expiry, want 3", n)
		}
		f.advance(time.Minute)
		if n := f.sweep(); n != 1 {
			t.Fatalf("Sweep settled %d addresses, want 1", n)
		}
		if n := len(f.holds(dave)); n != 0 {
			t.Fatalf("%d holds after expiry", n)
		}
		if s := f.status(dave); s != "" {
			t.Fatalf("account still there, %s", s)
		}
		logged := f.logEntries(verify.ReasonExpired)
		if len(logged) != 3 {
			t.Fatalf("%d verification_expired entries, want 3: %+v", len(logged), logged)
		}
		want := []struct{ space, id string }{{"IT", "m1@other.example"}, {"BILL", "m1@other.example"}, {"IT", "m2@other.example"}}
		for i, e := range logged {
			if e.Space != want[i].space || e.MessageID != want[i].id || e.From != dave || e.Outcome != string(identify.Ignored) || e.Request != "" {
				t.Errorf("entry %d: %+v, want %s %s", i, e, want[i].space, want[i].id)
			}
		}
		for _, space := range []string{"IT", "BILL"} {
			if n := len(f.stream(space)); n != 0 {
				t.Fatalf("%d entries on %s", n, space)
			}
		}
		if n := f.sweep(); n != 0 {
			t.Fatalf("a second sweep settled %d", n)
		}
		if _, ids, err := f.svc.Confirm(f.ctx, old); !errors.Is(err, verify.ErrExpired) || len(ids) != 0 {
			t.Fatalf("Confirm of the old link after the sweep = %v, %v; want ErrExpired", ids, err)
		}

		// The next mail starts over.
		f.hold(dave, "m3@other.example")
		if s := f.status(dave); s != identify.StatusPending {
			t.Fatalf("status %q, want pending", s)
		}
		fresh := tokenOf(t, f.deliverOne().Msg)
		if fresh == old {
			t.Fatal("the new mail reuses the old link")
		}
		_, ids, err := f.svc.Confirm(f.ctx, fresh)
		if err != nil || len(ids) != 1 || ids[0] != "IT-1" {
			t.Fatalf("Confirm = %v, %v; want IT-1", ids, err)
		}
		if e := f.stream("IT"); len(e) != 1 || field(e[0], "message_id") != "m3@other.example" {
			t.Fatalf("stream %v, want m3 only", e)
		}
	})
}

// TestSweepReleasesLateHold: a message held while the confirmation ran
// (ingest saw the account still pending) is queued by the sweep.
func TestSweepReleasesLateHold(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		const dave = "dave@other.example"
		f.hold(dave, "m1@other.example")
		token := tokenOf(t, f.deliverOne().Msg)

		// Ingest decides on the pending account, then Confirm runs, then
		// ingest holds.
		if _, ids, err := f.svc.Confirm(f.ctx, token); err != nil || len(ids) != 1 {
			t.Fatalf("Confirm = %v, %v", ids, err)
		}
		if err := f.dir.SetStatus(f.ctx, dave, identify.StatusPending); err != nil {
			t.Fatal(err)
		}
		f.hold(dave, "late@other.example")
		if err := f.dir.SetStatus(f.ctx, dave, identify.StatusActive); err != nil {
			t.Fatal(err)
		}

		f.advance(time.Hour)
		f.sweep()
		if n := len(f.holds(dave)); n != 1 {
			t.Fatalf("%d holds before expiry, want 1", n)
		}
		f.advance(f.cfg.Verify.TTL.D())
		if n := f.sweep(); n != 1 {
			t.Fatalf("Sweep settled %d, want 1", n)
		}
		if n := len(f.holds(dave)); n != 0 {
			t.Fatalf("%d holds left", n)
		}
		e := f.stream("IT")
		if len(e) != 2 || field(e[1], "message_id") != "late@other.example" || field(e[1], "new_customer") != "true" || field(e[1], "id") != "IT-2" {
			t.Fatalf("stream %v, want the late message as IT-2", e)
		}
		logged := f.logEntries(string(identify.ReasonAcceptedNewCustomer))
		if len(logged) != 2 || logged[1].Request != "IT-2" || logged[1].Detail != "released by the expiry sweep" {
			t.Fatalf("log %+v", logged)
		}
		if s := f.status(dave); s != identify.StatusActive {
			t.Fatalf("status %q, want active", s)
		}
		if len(f.logEntries(verify.ReasonExpired)) != 0 {
			t.Fatal("a confirmed sender's hold was logged as expired")
		}
	})
}

// TestSweepDisabledPending: a pending account the administrator disabled
// never verified either: at expiry its held requests are dropped and
// logged, not left to vanish with the hold list's TTL.
func TestSweepDisabledPending(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		f := newFixture(t, b, fixtureOptions{})
		const dave = "dave@other.example"
		f.hold(dave, "m1@other.example")
		f.deliverOne()
		if err := f.dir.SetStatus(f.ctx, dave, identify.StatusDisabled); err != nil {
			t.Fatal(err)
		}
		f.advance(f.cfg.Verify.TTL.D())
		f.sweep()
		if n := len(f.holds(dave)); n != 0 {
			t.Errorf("%d holds of a disabled, never confirmed sender left after expiry", n)
		}
		if n := len(f.logEntries(verify.ReasonExpired)); n != 1 {
			t.Errorf("%d verification_expired entries, want 1", n)
		}
		if n := len(f.stream("IT")); n != 0 {
			t.Errorf("%d requests queued for a disabled sender", n)
		}
		if s := f.status(dave); s != identify.StatusDisabled {
			t.Errorf("status %q: the administrator's decision must stay", s)
		}
	})
}
