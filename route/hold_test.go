package route

import (
	"reflect"
	"testing"
	"time"
)

func TestHold(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, rdb, st := testCtx(t), b.rdb, newTestStore(b.rdb)
		const sender = "new@example.org"

		if hs, err := st.Holds(ctx, sender); err != nil || len(hs) != 0 {
			t.Fatalf("Holds before any hold = %v, %v; want none", hs, err)
		}

		r1 := sampleRequest("IT", "h1@example.com", sender)
		r1.Raw = []byte("Subject: x\r\n\r\n\x00\x01\xff\xfe\xc3\x28 not UTF-8 \xed\xa0\x80\x00")
		r1.Fields = append(r1.Fields, Field{"subject_tail", "ünïcödé ✓ \u2028 <>&"})
		h1 := Held{
			Request: r1, Sender: sender, HeldAt: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
			Channel: "smtp", Subject: "Drucker ✓", Reason: "pending_verification", Received: "2024-05-06T07:08:09Z",
		}
		if dup, err := st.Hold(ctx, h1); err != nil || dup {
			t.Fatalf("Hold = %v, %v; want stored", dup, err)
		}
		// The same message again, say a redelivery, is a duplicate.
		if dup, err := st.Hold(ctx, h1); err != nil || !dup {
			t.Fatalf("second Hold of the same Message-ID = %v, %v; want duplicate", dup, err)
		}
		h2 := Held{Request: sampleRequest("IT", "h2@example.com", sender), Sender: sender, HeldAt: h1.HeldAt.Add(time.Minute), Channel: "imap"}
		h2.Raw = nil
		if dup, err := st.Hold(ctx, h2); err != nil || dup {
			t.Fatalf("Hold of a second message = %v, %v; want stored", dup, err)
		}
		// The same Message-ID held for another space is another hold.
		h3 := Held{Request: sampleRequest("BILL", "h1@example.com", sender), Sender: sender, HeldAt: h1.HeldAt}
		if dup, err := st.Hold(ctx, h3); err != nil || dup {
			t.Fatalf("Hold in another space = %v, %v; want stored", dup, err)
		}

		hs, err := st.Holds(ctx, sender)
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) != 3 {
			t.Fatalf("Holds = %d items, want 3", len(hs))
		}
		for i, want := range []Held{h1, h2, h3} {
			got := hs[i]
			if string(got.Raw) != string(want.Raw) {
				t.Errorf("hold %d: Raw = %q, want %q", i, got.Raw, want.Raw)
			}
			if !got.HeldAt.Equal(want.HeldAt) {
				t.Errorf("hold %d: HeldAt = %v, want %v", i, got.HeldAt, want.HeldAt)
			}
			got.HeldAt, want.HeldAt = time.Time{}, time.Time{}
			if len(got.Raw) == 0 && len(want.Raw) == 0 {
				got.Raw, want.Raw = nil, nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("hold %d round trip:\n got %+v\nwant %+v", i, got, want)
			}
		}
		if hs, err := st.Holds(ctx, "other@example.org"); err != nil || len(hs) != 0 {
			t.Errorf("Holds of another sender = %v, %v; want none", hs, err)
		}

		hk := testPrefix + "hold:" + sender
		checkTTL(t, rdb, hk, testHoldTTL)
		mk := msgKeyOf(testPrefix, "IT", "h1@example.com")
		if got := getOr(t, rdb, mk); got != "held" {
			t.Errorf("Message-ID key of a held message = %q, want held", got)
		}
		checkTTL(t, rdb, mk, testRetention)

		// A message already queued is not held again.
		q := sampleRequest("IT", "queued@example.com", sender)
		mustWrite(t, st, q)
		if dup, err := st.Hold(ctx, Held{Request: q, Sender: sender}); err != nil || !dup {
			t.Errorf("Hold of a queued message = %v, %v; want duplicate", dup, err)
		}
		if hs, _ := st.Holds(ctx, sender); len(hs) != 3 {
			t.Errorf("Holds = %d items after a duplicate hold, want 3", len(hs))
		}
	})
}
