package route

import (
	"fmt"
	"testing"
)

func TestLookup(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, st := testCtx(t), newTestStore(b.rdb)
		// IT-1 by alice with Cc cc1, cc2; IT-2 by bob; BILL-1 by alice;
		// a held message in IT.
		mustWrite(t, st, sampleRequest("IT", "m1@example.com", "alice@example.com"))
		mustWrite(t, st, sampleRequest("IT", "m2@example.com", "bob@example.com"))
		mustWrite(t, st, sampleRequest("BILL", "b1@example.com", "alice@example.com"))
		held := sampleRequest("IT", "held@example.com", "new@example.org")
		if dup, err := st.Hold(ctx, Held{Request: held, Sender: "new@example.org"}); err != nil || dup {
			t.Fatalf("Hold = %v, %v", dup, err)
		}

		unknown := func(n int) []string {
			out := make([]string, n)
			for i := range out {
				out[i] = fmt.Sprintf("unknown-%d@example.com", i)
			}
			return out
		}
		with := func(list []string, i int, id string) []string { list[i] = id; return list }

		for _, tc := range []struct {
			name            string
			space, mid      string
			parents         []string
			subject, sender string
			want            Seen
		}{
			{"new message", "IT", "new@example.com", nil, "printer", "alice@example.com", Seen{}},
			{"queued duplicate", "IT", "m1@example.com", nil, "", "alice@example.com", Seen{Duplicate: true, DuplicateOf: "IT-1"}},
			{"duplicate wins over thread", "IT", "m2@example.com", []string{"m1@example.com"}, "[IT-1]", "alice@example.com", Seen{Duplicate: true, DuplicateOf: "IT-2"}},
			{"held duplicate", "IT", "held@example.com", nil, "", "new@example.org", Seen{Duplicate: true}},
			{"dedupe is per space", "BILL", "m1@example.com", nil, "", "alice@example.com", Seen{}},

			{"In-Reply-To", "IT", "r1", []string{"m1@example.com"}, "Re: printer", "alice@example.com", Seen{ThreadRequest: "IT-1", Participant: true}},
			{"In-Reply-To, Cc participant", "IT", "r1", []string{"m1@example.com"}, "", "cc2@example.org", Seen{ThreadRequest: "IT-1", Participant: true}},
			{"In-Reply-To, stranger", "IT", "r1", []string{"m1@example.com"}, "", "mallory@example.com", Seen{ThreadRequest: "IT-1"}},
			{"In-Reply-To, no sender", "IT", "r1", []string{"m1@example.com"}, "", "", Seen{ThreadRequest: "IT-1"}},
			{"In-Reply-To of another request's requester", "IT", "r1", []string{"m2@example.com"}, "", "alice@example.com", Seen{ThreadRequest: "IT-2"}},
			{"References", "IT", "r2", []string{"unknown-a", "unknown-b", "m2@example.com", "m1@example.com"}, "", "bob@example.com", Seen{ThreadRequest: "IT-2", Participant: true}},
			{"first known parent wins", "IT", "r2", []string{"m1@example.com", "m2@example.com"}, "", "bob@example.com", Seen{ThreadRequest: "IT-1"}},
			{"held parent names no request", "IT", "r3", []string{"held@example.com"}, "", "new@example.org", Seen{}},
			{"held parent skipped", "IT", "r3", []string{"held@example.com", "m2@example.com"}, "", "bob@example.com", Seen{ThreadRequest: "IT-2", Participant: true}},
			{"parent of another space", "BILL", "r4", []string{"m1@example.com"}, "", "alice@example.com", Seen{}},
			{"unknown parents", "IT", "r5", unknown(5), "", "alice@example.com", Seen{}},

			{"subject tag", "IT", "s1", nil, "Re: [IT-1] printer", "alice@example.com", Seen{ThreadRequest: "IT-1", Participant: true}},
			{"subject tag, stranger", "IT", "s1", nil, "[IT-2]", "alice@example.com", Seen{ThreadRequest: "IT-2"}},
			{"subject tag of a missing request", "IT", "s2", nil, "Re: [IT-99] printer", "alice@example.com", Seen{}},
			{"subject tag of another space", "IT", "s3", nil, "Re: [BILL-1] invoice", "alice@example.com", Seen{}},
			{"subject tag of own space", "BILL", "s3", nil, "Re: [BILL-1] invoice", "alice@example.com", Seen{ThreadRequest: "BILL-1", Participant: true}},
			{"parent wins over subject tag", "IT", "s4", []string{"m1@example.com"}, "[IT-2]", "bob@example.com", Seen{ThreadRequest: "IT-1"}},
			{"subject tag when parents unknown", "IT", "s5", unknown(3), "[IT-2]", "bob@example.com", Seen{ThreadRequest: "IT-2", Participant: true}},

			{"60 parents, match in the first 50", "IT", "t1", with(unknown(60), 49, "m1@example.com"), "", "alice@example.com", Seen{ThreadRequest: "IT-1", Participant: true}},
			{"60 parents, match beyond 50 ignored", "IT", "t2", with(unknown(60), 55, "m1@example.com"), "", "alice@example.com", Seen{}},
			{"1000 parents", "IT", "t3", with(unknown(1000), 0, "m2@example.com"), "", "bob@example.com", Seen{ThreadRequest: "IT-2", Participant: true}},
		} {
			got, err := st.Lookup(ctx, tc.space, tc.mid, tc.parents, tc.subject, tc.sender)
			if err != nil {
				t.Errorf("%s: Lookup: %v", tc.name, err)
				continue
			}
			if got != tc.want {
				t.Errorf("%s: Lookup = %+v, want %+v", tc.name, got, tc.want)
			}
		}
	})
}
