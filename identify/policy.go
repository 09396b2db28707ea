package identify

import (
	"fmt"
	"strings"

	"mailgw/config"
	"mailgw/identify/mailaddr"
	"mailgw/parse"
)

// Settings are the site-wide access settings compiled for fast matching.
type Settings struct {
	signup           string
	requireDMARC     bool
	externalAccounts string
	internal         map[string]bool
	external         map[string]bool
	automated        map[string]bool
	blockedAddrs     map[string]bool
	blockedDomains   map[string]bool
	// blockedTrees holds "*.domain" entries: the domain and everything below it.
	blockedTrees []string
}

// NewSettings compiles the access section of the config. Entries that do not
// normalize are errors: a block list that silently drops an entry would let
// that sender through.
func NewSettings(a config.Access) (*Settings, error) {
	s := &Settings{
		signup:           a.Signup,
		requireDMARC:     a.Authentication.Require == config.RequireDMARC,
		externalAccounts: a.ExternalAccounts,
		internal:         map[string]bool{},
		external:         map[string]bool{},
		automated:        map[string]bool{},
		blockedAddrs:     map[string]bool{},
		blockedDomains:   map[string]bool{},
	}
	for _, set := range []struct {
		dst  map[string]bool
		list []string
	}{{s.internal, a.InternalDomains}, {s.external, a.ExternalDomains}, {s.automated, a.AutomatedAllowed}} {
		for _, d := range set.list {
			nd, err := mailaddr.NormalizeDomain(d)
			if err != nil {
				return nil, err
			}
			set.dst[nd] = true
		}
	}
	for _, b := range a.Blocked {
		switch {
		case strings.HasPrefix(b, "*."):
			nd, err := mailaddr.NormalizeDomain(b[2:])
			if err != nil {
				return nil, err
			}
			s.blockedTrees = append(s.blockedTrees, nd)
		case strings.Contains(b, "@"):
			na, err := mailaddr.Normalize(b)
			if err != nil {
				return nil, err
			}
			s.blockedAddrs[na] = true
		default:
			nd, err := mailaddr.NormalizeDomain(b)
			if err != nil {
				return nil, err
			}
			s.blockedDomains[nd] = true
		}
	}
	return s, nil
}

// Blocked reports whether a normalized address is on the block list.
func (s *Settings) Blocked(addr string) bool {
	if s.blockedAddrs[addr] {
		return true
	}
	d := mailaddr.Domain(addr)
	if s.blockedDomains[d] {
		return true
	}
	for _, t := range s.blockedTrees {
		if d == t || strings.HasSuffix(d, "."+t) {
			return true
		}
	}
	return false
}

// Internal reports whether a domain is one of the approved internal domains.
func (s *Settings) Internal(domain string) bool { return s.internal[domain] }

// externalAllowed reports whether outsiders on domain may get portal accounts.
func (s *Settings) externalAllowed(domain string) bool {
	switch s.externalAccounts {
	case config.ExternalAnyone:
		return true
	case config.ExternalListedDomains:
		return s.external[domain]
	}
	return false
}

// AccountType is the type a new account on domain gets: internal wins over external.
func (s *Settings) AccountType(domain string) string {
	if s.internal[domain] {
		return TypeInternal
	}
	return TypePortal
}

// Space is what the policy needs to know of the space a message is routed to.
type Space struct {
	Key        string
	Restricted bool
}

// Sender is the directory's view of a message's sender, as seen from one space.
type Sender struct {
	Address  string    // normalized header From
	Agent    bool      // listed in agents
	Customer *Customer // nil when the address has no account
	// SpaceCustomer: listed among the space's customers, or a member of an
	// organization linked to the space.
	SpaceCustomer bool
	// LinkedOrgDomain: the address's domain is a domain of an organization
	// linked to the space, so a new account would join it.
	LinkedOrgDomain bool
}

// Facts are what the earlier stages learned about a message for one space.
type Facts struct {
	Problem    parse.Problem
	ProblemWhy string
	Machine    parse.Machine
	MachineWhy string
	// Duplicate is set when the message was already routed to this space;
	// DuplicateOf is the request it became ("" if it is held).
	Duplicate   bool
	DuplicateOf string
	// ThreadRequest is the request of this space the message replies to
	// (by In-Reply-To, References or a [KEY-N] subject tag); ThreadParticipant
	// says the sender is its requester or one of its participants.
	ThreadRequest     string
	ThreadParticipant bool
	// Auth is the authentication verdict for the From domain;
	// NonCanonicalFrom says the From address was written in a form (NFD)
	// that only looks like the address it normalizes to.
	Auth             Verdict
	NonCanonicalFrom bool
	// Throttle is set when the sender or the space is over its rate limit.
	Throttle *Throttle
}

// Screen applies rows 1 to 3 of the policy, which need nothing but the
// message and the settings: callers use it to settle mail such as bounces
// before any Redis lookup, so that they are ignored even while Redis is down.
func Screen(f Facts, sender string, set *Settings) (Decision, bool) {
	// Row 1: the message itself cannot become a request.
	switch f.Problem {
	case parse.ProblemTooLarge:
		return rejected(ReasonTooLarge, f.ProblemWhy), true
	case parse.ProblemMalformed:
		return rejected(ReasonMalformed, f.ProblemWhy), true
	}
	if sender == "" {
		return rejected(ReasonMalformed, "no usable From address"), true
	}

	// Row 2: machine mail is dropped without a bounce, which is what breaks
	// loops. Monitoring systems on automated_allowed domains may still open
	// requests, but their bounces and our own mail coming back never do.
	if f.Machine != parse.MachineNone {
		exempt := set.automated[mailaddr.Domain(sender)] && (f.Machine == parse.MachineAutoReply || f.Machine == parse.MachineBulk)
		if !exempt {
			return Decision{Outcome: Ignored, Reason: Reason(f.Machine), Detail: f.MachineWhy}, true
		}
	}

	// Row 3.
	if set.Blocked(sender) {
		return rejected(ReasonBlockedSender, "sender is on access.blocked"), true
	}
	return Decision{}, false
}

// Admit applies rows 4 and 5: who may not be trusted, and what was
// already routed. Callers count rate limits only for messages it admits.
func Admit(f Facts, set *Settings) (Decision, bool) {
	// Row 4. Unauthenticated mail can neither speak for a customer nor
	// provision one, so with require: dmarc it is refused whoever it claims
	// to be.
	if f.NonCanonicalFrom {
		return rejected(ReasonUnauthenticated, "From address is not written in canonical (NFC) form"), true
	}
	if set.requireDMARC && f.Auth.Result != VerdictPass {
		return rejected(ReasonUnauthenticated, "access.authentication.require is dmarc, verdict: "+f.Auth.String()), true
	}
	// Row 5.
	if f.Duplicate {
		return Decision{Outcome: Ignored, Reason: ReasonDuplicate, Request: f.DuplicateOf, Detail: "Message-ID already routed to this space"}, true
	}
	return Decision{}, false
}

// Decide applies the customer access policy: the first matching row of the
// table in DESIGN §2 wins. Row 0 (no route) is decided by the router; a
// message reaching Decide has a space.
func Decide(f Facts, s Sender, sp Space, set *Settings) Decision {
	if d, done := Screen(f, s.Address, set); done {
		return d
	}
	if d, done := Admit(f, set); done {
		return d
	}

	// Row 6.
	if f.Throttle != nil {
		return Decision{Outcome: Deferred, Reason: ReasonRateLimited, Detail: f.Throttle.String()}
	}

	// Row 7: a participant's reply joins the request it answers.
	if f.ThreadRequest != "" && (f.ThreadParticipant || s.Agent) {
		return Decision{Outcome: Queued, Reason: ReasonComment, Request: f.ThreadRequest, AccountType: s.accountType(set)}
	}

	// Row 8.
	if s.Agent {
		return Decision{Outcome: Queued, Reason: ReasonAccepted, AccountType: TypeAgent}
	}

	if c := s.Customer; c != nil {
		switch c.Status {
		case StatusActive:
			if !sp.Restricted || s.SpaceCustomer {
				return Decision{Outcome: Queued, Reason: ReasonAccepted, AccountType: c.Type} // row 9
			}
			return rejected(ReasonNotSpaceCustomer, fmt.Sprintf("space %s is restricted to its customers", sp.Key)) // row 10
		case StatusDisabled:
			return rejected(ReasonAccountDisabled, "customer account is disabled") // row 11
		default:
			// Row 12. A pending account grants no more than an unknown
			// sender would get: holding mail for a restricted space the
			// sender may not use would queue it there on confirmation.
			if sp.Restricted && !s.SpaceCustomer && !s.LinkedOrgDomain {
				return rejected(ReasonNotSpaceCustomer, fmt.Sprintf("space %s is restricted to its customers", sp.Key))
			}
			return Decision{Outcome: Held, Reason: ReasonPendingVerification, AccountType: c.Type, Detail: "customer has not verified the address yet"}
		}
	}

	// Rows 13-17: an unknown sender.
	domain := mailaddr.Domain(s.Address)
	if sp.Restricted && !s.SpaceCustomer && !s.LinkedOrgDomain {
		return rejected(ReasonNotSpaceCustomer, fmt.Sprintf("space %s is restricted and %s is no linked organization's domain", sp.Key, domain))
	}
	if set.signup == config.SignupClosed {
		return rejected(ReasonUnknownSender, "access.signup is closed")
	}
	if !set.internal[domain] && !set.externalAllowed(domain) {
		return rejected(ReasonDomainNotAllowed, fmt.Sprintf("%s is neither internal nor an allowed external domain", domain))
	}
	typ := set.AccountType(domain)
	if set.signup == config.SignupOpen {
		return Decision{Outcome: Queued, Reason: ReasonAcceptedNewCustomer, AccountType: typ, NewCustomer: true}
	}
	return Decision{Outcome: Held, Reason: ReasonPendingVerification, AccountType: typ, NewCustomer: true, Detail: "new customer must verify the address"}
}

func (s Sender) accountType(set *Settings) string {
	switch {
	case s.Agent:
		return TypeAgent
	case s.Customer != nil:
		return s.Customer.Type
	}
	return set.AccountType(mailaddr.Domain(s.Address))
}

func rejected(r Reason, detail string) Decision {
	return Decision{Outcome: Rejected, Reason: r, Detail: detail}
}
