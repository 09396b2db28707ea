package route

import (
	"strings"
	"testing"

	"mailgw/config"
)

func testSpaces() []config.Space {
	return []config.Space{
		{Key: "IT", Name: "IT help", Addresses: []string{"it@example.com", "Help@Example.COM"}, ChannelAccess: config.ChannelOpen},
		// A tag on a configured address does not matter: billing+x@ is billing@.
		{Key: "BILL", Name: "Billing", Addresses: []string{"billing+inbox@example.com"}, ChannelAccess: config.ChannelRestricted},
		// An IDN domain is configured in Unicode, a local part with a
		// non-ASCII letter in NFC.
		{Key: "DE", Name: "Bücher", Addresses: []string{"support@Bücher.example", "café@example.com"}},
	}
}

func TestRoute(t *testing.T) {
	r, err := NewRouter(testSpaces())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rcpt, want string // want "" means no route
	}{
		{"it@example.com", "IT"},
		{"IT@EXAMPLE.COM", "IT"},
		{"It@Example.Com", "IT"},
		{"<it@example.com>", "IT"},
		{" it@example.com ", "IT"},
		{"it@example.com.", "IT"}, // absolute domain
		{"it+urgent@example.com", "IT"},
		{"IT+Urgent@Example.com", "IT"},
		{"it+@example.com", "IT"},
		{"it+a+b@example.com", "IT"},
		{`"it"@example.com`, "IT"}, // needless quoting names the same mailbox
		{"help@example.com", "IT"},
		{"help+x@EXAMPLE.com", "IT"},
		{"billing@example.com", "BILL"},
		{"billing+inbox@example.com", "BILL"},
		{"Billing+other@example.com", "BILL"},
		{"support@bücher.example", "DE"},
		{"support@BÜCHER.EXAMPLE", "DE"},
		{"support@xn--bcher-kva.example", "DE"},
		{"SUPPORT+tag@XN--BCHER-KVA.example", "DE"},
		{"café@example.com", "DE"},
		{"CAFÉ@example.com", "DE"},
		{"cafe\u0301@example.com", "DE"}, // decomposed é normalizes to NFC

		{"other@example.com", ""},
		{"it@example.org", ""},
		{"it@sub.example.com", ""},
		{"it@example.com.evil", ""},
		{"xit@example.com", ""},
		{"it.x@example.com", ""},
		{"it-urgent@example.com", ""},
		{"support@bucher.example", ""},
		{"cafe@example.com", ""},
		{"it%other@example.com", ""},
		{`"it@example.com"@example.com`, ""},
		{"@it@example.com", ""},
		{"it@example.com@evil.example", ""},
		{"", ""},
		{"   ", ""},
		{"<>", ""},
		{"it", ""},
		{"it@", ""},
		{"@example.com", ""},
		{"it\x00@example.com", ""},
		{"it\xff@example.com", ""},
		{"it @example.com", ""},
		{"it@exa mple.com", ""},
		{strings.Repeat("a", 600) + "@example.com", ""},
	} {
		s, ok := r.Route(tc.rcpt)
		if ok != (tc.want != "") || s.Key != tc.want {
			t.Errorf("Route(%q) = %q, %v; want %q", tc.rcpt, s.Key, ok, tc.want)
		}
		if ok {
			want := testSpaces()
			for _, w := range want {
				if w.Key == s.Key && w.Name != s.Name {
					t.Errorf("Route(%q) returned space %+v, want the configured %+v", tc.rcpt, s, w)
				}
			}
		}
	}
}

func TestIsSupportAddress(t *testing.T) {
	r, err := NewRouter(testSpaces())
	if err != nil {
		t.Fatal(err)
	}
	// IsSupportAddress takes normalized addresses.
	for addr, want := range map[string]bool{
		"it@example.com":                  true,
		"it+tag@example.com":              true,
		"help@example.com":                true,
		"billing@example.com":             true,
		"billing+inbox@example.com":       true,
		"billing+other@example.com":       true,
		"support@xn--bcher-kva.example":   true,
		"support+x@xn--bcher-kva.example": true,
		"café@example.com":                true,
		"alice@example.com":               false,
		"it@example.org":                  false,
		"it.support@example.com":          false,
		"":                                false,
		"it":                              false,
	} {
		if got := r.IsSupportAddress(addr); got != want {
			t.Errorf("IsSupportAddress(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestNewRouterBadAddress(t *testing.T) {
	for _, addr := range []string{"not an address", "", "it@", "@example.com"} {
		_, err := NewRouter([]config.Space{
			{Key: "IT", Addresses: []string{"it@example.com"}},
			{Key: "OPS", Addresses: []string{addr}},
		})
		if err == nil {
			t.Errorf("NewRouter with address %q: no error", addr)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "route: ") || !strings.Contains(msg, "OPS") {
			t.Errorf("NewRouter with address %q: error %q should start with \"route: \" and name space OPS", addr, msg)
		}
	}
}

func TestRouterEmpty(t *testing.T) {
	r, err := NewRouter(nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := r.Route("it@example.com"); ok {
		t.Errorf("empty router routed to %+v", s)
	}
	if r.IsSupportAddress("it@example.com") {
		t.Error("empty router has a support address")
	}
}

func TestSubjectTag(t *testing.T) {
	for _, tc := range []struct {
		subject, space, want string
	}{
		{"[IT-1] printer", "IT", "IT-1"},
		{"Re: RE: AW: [IT-42] printer", "IT", "IT-42"},
		{"printer [IT-7]", "IT", "IT-7"},
		{"Ärger mit dem Drucker [IT-5] ✓", "IT", "IT-5"},
		{"[IT-2][IT-3]", "IT", "IT-2"},                             // the first one
		{"[BILL-1] and [IT-7]", "IT", "IT-7"},                      // skip other spaces' tags
		{"[BILL-1] and [IT-7]", "BILL", "BILL-1"},                  //
		{"[BILL-1]", "IT", ""},                                     // another space's tag
		{"[IT_OPS-3] vpn", "IT_OPS", "IT_OPS-3"},                   // keys may hold _ and digits
		{"[IT2-3] vpn", "IT2", "IT2-3"},                            //
		{"[IT2-3] vpn", "IT", ""},                                  // a longer key is another space
		{"[ITX-1]", "IT", ""},                                      //
		{"[XIT-1]", "IT", ""},                                      //
		{"[IT-1]", "I", ""},                                        //
		{"[IT-123456789012345678]", "IT", "IT-123456789012345678"}, // 18 digits
		{"[IT-1234567890123456789]", "IT", ""},                     // 19 digits overflow int64
		{"[it-1]", "IT", ""},                                       // keys are upper case
		{"[It-1]", "IT", ""},                                       //
		{"[IT-0]", "IT", ""},                                       // ids start at 1
		{"[IT-01]", "IT", ""},                                      // no leading zeros
		{"[IT--1]", "IT", ""},                                      //
		{"[IT-1a]", "IT", ""},                                      //
		{"[IT-]", "IT", ""},                                        //
		{"[IT 1]", "IT", ""},                                       //
		{"[ IT-1 ]", "IT", ""},                                     //
		{"IT-1", "IT", ""},                                         // brackets required
		{"[IT-1", "IT", ""},                                        //
		{"IT-1]", "IT", ""},                                        //
		{"(IT-1)", "IT", ""},                                       //
		{"[[IT-9]]", "IT", "IT-9"},
		{"", "IT", ""},
		{"[IT-1]", "", ""},
	} {
		if got := SubjectTag(tc.subject, tc.space); got != tc.want {
			t.Errorf("SubjectTag(%q, %q) = %q, want %q", tc.subject, tc.space, got, tc.want)
		}
	}
}

func FuzzSubjectTag(f *testing.F) {
	for _, s := range []string{"[IT-1] x", "Re: [BILL-22]", "[IT-0]", "[[IT-3]]", "\xff[IT-4]"} {
		f.Add(s, "IT")
	}
	f.Fuzz(func(t *testing.T, subject, space string) {
		got := SubjectTag(subject, space)
		if got == "" {
			return
		}
		if !strings.HasPrefix(got, space+"-") || !strings.Contains(subject, "["+got+"]") {
			t.Fatalf("SubjectTag(%q, %q) = %q, which is not a [%s-N] tag of the subject", subject, space, got, space)
		}
	})
}
