package config

// Values of Authentication.Require.
const (
	RequireNone  = "none"
	RequireDMARC = "dmarc"
)

// Values of Customer.Type (and of the directory's account types).
const (
	TypeInternal = "internal"
	TypePortal   = "portal"
)

// Values of Customer.Status.
const (
	StatusActive   = "active"
	StatusPending  = "pending"
	StatusDisabled = "disabled"
)

// Values of Outbound.TLS and IMAP.TLS. Outbound accepts starttls
// (opportunistic), required (STARTTLS or fail) and none; IMAP accepts
// implicit (TLS from the first byte), starttls (required) and none.
const (
	TLSImplicit = "implicit"
	TLSStartTLS = "starttls"
	TLSRequired = "required"
	TLSNone     = "none"
)
