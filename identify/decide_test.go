package identify

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"mailgw/config"
	"mailgw/parse"
)

// The site used by the policy tests. Domains:
//
//	example.com      internal
//	both.example     internal and listed external (internal wins)
//	listed.example   listed external
//	linked.example   domain of the organization linked to the space (not listed)
//	other.example    nothing
//	monitor.example  automated_allowed
//	spam.example     blocked domain; *.bad.example blocked tree; blocked@example.com blocked address
var testAccess = config.Access{
	InternalDomains:  []string{"example.com", "both.example"},
	ExternalAccounts: config.ExternalListedDomains,
	ExternalDomains:  []string{"listed.example", "both.example"},
	Signup:           config.SignupVerify,
	Blocked:          []string{"spam.example", "*.bad.example", "blocked@example.com"},
	AutomatedAllowed: []string{"monitor.example"},
}

func settings(t *testing.T, a config.Access) *Settings {
	t.Helper()
	s, err := NewSettings(a)
	if err != nil {
		t.Fatalf("NewSettings(%+v): %v", a, err)
	}
	return s
}

func withAccess(mod func(*config.Access)) config.Access {
	a := testAccess
	a.InternalDomains = slices.Clone(a.InternalDomains)
	a.ExternalDomains = slices.Clone(a.ExternalDomains)
	a.Blocked = slices.Clone(a.Blocked)
	a.AutomatedAllowed = slices.Clone(a.AutomatedAllowed)
	if mod != nil {
		mod(&a)
	}
	return a
}

func active(typ string) *Customer {
	return &Customer{Email: "x", Type: typ, Status: StatusActive}
}

func pending(typ string) *Customer {
	return &Customer{Email: "x", Type: typ, Status: StatusPending}
}

func disabled(typ string) *Customer {
	return &Customer{Email: "x", Type: typ, Status: StatusDisabled}
}

// want is the part of a Decision the tests pin (Detail is free text).
type want struct {
	Outcome     Outcome
	Reason      Reason
	Request     string
	AccountType string
	NewCustomer bool
}

func (w want) String() string {
	return fmt.Sprintf("%s/%s request=%q type=%q new=%v", w.Outcome, w.Reason, w.Request, w.AccountType, w.NewCustomer)
}

func got(d Decision) want {
	return want{d.Outcome, d.Reason, d.Request, d.AccountType, d.NewCustomer}
}

func TestDecideRows(t *testing.T) {
	open := Space{Key: "IT"}
	restricted := Space{Key: "IT", Restricted: true}
	unknown := func(addr string) Sender { return Sender{Address: addr} }

	tests := []struct {
		name   string
		access config.Access // zero: testAccess
		facts  Facts
		sender Sender
		space  Space
		want   want
	}{
		// Row 1.
		{name: "1/too large", facts: Facts{Problem: parse.ProblemTooLarge, ProblemWhy: "over 25 MiB"},
			sender: Sender{Address: "agent@example.com", Agent: true}, space: open,
			want: want{Outcome: Rejected, Reason: ReasonTooLarge}},
		{name: "1/malformed", facts: Facts{Problem: parse.ProblemMalformed},
			sender: unknown("a@example.com"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonMalformed}},
		{name: "1/no usable From is malformed", facts: Facts{},
			sender: unknown(""), space: open,
			want: want{Outcome: Rejected, Reason: ReasonMalformed}},
		{name: "1/problem before machine mail", facts: Facts{Problem: parse.ProblemTooLarge, Machine: parse.MachineBounce},
			sender: unknown("mailer-daemon@other.example"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonTooLarge}},
		{name: "1/problem before block list", facts: Facts{Problem: parse.ProblemMalformed},
			sender: unknown("x@spam.example"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonMalformed}},

		// Row 2: each kind, from an ordinary sender and from an agent.
		{name: "2/auto_reply", facts: Facts{Machine: parse.MachineAutoReply},
			sender: Sender{Address: "carol@example.com", Customer: active(TypeInternal)}, space: open,
			want: want{Outcome: Ignored, Reason: ReasonAutoReply}},
		{name: "2/bounce", facts: Facts{Machine: parse.MachineBounce},
			sender: unknown("mailer-daemon@other.example"), space: open,
			want: want{Outcome: Ignored, Reason: ReasonBounce}},
		{name: "2/bulk", facts: Facts{Machine: parse.MachineBulk},
			sender: unknown("news@listed.example"), space: open,
			want: want{Outcome: Ignored, Reason: ReasonBulk}},
		{name: "2/loop", facts: Facts{Machine: parse.MachineLoop},
			sender: unknown("support@example.com"), space: open,
			want: want{Outcome: Ignored, Reason: ReasonLoop}},
		{name: "2/agent's auto-reply", facts: Facts{Machine: parse.MachineAutoReply},
			sender: Sender{Address: "agent@example.com", Agent: true}, space: open,
			want: want{Outcome: Ignored, Reason: ReasonAutoReply}},
		{name: "2/machine mail before block list", facts: Facts{Machine: parse.MachineBounce},
			sender: unknown("x@spam.example"), space: open,
			want: want{Outcome: Ignored, Reason: ReasonBounce}},
		{name: "2/machine mail before duplicate", facts: Facts{Machine: parse.MachineBulk, Duplicate: true, DuplicateOf: "IT-1"},
			sender: unknown("x@other.example"), space: open,
			want: want{Outcome: Ignored, Reason: ReasonBulk}},
		// automated_allowed exempts auto-replies and bulk mail ...
		{name: "2/automated_allowed auto_reply is processed", facts: Facts{Machine: parse.MachineAutoReply},
			sender: unknown("alerts@monitor.example"), space: open,
			access: withAccess(func(a *config.Access) { a.ExternalAccounts = config.ExternalAnyone; a.Signup = config.SignupOpen }),
			want:   want{Outcome: Queued, Reason: ReasonAcceptedNewCustomer, AccountType: TypePortal, NewCustomer: true}},
		{name: "2/automated_allowed bulk is processed", facts: Facts{Machine: parse.MachineBulk},
			sender: Sender{Address: "alerts@monitor.example", Customer: active(TypePortal)}, space: open,
			want: want{Outcome: Queued, Reason: ReasonAccepted, AccountType: TypePortal}},
		{name: "2/automated_allowed exemption goes on through the table", facts: Facts{Machine: parse.MachineBulk},
			sender: unknown("alerts@monitor.example"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonDomainNotAllowed}},
		// ... but never bounces or loops.
		{name: "2/automated_allowed bounce is ignored", facts: Facts{Machine: parse.MachineBounce},
			sender: Sender{Address: "alerts@monitor.example", Customer: active(TypePortal)}, space: open,
			want: want{Outcome: Ignored, Reason: ReasonBounce}},
		{name: "2/automated_allowed loop is ignored", facts: Facts{Machine: parse.MachineLoop},
			sender: Sender{Address: "alerts@monitor.example", Customer: active(TypePortal)}, space: open,
			want: want{Outcome: Ignored, Reason: ReasonLoop}},
		{name: "2/automated_allowed is not a block-list exemption", facts: Facts{Machine: parse.MachineAutoReply},
			sender: unknown("alerts@monitor.example"), space: open,
			access: withAccess(func(a *config.Access) { a.Blocked = append(a.Blocked, "alerts@monitor.example") }),
			want:   want{Outcome: Rejected, Reason: ReasonBlockedSender}},

		// Row 3.
		{name: "3/address", sender: unknown("blocked@example.com"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonBlockedSender}},
		{name: "3/address does not block its domain", sender: unknown("someone@example.com"), space: open,
			want: want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypeInternal, NewCustomer: true}},
		{name: "3/domain", sender: unknown("x@spam.example"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonBlockedSender}},
		{name: "3/domain entry is exact", sender: unknown("x@sub.spam.example"), space: open,
			access: withAccess(func(a *config.Access) { a.ExternalAccounts = config.ExternalAnyone }),
			want:   want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypePortal, NewCustomer: true}},
		{name: "3/wildcard bare domain", sender: unknown("x@bad.example"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonBlockedSender}},
		{name: "3/wildcard subdomain", sender: unknown("x@mx.bad.example"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonBlockedSender}},
		{name: "3/wildcard deep subdomain", sender: unknown("x@a.b.c.bad.example"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonBlockedSender}},
		{name: "3/wildcard lookalike suffix", sender: unknown("x@notbad.example"), space: open,
			access: withAccess(func(a *config.Access) { a.ExternalAccounts = config.ExternalAnyone }),
			want:   want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypePortal, NewCustomer: true}},
		{name: "3/wildcard is no suffix of a longer domain", sender: unknown("x@bad.example.org"), space: open,
			access: withAccess(func(a *config.Access) { a.ExternalAccounts = config.ExternalAnyone }),
			want:   want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypePortal, NewCustomer: true}},
		{name: "3/agent on the block list", sender: Sender{Address: "blocked@example.com", Agent: true}, space: open,
			want: want{Outcome: Rejected, Reason: ReasonBlockedSender}},
		{name: "3/active customer on the block list", sender: Sender{Address: "x@spam.example", Customer: active(TypePortal), SpaceCustomer: true}, space: open,
			want: want{Outcome: Rejected, Reason: ReasonBlockedSender}},
		{name: "3/blocked before duplicate", facts: Facts{Duplicate: true, DuplicateOf: "IT-1"},
			sender: unknown("x@bad.example"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonBlockedSender}},
		{name: "3/entries are normalized", sender: unknown("x@b.xn--bcher-kva.example"), space: open,
			access: withAccess(func(a *config.Access) { a.Blocked = []string{"*.BÜCHER.Example"} }),
			want:   want{Outcome: Rejected, Reason: ReasonBlockedSender}},
		{name: "3/address entry is normalized", sender: unknown("blocked@example.com"), space: open,
			access: withAccess(func(a *config.Access) { a.Blocked = []string{"Blocked@EXAMPLE.com"} }),
			want:   want{Outcome: Rejected, Reason: ReasonBlockedSender}},

		// Row 5.
		{name: "5/duplicate", facts: Facts{Duplicate: true, DuplicateOf: "IT-7"},
			sender: Sender{Address: "carol@example.com", Customer: active(TypeInternal)}, space: open,
			want: want{Outcome: Ignored, Reason: ReasonDuplicate, Request: "IT-7"}},
		{name: "5/duplicate of a held message", facts: Facts{Duplicate: true},
			sender: unknown("new@example.com"), space: open,
			want: want{Outcome: Ignored, Reason: ReasonDuplicate}},
		{name: "5/duplicate before comment", facts: Facts{Duplicate: true, DuplicateOf: "IT-7", ThreadRequest: "IT-3", ThreadParticipant: true},
			sender: Sender{Address: "agent@example.com", Agent: true}, space: open,
			want: want{Outcome: Ignored, Reason: ReasonDuplicate, Request: "IT-7"}},
		{name: "5/duplicate before the sender's rows", facts: Facts{Duplicate: true, DuplicateOf: "IT-7"},
			sender: Sender{Address: "dan@example.com", Customer: disabled(TypeInternal)}, space: restricted,
			want: want{Outcome: Ignored, Reason: ReasonDuplicate, Request: "IT-7"}},

		// Row 7.
		{name: "7/participant", facts: Facts{ThreadRequest: "IT-3", ThreadParticipant: true},
			sender: Sender{Address: "carol@example.com", Customer: active(TypeInternal)}, space: open,
			want: want{Outcome: Queued, Reason: ReasonComment, Request: "IT-3", AccountType: TypeInternal}},
		{name: "7/portal participant", facts: Facts{ThreadRequest: "IT-3", ThreadParticipant: true},
			sender: Sender{Address: "bob@listed.example", Customer: active(TypePortal)}, space: restricted,
			want: want{Outcome: Queued, Reason: ReasonComment, Request: "IT-3", AccountType: TypePortal}},
		{name: "7/agent who is no participant", facts: Facts{ThreadRequest: "IT-3"},
			sender: Sender{Address: "agent@example.com", Agent: true}, space: restricted,
			want: want{Outcome: Queued, Reason: ReasonComment, Request: "IT-3", AccountType: TypeAgent}},
		{name: "7/unknown participant (cc'd) on an internal domain", facts: Facts{ThreadRequest: "IT-3", ThreadParticipant: true},
			sender: unknown("cc@example.com"), space: open,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupClosed }),
			want:   want{Outcome: Queued, Reason: ReasonComment, Request: "IT-3", AccountType: TypeInternal}},
		{name: "7/unknown participant elsewhere", facts: Facts{ThreadRequest: "IT-3", ThreadParticipant: true},
			sender: unknown("cc@other.example"), space: restricted,
			want: want{Outcome: Queued, Reason: ReasonComment, Request: "IT-3", AccountType: TypePortal}},
		{name: "7/non-participant customer falls through to row 9", facts: Facts{ThreadRequest: "IT-3"},
			sender: Sender{Address: "carol@example.com", Customer: active(TypeInternal)}, space: open,
			want: want{Outcome: Queued, Reason: ReasonAccepted, AccountType: TypeInternal}},
		{name: "7/non-participant unknown falls through to row 13", facts: Facts{ThreadRequest: "IT-3"},
			sender: unknown("x@example.com"), space: restricted,
			want: want{Outcome: Rejected, Reason: ReasonNotSpaceCustomer}},
		{name: "7/non-participant outsider falls through to row 15", facts: Facts{ThreadRequest: "IT-3"},
			sender: unknown("x@other.example"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonDomainNotAllowed}},
		{name: "7/participant without a thread is no comment", facts: Facts{ThreadParticipant: true},
			sender: unknown("x@example.com"), space: open,
			want: want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypeInternal, NewCustomer: true}},

		// Row 8.
		{name: "8/agent", sender: Sender{Address: "agent@example.com", Agent: true}, space: open,
			want: want{Outcome: Queued, Reason: ReasonAccepted, AccountType: TypeAgent}},
		{name: "8/agent in a restricted space, signup closed", sender: Sender{Address: "agent@other.example", Agent: true}, space: restricted,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupClosed; a.ExternalAccounts = config.ExternalNone }),
			want:   want{Outcome: Queued, Reason: ReasonAccepted, AccountType: TypeAgent}},
		{name: "8/agent with a disabled customer account", sender: Sender{Address: "agent@example.com", Agent: true, Customer: disabled(TypeInternal)}, space: open,
			want: want{Outcome: Queued, Reason: ReasonAccepted, AccountType: TypeAgent}},

		// Row 9.
		{name: "9/active customer, open space", sender: Sender{Address: "carol@example.com", Customer: active(TypeInternal)}, space: open,
			want: want{Outcome: Queued, Reason: ReasonAccepted, AccountType: TypeInternal}},
		{name: "9/active portal customer on a domain no longer allowed", sender: Sender{Address: "p@other.example", Customer: active(TypePortal)}, space: open,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupClosed; a.ExternalAccounts = config.ExternalNone }),
			want:   want{Outcome: Queued, Reason: ReasonAccepted, AccountType: TypePortal}},
		{name: "9/active space customer, restricted space", sender: Sender{Address: "p@listed.example", Customer: active(TypePortal), SpaceCustomer: true}, space: restricted,
			want: want{Outcome: Queued, Reason: ReasonAccepted, AccountType: TypePortal}},

		// Row 10.
		{name: "10/active customer, restricted space", sender: Sender{Address: "carol@example.com", Customer: active(TypeInternal)}, space: restricted,
			want: want{Outcome: Rejected, Reason: ReasonNotSpaceCustomer}},
		{name: "10/linked domain is not membership", sender: Sender{Address: "p@linked.example", Customer: active(TypePortal), LinkedOrgDomain: true}, space: restricted,
			want: want{Outcome: Rejected, Reason: ReasonNotSpaceCustomer}},

		// Row 11.
		{name: "11/disabled", sender: Sender{Address: "dan@example.com", Customer: disabled(TypeInternal), SpaceCustomer: true}, space: open,
			want: want{Outcome: Rejected, Reason: ReasonAccountDisabled}},
		{name: "11/disabled, restricted, not a space customer", sender: Sender{Address: "dan@other.example", Customer: disabled(TypePortal)}, space: restricted,
			want: want{Outcome: Rejected, Reason: ReasonAccountDisabled}},

		// Row 12.
		{name: "12/pending", sender: Sender{Address: "pat@example.com", Customer: pending(TypeInternal)}, space: open,
			want: want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypeInternal}},
		{name: "12/pending, signup closed", sender: Sender{Address: "pat@other.example", Customer: pending(TypePortal)}, space: open,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupClosed }),
			want:   want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypePortal}},
		{name: "12/pending space customer, restricted", sender: Sender{Address: "pat@example.com", Customer: pending(TypeInternal), SpaceCustomer: true}, space: restricted,
			want: want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypeInternal}},
		{name: "12/pending on a linked domain, restricted", sender: Sender{Address: "pat@linked.example", Customer: pending(TypePortal), LinkedOrgDomain: true}, space: restricted,
			want: want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypePortal}},
		{name: "12/pending outsider, restricted", sender: Sender{Address: "pat@example.com", Customer: pending(TypeInternal)}, space: restricted,
			want: want{Outcome: Rejected, Reason: ReasonNotSpaceCustomer}},

		// Row 13.
		{name: "13/unknown, restricted", sender: unknown("new@example.com"), space: restricted,
			want: want{Outcome: Rejected, Reason: ReasonNotSpaceCustomer}},
		{name: "13/before signup closed", sender: unknown("new@example.com"), space: restricted,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupClosed }),
			want:   want{Outcome: Rejected, Reason: ReasonNotSpaceCustomer}},
		{name: "13/linked domain passes", sender: Sender{Address: "new@linked.example", LinkedOrgDomain: true}, space: restricted,
			access: withAccess(func(a *config.Access) { a.ExternalDomains = append(a.ExternalDomains, "linked.example") }),
			want:   want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypePortal, NewCustomer: true}},
		{name: "13/listed space customer without an account passes", sender: Sender{Address: "new@example.com", SpaceCustomer: true}, space: restricted,
			want: want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypeInternal, NewCustomer: true}},

		// Row 14.
		{name: "14/signup closed", sender: unknown("new@example.com"), space: open,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupClosed }),
			want:   want{Outcome: Rejected, Reason: ReasonUnknownSender}},
		{name: "14/before the domain check", sender: unknown("new@other.example"), space: open,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupClosed }),
			want:   want{Outcome: Rejected, Reason: ReasonUnknownSender}},

		// Row 15.
		{name: "15/listed_domains, unlisted domain", sender: unknown("new@other.example"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonDomainNotAllowed}},
		{name: "15/none, listed domain", sender: unknown("new@listed.example"), space: open,
			access: withAccess(func(a *config.Access) { a.ExternalAccounts = config.ExternalNone }),
			want:   want{Outcome: Rejected, Reason: ReasonDomainNotAllowed}},
		{name: "15/linked domain must still be allowed", sender: Sender{Address: "new@linked.example", LinkedOrgDomain: true}, space: restricted,
			want: want{Outcome: Rejected, Reason: ReasonDomainNotAllowed}},
		{name: "15/subdomain of an internal domain is not internal", sender: unknown("new@eu.example.com"), space: open,
			want: want{Outcome: Rejected, Reason: ReasonDomainNotAllowed}},

		// Row 16.
		{name: "16/verify, internal", sender: unknown("new@example.com"), space: open,
			want: want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypeInternal, NewCustomer: true}},
		{name: "16/verify, none still admits internal", sender: unknown("new@example.com"), space: open,
			access: withAccess(func(a *config.Access) { a.ExternalAccounts = config.ExternalNone }),
			want:   want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypeInternal, NewCustomer: true}},
		{name: "16/verify, listed", sender: unknown("new@listed.example"), space: open,
			want: want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypePortal, NewCustomer: true}},
		{name: "16/verify, anyone", sender: unknown("new@other.example"), space: open,
			access: withAccess(func(a *config.Access) { a.ExternalAccounts = config.ExternalAnyone }),
			want:   want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypePortal, NewCustomer: true}},
		{name: "16/internal wins over external", sender: unknown("new@both.example"), space: open,
			want: want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypeInternal, NewCustomer: true}},

		// Row 17.
		{name: "17/open, internal", sender: unknown("new@example.com"), space: open,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupOpen }),
			want:   want{Outcome: Queued, Reason: ReasonAcceptedNewCustomer, AccountType: TypeInternal, NewCustomer: true}},
		{name: "17/open, listed", sender: unknown("new@listed.example"), space: open,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupOpen }),
			want:   want{Outcome: Queued, Reason: ReasonAcceptedNewCustomer, AccountType: TypePortal, NewCustomer: true}},
		{name: "17/open, internal wins over external", sender: unknown("new@both.example"), space: open,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupOpen; a.ExternalAccounts = config.ExternalAnyone }),
			want:   want{Outcome: Queued, Reason: ReasonAcceptedNewCustomer, AccountType: TypeInternal, NewCustomer: true}},
		{name: "17/open, restricted, linked domain", sender: Sender{Address: "new@linked.example", LinkedOrgDomain: true}, space: restricted,
			access: withAccess(func(a *config.Access) { a.Signup = config.SignupOpen; a.ExternalAccounts = config.ExternalAnyone }),
			want:   want{Outcome: Queued, Reason: ReasonAcceptedNewCustomer, AccountType: TypePortal, NewCustomer: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.access
			if a.Signup == "" {
				a = withAccess(nil)
			}
			set := settings(t, a)
			d := Decide(tt.facts, tt.sender, tt.space, set)
			if g := got(d); g != tt.want {
				t.Errorf("Decide = %v\n          want %v (detail %q)", g, tt.want, d.Detail)
			}
			// Screen must agree with Decide on rows 1-3 and leave the rest.
			sd, done := Screen(tt.facts, tt.sender.Address, set)
			screened := tt.want.Outcome == Rejected && slices.Contains([]Reason{ReasonTooLarge, ReasonMalformed, ReasonBlockedSender}, tt.want.Reason) ||
				tt.want.Outcome == Ignored && tt.want.Reason != ReasonDuplicate
			if done != screened {
				t.Errorf("Screen done = %v (%v), want %v", done, got(sd), screened)
			}
			if done && got(sd) != got(d) {
				t.Errorf("Screen = %v, Decide = %v", got(sd), got(d))
			}
		})
	}
}

func TestDecideDetailForOperators(t *testing.T) {
	set := settings(t, withAccess(nil))
	for _, tt := range []struct {
		f Facts
		s Sender
	}{
		{Facts{Problem: parse.ProblemTooLarge, ProblemWhy: "42 bytes over"}, Sender{Address: "a@example.com"}},
		{Facts{Machine: parse.MachineAutoReply, MachineWhy: "Auto-Submitted: auto-replied"}, Sender{Address: "a@example.com"}},
	} {
		d := Decide(tt.f, tt.s, Space{Key: "IT"}, set)
		why := tt.f.ProblemWhy + tt.f.MachineWhy
		if d.Detail != why {
			t.Errorf("Decide(%+v).Detail = %q, want %q", tt.f, d.Detail, why)
		}
	}
}

func TestNewSettingsRejectsBadEntries(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*config.Access)
	}{
		{"internal", func(a *config.Access) { a.InternalDomains = []string{"exa mple.com"} }},
		{"external", func(a *config.Access) { a.ExternalDomains = []string{"a\x00b.example"} }},
		{"automated", func(a *config.Access) { a.AutomatedAllowed = []string{""} }},
		{"blocked address", func(a *config.Access) { a.Blocked = []string{"@spam.example"} }},
		{"blocked domain", func(a *config.Access) { a.Blocked = []string{"sp am.example"} }},
		{"blocked wildcard", func(a *config.Access) { a.Blocked = []string{"*."} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := NewSettings(withAccess(tt.mod)); err == nil {
				t.Errorf("NewSettings = %+v, nil; want an error", s)
			}
		})
	}
}

func TestSettingsAccountType(t *testing.T) {
	set := settings(t, withAccess(nil))
	for domain, want := range map[string]string{
		"example.com":    TypeInternal,
		"both.example":   TypeInternal,
		"listed.example": TypePortal,
		"other.example":  TypePortal,
	} {
		if got := set.AccountType(domain); got != want {
			t.Errorf("AccountType(%q) = %q, want %q", domain, got, want)
		}
	}
	if !set.Internal("example.com") || set.Internal("eu.example.com") || set.Internal("listed.example") {
		t.Error("Internal is not exact membership in access.internal_domains")
	}
}

// ---------------------------------------------------------------------------
// Every combination of site settings, channel access and kind of sender.

// senderKind is one kind of sender of the combination test, described by
// plain facts that both the oracle and the Sender built for Decide use.
type senderKind struct {
	name    string
	addr    string
	agent   bool
	status  string // "" for an unknown sender
	typ     string // account type of an existing account
	inSpace bool   // listed in the space, directly or through a linked organization
	linked  bool   // the domain is a domain of an organization linked to the space
}

var senderKinds = []senderKind{
	{name: "agent", addr: "agent@example.com", agent: true},
	{name: "active-direct", addr: "carol@example.com", status: StatusActive, typ: TypeInternal, inSpace: true},
	{name: "active-org", addr: "bob@linked.example", status: StatusActive, typ: TypePortal, inSpace: true, linked: true},
	{name: "active-other-space", addr: "dave@other.example", status: StatusActive, typ: TypePortal},
	{name: "pending-space", addr: "pat@listed.example", status: StatusPending, typ: TypePortal, inSpace: true},
	{name: "pending-other-space", addr: "pam@example.com", status: StatusPending, typ: TypeInternal},
	{name: "disabled-space", addr: "dan@example.com", status: StatusDisabled, typ: TypeInternal, inSpace: true},
	{name: "disabled-other-space", addr: "dee@other.example", status: StatusDisabled, typ: TypePortal},
	{name: "unknown-internal", addr: "new@example.com"},
	{name: "unknown-listed", addr: "new@listed.example"},
	{name: "unknown-linked-org", addr: "new@linked.example", linked: true},
	{name: "unknown-other", addr: "new@other.example"},
	{name: "unknown-blocked", addr: "new@spam.example"},
}

func (k senderKind) sender() Sender {
	s := Sender{Address: k.addr, Agent: k.agent, SpaceCustomer: k.inSpace, LinkedOrgDomain: k.linked}
	if k.status != "" {
		s.Customer = &Customer{Email: k.addr, Type: k.typ, Status: k.status}
	}
	return s
}

// site is the setting side of one combination, in the words of DESIGN §2.
type site struct {
	signup, external, channel string
	internalDomains           []string
	externalDomains           []string
	blockedDomains            []string
}

// oracle is the policy table of DESIGN §2 read row by row, for a message
// with no problem, no machine-mail marks, no duplicate and no thread.
func oracle(st site, k senderKind) want {
	domain := k.addr[strings.LastIndex(k.addr, "@")+1:]
	internal := slices.Contains(st.internalDomains, domain)
	restricted := st.channel == config.ChannelRestricted

	// Row 3: blocked.
	if slices.Contains(st.blockedDomains, domain) {
		return want{Outcome: Rejected, Reason: ReasonBlockedSender}
	}
	// Row 8: agents.
	if k.agent {
		return want{Outcome: Queued, Reason: ReasonAccepted, AccountType: "agent"}
	}
	switch k.status {
	case "active":
		// Rows 9 and 10.
		if !restricted || k.inSpace {
			return want{Outcome: Queued, Reason: ReasonAccepted, AccountType: k.typ}
		}
		return want{Outcome: Rejected, Reason: ReasonNotSpaceCustomer}
	case "disabled":
		// Row 11.
		return want{Outcome: Rejected, Reason: ReasonAccountDisabled}
	case "pending":
		// Row 12, with the restricted-space guard an unknown sender gets.
		if restricted && !k.inSpace && !k.linked {
			return want{Outcome: Rejected, Reason: ReasonNotSpaceCustomer}
		}
		return want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: k.typ}
	}
	// Unknown sender. Row 13.
	if restricted && !k.inSpace && !k.linked {
		return want{Outcome: Rejected, Reason: ReasonNotSpaceCustomer}
	}
	// Row 14.
	if st.signup == "closed" {
		return want{Outcome: Rejected, Reason: ReasonUnknownSender}
	}
	// Row 15.
	var externalAllowed bool
	switch st.external {
	case "anyone":
		externalAllowed = true
	case "listed_domains":
		externalAllowed = slices.Contains(st.externalDomains, domain)
	case "none":
		externalAllowed = false
	}
	if !internal && !externalAllowed {
		return want{Outcome: Rejected, Reason: ReasonDomainNotAllowed}
	}
	typ := "portal"
	if internal {
		typ = "internal"
	}
	// Rows 16 and 17.
	if st.signup == "verify" {
		return want{Outcome: Held, Reason: ReasonPendingVerification, AccountType: typ, NewCustomer: true}
	}
	return want{Outcome: Queued, Reason: ReasonAcceptedNewCustomer, AccountType: typ, NewCustomer: true}
}

// combinations calls f for every site × sender kind, named
// signup/external_accounts/channel_access/kind.
func combinations(f func(name string, st site, k senderKind)) {
	for _, signup := range []string{config.SignupClosed, config.SignupVerify, config.SignupOpen} {
		for _, ext := range []string{config.ExternalAnyone, config.ExternalListedDomains, config.ExternalNone} {
			for _, ch := range []string{config.ChannelOpen, config.ChannelRestricted} {
				st := site{
					signup: signup, external: ext, channel: ch,
					internalDomains: []string{"example.com"},
					externalDomains: []string{"listed.example"},
					blockedDomains:  []string{"spam.example"},
				}
				for _, k := range senderKinds {
					f(signup+"/"+ext+"/"+ch+"/"+k.name, st, k)
				}
			}
		}
	}
}

func (st site) settings(t *testing.T) *Settings {
	return settings(t, config.Access{
		InternalDomains:  st.internalDomains,
		ExternalAccounts: st.external,
		ExternalDomains:  st.externalDomains,
		Signup:           st.signup,
		Blocked:          st.blockedDomains,
	})
}

func TestDecideAllCombinations(t *testing.T) {
	n := 0
	combinations(func(name string, st site, k senderKind) {
		n++
		t.Run(name, func(t *testing.T) {
			sp := Space{Key: "IT", Restricted: st.channel == config.ChannelRestricted}
			d := Decide(Facts{}, k.sender(), sp, st.settings(t))
			if g, w := got(d), oracle(st, k); g != w {
				t.Errorf("Decide = %v\n          want %v (detail %q)", g, w, d.Detail)
			}
		})
	})
	if want := 3 * 3 * 2 * len(senderKinds); n != want || len(senderKinds) != 13 {
		t.Errorf("ran %d combinations of %d sender kinds, want %d of 13", n, len(senderKinds), want)
	}
}

// TestOracle pins combinations with values worked out by hand, so that a
// mistake in the oracle cannot hide the same mistake in Decide.
func TestOracle(t *testing.T) {
	pinned := map[string]want{
		"closed/none/restricted/agent":                      {Outcome: Queued, Reason: ReasonAccepted, AccountType: TypeAgent},
		"closed/anyone/open/active-other-space":             {Outcome: Queued, Reason: ReasonAccepted, AccountType: TypePortal},
		"open/anyone/restricted/active-other-space":         {Outcome: Rejected, Reason: ReasonNotSpaceCustomer},
		"verify/none/restricted/active-org":                 {Outcome: Queued, Reason: ReasonAccepted, AccountType: TypePortal},
		"closed/listed_domains/restricted/active-direct":    {Outcome: Queued, Reason: ReasonAccepted, AccountType: TypeInternal},
		"closed/none/open/pending-other-space":              {Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypeInternal},
		"open/anyone/restricted/pending-other-space":        {Outcome: Rejected, Reason: ReasonNotSpaceCustomer},
		"verify/listed_domains/restricted/pending-space":    {Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypePortal},
		"open/anyone/open/disabled-space":                   {Outcome: Rejected, Reason: ReasonAccountDisabled},
		"open/anyone/restricted/disabled-other-space":       {Outcome: Rejected, Reason: ReasonAccountDisabled},
		"verify/listed_domains/restricted/unknown-internal": {Outcome: Rejected, Reason: ReasonNotSpaceCustomer},
		"verify/listed_domains/open/unknown-internal":       {Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypeInternal, NewCustomer: true},
		"closed/anyone/open/unknown-internal":               {Outcome: Rejected, Reason: ReasonUnknownSender},
		"closed/anyone/restricted/unknown-linked-org":       {Outcome: Rejected, Reason: ReasonUnknownSender},
		"verify/none/open/unknown-listed":                   {Outcome: Rejected, Reason: ReasonDomainNotAllowed},
		"open/listed_domains/open/unknown-listed":           {Outcome: Queued, Reason: ReasonAcceptedNewCustomer, AccountType: TypePortal, NewCustomer: true},
		"open/listed_domains/restricted/unknown-linked-org": {Outcome: Rejected, Reason: ReasonDomainNotAllowed},
		"open/anyone/restricted/unknown-linked-org":         {Outcome: Queued, Reason: ReasonAcceptedNewCustomer, AccountType: TypePortal, NewCustomer: true},
		"verify/anyone/open/unknown-other":                  {Outcome: Held, Reason: ReasonPendingVerification, AccountType: TypePortal, NewCustomer: true},
		"open/none/open/unknown-internal":                   {Outcome: Queued, Reason: ReasonAcceptedNewCustomer, AccountType: TypeInternal, NewCustomer: true},
		"open/anyone/open/unknown-blocked":                  {Outcome: Rejected, Reason: ReasonBlockedSender},
		"closed/none/restricted/unknown-blocked":            {Outcome: Rejected, Reason: ReasonBlockedSender},
	}
	seen := map[string]bool{}
	combinations(func(name string, st site, k senderKind) {
		w, ok := pinned[name]
		if !ok {
			return
		}
		seen[name] = true
		if g := oracle(st, k); g != w {
			t.Errorf("%s: oracle = %v, want %v", name, g, w)
		}
		if g := got(Decide(Facts{}, k.sender(), Space{Key: "IT", Restricted: st.channel == config.ChannelRestricted}, st.settings(t))); g != w {
			t.Errorf("%s: Decide = %v, want %v", name, g, w)
		}
	})
	for name := range pinned {
		if !seen[name] {
			t.Errorf("pinned case %s names no combination", name)
		}
	}
}
