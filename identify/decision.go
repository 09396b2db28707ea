// Package identify works out who sent a message and what may be done with
// it: address normalization (RFC 5321/5322 addresses, IDNA 2008 domains,
// Unicode NFC), the customer directory kept in Redis, and the customer
// access policy. Decide is a pure function so that every row of the policy
// table can be tested without I/O.
package identify

// Outcome is the class of a decision.
type Outcome string

const (
	Queued   Outcome = "queued"
	Held     Outcome = "held"
	Ignored  Outcome = "ignored"
	Rejected Outcome = "rejected"
	Deferred Outcome = "deferred"
)

// Reason is the stable code of a decision, as listed in the policy table.
// Operators grep logs for these and outside tools match on them: never rename one.
type Reason string

const (
	ReasonNoRoute             Reason = "no_route"
	ReasonTooLarge            Reason = "too_large"
	ReasonMalformed           Reason = "malformed"
	ReasonAutoReply           Reason = "auto_reply"
	ReasonBounce              Reason = "bounce"
	ReasonBulk                Reason = "bulk"
	ReasonLoop                Reason = "loop"
	ReasonBlockedSender       Reason = "blocked_sender"
	ReasonUnauthenticated     Reason = "unauthenticated_sender"
	ReasonDuplicate           Reason = "duplicate"
	ReasonRateLimited         Reason = "rate_limited"
	ReasonComment             Reason = "comment"
	ReasonAccepted            Reason = "accepted"
	ReasonNotSpaceCustomer    Reason = "not_space_customer"
	ReasonAccountDisabled     Reason = "account_disabled"
	ReasonPendingVerification Reason = "pending_verification"
	ReasonUnknownSender       Reason = "unknown_sender"
	ReasonDomainNotAllowed    Reason = "domain_not_allowed"
	ReasonAcceptedNewCustomer Reason = "accepted_new_customer"
	ReasonBackendUnavailable  Reason = "backend_unavailable"
)

// Decision is what happens to a message in one space.
type Decision struct {
	Outcome Outcome
	Reason  Reason
	// Request is the request id a queued message became or was added to as a
	// comment, or the id an ignored duplicate was routed to earlier.
	Request string
	// AccountType is agent, internal or portal for queued mail.
	AccountType string
	// NewCustomer says the sender is to be provisioned: active for
	// accepted_new_customer, pending for a held unknown sender.
	NewCustomer bool
	// Detail explains the decision to an operator (never to a client).
	Detail string
}
