package smtp

import (
	"errors"
	"fmt"

	gosmtp "github.com/emersion/go-smtp"

	"mailgw/identify"
)

// Reply is the one error type of this package: what the client is told
// (code, enhanced code, a short English text naming the reason) and, apart
// from it, the internal cause for the log. toSMTP is the only place a Reply
// becomes a *gosmtp.SMTPError.
type Reply struct {
	Code     int
	Enhanced gosmtp.EnhancedCode
	Reason   identify.Reason // "" for protocol-level replies
	Text     string
	Err      error // internal cause; logged, never sent
}

func (r *Reply) Error() string {
	if r.Err != nil {
		return fmt.Sprintf("smtp: %d %v %s: %v", r.Code, r.Enhanced, r.Text, r.Err)
	}
	return fmt.Sprintf("smtp: %d %v %s", r.Code, r.Enhanced, r.Text)
}

func (r *Reply) Unwrap() error { return r.Err }

// withCause returns a copy of r carrying err for the log.
func (r Reply) withCause(err error) *Reply {
	r.Err = err
	return &r
}

// internalError is what a client sees for any error that is not a Reply.
var internalError = gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Internal error, try again later"}

// toSMTP turns any error into the reply go-smtp sends. go-smtp recognises
// its error type with a type assertion, so the result is never wrapped, and
// internal error text never reaches the client.
func toSMTP(err error) error {
	if err == nil {
		return nil
	}
	var r *Reply
	if errors.As(err, &r) {
		return &gosmtp.SMTPError{Code: r.Code, EnhancedCode: r.Enhanced, Message: r.Text}
	}
	e := internalError
	return &e
}

// Protocol-level replies, decided before a message reaches ingest.
var (
	replyRelayDenied = Reply{Code: 550, Enhanced: gosmtp.EnhancedCode{5, 7, 1}, Reason: identify.ReasonNoRoute, Text: "Relaying denied (no_route)"}
	replyNoMailbox   = Reply{Code: 550, Enhanced: gosmtp.EnhancedCode{5, 1, 1}, Reason: identify.ReasonNoRoute, Text: "No such mailbox here (no_route)"}
	replyBadAddress  = Reply{Code: 501, Enhanced: gosmtp.EnhancedCode{5, 1, 3}, Text: "Bad recipient address syntax"}
	replyBadSender   = Reply{Code: 501, Enhanced: gosmtp.EnhancedCode{5, 1, 7}, Text: "Bad sender address syntax"}
	replyNestedMail  = Reply{Code: 503, Enhanced: gosmtp.EnhancedCode{5, 5, 1}, Text: "Nested MAIL command: finish or RSET the transaction first"}
	replyBareNewline = Reply{Code: 554, Enhanced: gosmtp.EnhancedCode{5, 6, 0}, Reason: identify.ReasonMalformed, Text: "Bare LF or CR in message: lines must end with CRLF (malformed)"}
	replyLineTooLong = Reply{Code: 554, Enhanced: gosmtp.EnhancedCode{5, 6, 0}, Reason: identify.ReasonMalformed, Text: "Line too long (malformed)"}
	replyTooLarge    = Reply{Code: 552, Enhanced: gosmtp.EnhancedCode{5, 3, 4}, Reason: identify.ReasonTooLarge, Text: "Message too big (too_large)"}
	replyNoMemory    = Reply{Code: 451, Enhanced: gosmtp.EnhancedCode{4, 3, 1}, Text: "Insufficient system resources, try again later"}
	replyTooSlow     = Reply{Code: 421, Enhanced: gosmtp.EnhancedCode{4, 4, 2}, Text: "Data rate too low, closing connection"}
	replyReadFailed  = Reply{Code: 451, Enhanced: gosmtp.EnhancedCode{4, 3, 0}, Text: "Error reading message, try again later"}
	replyIPRate      = Reply{Code: 451, Enhanced: gosmtp.EnhancedCode{4, 7, 1}, Reason: identify.ReasonRateLimited, Text: "Too much mail from your address, try again later (rate_limited)"}
	replyShutdown    = Reply{Code: 421, Enhanced: gosmtp.EnhancedCode{4, 3, 2}, Text: "Service shutting down, try again later"}
)

// decisionReplies are the replies of DESIGN §2 for decisions that refuse
// or defer a message. Accepted, held and ignored mail gets 250.
var decisionReplies = map[identify.Reason]Reply{
	identify.ReasonNoRoute:            replyNoMailbox,
	identify.ReasonTooLarge:           replyTooLarge,
	identify.ReasonMalformed:          {Code: 554, Enhanced: gosmtp.EnhancedCode{5, 6, 0}, Text: "Message could not be read (malformed)"},
	identify.ReasonBlockedSender:      {Code: 550, Enhanced: gosmtp.EnhancedCode{5, 7, 1}, Text: "Sender is blocked (blocked_sender)"},
	identify.ReasonUnauthenticated:    {Code: 550, Enhanced: gosmtp.EnhancedCode{5, 7, 26}, Text: "Sender could not be authenticated (unauthenticated_sender)"},
	identify.ReasonRateLimited:        {Code: 451, Enhanced: gosmtp.EnhancedCode{4, 7, 1}, Text: "Too much mail from this sender, try again later (rate_limited)"},
	identify.ReasonNotSpaceCustomer:   {Code: 550, Enhanced: gosmtp.EnhancedCode{5, 7, 1}, Text: "Sender may not raise requests here (not_space_customer)"},
	identify.ReasonAccountDisabled:    {Code: 550, Enhanced: gosmtp.EnhancedCode{5, 7, 1}, Text: "Sender's account is disabled (account_disabled)"},
	identify.ReasonUnknownSender:      {Code: 550, Enhanced: gosmtp.EnhancedCode{5, 7, 1}, Text: "Sender is not a customer (unknown_sender)"},
	identify.ReasonDomainNotAllowed:   {Code: 550, Enhanced: gosmtp.EnhancedCode{5, 7, 1}, Text: "Sender's domain may not raise requests (domain_not_allowed)"},
	identify.ReasonBackendUnavailable: {Code: 451, Enhanced: gosmtp.EnhancedCode{4, 3, 0}, Text: "Temporary failure, try again later (backend_unavailable)"},
}

// decisionReply returns the reply for a refused or deferred decision.
func decisionReply(d identify.Decision) *Reply {
	r, ok := decisionReplies[d.Reason]
	if !ok {
		// A reason without a reply of its own still must not pass as
		// accepted: refuse or defer by its outcome.
		r = Reply{Code: 550, Enhanced: gosmtp.EnhancedCode{5, 7, 1}, Text: fmt.Sprintf("Message refused (%s)", d.Reason)}
		if d.Outcome == identify.Deferred {
			r = Reply{Code: 451, Enhanced: gosmtp.EnhancedCode{4, 3, 0}, Text: fmt.Sprintf("Temporary failure, try again later (%s)", d.Reason)}
		}
	}
	r.Reason = d.Reason
	return &r
}
