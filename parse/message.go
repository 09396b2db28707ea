// Package parse turns the raw bytes of an Internet message (RFC 5322, MIME
// RFC 2045-2049, encoded words RFC 2047/2231) into a Message: decoded
// headers, text and HTML bodies, attachments, defects and a classification
// of machine-generated mail. Hostile or broken input yields defects and a
// best-effort Message, never a panic and never unbounded memory.
package parse

import "time"

// Limits bound the work done on one message. Zero values mean the defaults
// of DefaultLimits.
type Limits struct {
	MaxMessageBytes int64
	MaxHeaderBytes  int
	MaxParts        int
	MaxDepth        int
}

// DefaultLimits are the limits of DESIGN §9.
var DefaultLimits = Limits{
	MaxMessageBytes: 25 << 20,
	MaxHeaderBytes:  1 << 20,
	MaxParts:        1000,
	MaxDepth:        20,
}

// Options tell the parser what it cannot know from the message alone.
type Options struct {
	Limits Limits
	// OwnDomain is the domain of the Message-IDs mailgw stamps on the mail it
	// sends ("mailgw." + random + "@" + OwnDomain) and the value of its loop
	// header; mail carrying either is classified MachineLoop.
	OwnDomain string
	// EnvelopeFrom is the SMTP reverse path as received; "" is the null
	// sender (a bounce) only when NullSender is true, because channels such
	// as replay and IMAP do not know the reverse path.
	EnvelopeFrom string
	NullSender   bool
}

// Problem says why a message cannot become a request at all.
type Problem string

const (
	ProblemNone      Problem = ""
	ProblemTooLarge  Problem = "too_large" // over MaxMessageBytes, MaxHeaderBytes or MaxParts
	ProblemMalformed Problem = "malformed" // no usable header, no usable single From, nesting over MaxDepth
)

// Machine classifies mail that no person wrote to the support address.
type Machine string

const (
	MachineNone      Machine = ""
	MachineAutoReply Machine = "auto_reply"
	MachineBounce    Machine = "bounce"
	MachineBulk      Machine = "bulk"
	MachineLoop      Machine = "loop"
)

// Address is a mailbox as written in a header, decoded but not normalized.
type Address struct {
	Name    string
	Address string
}

// Attachment describes a non-body part. Content is not kept: the raw
// message is stored whole.
type Attachment struct {
	Name        string
	ContentType string
	Size        int64
	SHA256      string // hex of the decoded content
	Inline      bool
	ContentID   string
}

// Message is what mailgw knows about one message.
type Message struct {
	// MessageID is the Message-ID without angle brackets, or "" when missing.
	MessageID  string
	InReplyTo  []string // ids without angle brackets
	References []string
	Date       time.Time // zero when missing or unparsable
	Subject    string    // decoded to UTF-8, CR/LF and NUL removed

	From    []Address
	Sender  []Address
	ReplyTo []Address
	To      []Address
	Cc      []Address
	// DeliveredTo and XOriginalTo carry the addresses of those headers, top first.
	DeliveredTo []string
	XOriginalTo []string

	Text        string // plain text body; derived from HTML when there is no text part
	HTML        string
	Attachments []Attachment

	// Machine is non-empty for auto-replies, bounces, bulk mail and loops;
	// MachineWhy names the header or structure that said so.
	Machine    Machine
	MachineWhy string

	// Problem is set when a limit was crossed or the message is unusable;
	// ProblemWhy says which.
	Problem    Problem
	ProblemWhy string
	// Defects lists everything that was wrong but survived, in order found.
	Defects []string

	Size int64 // bytes of the raw message

	header map[string][]string // canonical key -> raw (undecoded) values, top first
	body   []byte              // the raw bytes after the header section
}

// ContentHash is the hex SHA-256 of From, To, Cc, Date and Subject as
// written plus the raw bytes after the header: stable across relays (which
// only prepend trace headers), it stands in for a missing Message-ID. It is
// computed on each call, as only mail without a Message-ID needs it.
func (m *Message) ContentHash() string { return contentHash(m.header, m.body) }

// Header returns the raw values of a header field, top first.
func (m *Message) Header(name string) []string {
	return m.header[canonicalKey(name)]
}
