package parse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"mime"
	"net/mail"
	"strings"
)

// maxDefects caps Message.Defects: hostile input can produce one defect per
// line, and a list nobody reads is no use anyway.
const maxDefects = 50

// maxDepthCap bounds Limits.MaxDepth whatever the configuration says.
const maxDepthCap = 10000

// Parse parses one raw message. It always returns a Message; problems that
// make the message unusable are reported in Problem, everything else that was
// wrong in Defects.
func Parse(raw []byte, opts Options) (msg *Message) {
	msg = &Message{Size: int64(len(raw))}
	p := &parser{msg: msg, opts: &opts, lim: opts.Limits.withDefaults()}
	defer func() {
		// A panic is a bug in this package, not in the message; the message is
		// still rejected rather than taking the gateway down with it.
		if r := recover(); r != nil {
			p.setProblem(ProblemMalformed, "internal error while parsing")
			p.defect(truncate(fmt.Sprintf("panic: %v", r), 200))
		}
	}()
	p.run(raw)
	return msg
}

func (l Limits) withDefaults() Limits {
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = DefaultLimits.MaxMessageBytes
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultLimits.MaxHeaderBytes
	}
	if l.MaxParts <= 0 {
		l.MaxParts = DefaultLimits.MaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	// The walk recurses once per level; past this a misconfigured limit
	// would exhaust the stack, which no recover can catch.
	l.MaxDepth = min(l.MaxDepth, maxDepthCap)
	return l
}

// parser holds the state of one Parse call.
type parser struct {
	msg  *Message
	opts *Options
	lim  Limits

	parts  int   // MIME entities seen, nested messages included
	stop   bool  // a limit was hit: walk no further
	budget int64 // transfer-decoded bytes still allowed

	havePlain bool // Text came from a text/plain part
	haveHTML  bool

	scratch []byte             // reused output buffer for attachment decoding
	addrs   mail.AddressParser // knows every charset lookupCharset knows
}

func (p *parser) run(raw []byte) {
	msg := p.msg
	p.initDecoders()

	tooBig := int64(len(raw)) > p.lim.MaxMessageBytes
	if tooBig {
		p.setProblem(ProblemTooLarge, fmt.Sprintf("message is %d bytes, over the limit of %d", len(raw), p.lim.MaxMessageBytes))
	}

	h, bodyStart, over := p.readHeader(raw, p.lim.MaxHeaderBytes)
	if over {
		p.setProblem(ProblemTooLarge, fmt.Sprintf("header section over %d bytes", p.lim.MaxHeaderBytes))
	}
	msg.header = h.toMap()
	p.headers(h)
	msg.body = raw[bodyStart:]

	switch n := h.count("From"); {
	case len(h) == 0:
		p.setProblem(ProblemMalformed, "no header fields")
	case n > 1:
		p.setProblem(ProblemMalformed, fmt.Sprintf("%d From header fields", n))
	case len(msg.From) == 0:
		p.setProblem(ProblemMalformed, "no From address")
	case len(msg.From) > 1:
		p.setProblem(ProblemMalformed, fmt.Sprintf("From has %d addresses", len(msg.From)))
	default:
		if why := addressProblem(msg.From[0].Address); why != "" {
			p.setProblem(ProblemMalformed, fmt.Sprintf("From address %q %s", truncate(msg.From[0].Address, 100), why))
		}
	}

	p.classify(h)

	if tooBig || over {
		return
	}
	// Attached messages are decoded and hashed again, and a few levels of
	// forwarding are normal; the budget only stops adversarial nesting.
	p.budget = 8*int64(len(raw)) + 1<<20
	p.walk(h, raw[bodyStart:], walkCtx{top: true})
	if strings.TrimSpace(msg.Text) == "" && msg.HTML != "" {
		msg.Text = htmlToText(msg.HTML)
	}
	msg.Text = strings.TrimRight(msg.Text, " \t\n")
}

func (p *parser) initDecoders() {
	p.addrs = mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charsetReader}}
}

// setProblem records the first problem of the worse kind: a limit crossed
// explains a malformed-looking message (a header cut short has no From), not
// the other way round.
func (p *parser) setProblem(pr Problem, why string) {
	m := p.msg
	if m.Problem == ProblemNone || (m.Problem == ProblemMalformed && pr == ProblemTooLarge) {
		m.Problem, m.ProblemWhy = pr, why
	}
}

// defect records s once. Defects are for people reading a log, so the list
// is deduplicated and capped.
func (p *parser) defect(s string) {
	d := p.msg.Defects
	if len(d) >= maxDefects {
		return
	}
	for _, x := range d {
		if x == s {
			return
		}
	}
	if len(d) == maxDefects-1 {
		s = "further defects omitted"
	}
	p.msg.Defects = append(d, s)
}

// headers fills the Message fields that come from the top-level header.
func (p *parser) headers(h header) {
	m := p.msg
	fb := headerFallbackCharset(h)

	if vs := h.values("Message-Id"); len(vs) > 0 {
		ids := p.ids(vs[0], "Message-ID")
		switch {
		case len(ids) == 0:
			p.defect("empty Message-ID")
		case len(ids) > 1:
			p.defect("Message-ID holds several ids")
		}
		if len(ids) > 0 {
			m.MessageID = ids[0]
		}
		if len(vs) > 1 {
			p.defect("several Message-ID fields")
		}
	} else {
		p.defect("no Message-ID")
	}
	for _, v := range h.values("In-Reply-To") {
		m.InReplyTo = append(m.InReplyTo, p.ids(v, "In-Reply-To")...)
	}
	for _, v := range h.values("References") {
		m.References = append(m.References, p.ids(v, "References")...)
	}

	if v, ok := h.get("Date"); ok {
		t, err := parseDate(v)
		if err != nil {
			p.defect("unparsable Date")
		}
		m.Date = t
	} else {
		p.defect("no Date")
	}

	if vs := h.values("Subject"); len(vs) > 0 {
		m.Subject = strings.TrimSpace(p.decodeWords(vs[0], fb))
		if len(vs) > 1 {
			p.defect("several Subject fields")
		}
	}

	m.From = p.addressList(h.values("From"), "From", fb)
	m.Sender = p.addressList(h.values("Sender"), "Sender", fb)
	m.ReplyTo = p.addressList(h.values("Reply-To"), "Reply-To", fb)
	m.To = p.addressList(h.values("To"), "To", fb)
	m.Cc = p.addressList(h.values("Cc"), "Cc", fb)
	m.DeliveredTo = p.bareAddresses(h.values("Delivered-To"), "Delivered-To", fb)
	m.XOriginalTo = p.bareAddresses(h.values("X-Original-To"), "X-Original-To", fb)
}

// contentHash implements Message.ContentHash. Header values are hashed with
// runs of white space collapsed and the body with CRLF turned into LF and
// trailing line ends dropped, because the same message arrives with CRLF
// over SMTP and often with LF from IMAP stores and .eml files.
func contentHash(h map[string][]string, body []byte) string {
	s := sha256.New()
	for _, k := range [...]string{"From", "To", "Cc", "Date", "Subject"} {
		for _, v := range h[k] {
			s.Write([]byte(k))
			s.Write([]byte{':'})
			writeCollapsed(s, v)
			s.Write([]byte{'\n'})
		}
	}
	s.Write([]byte{'\n'})
	writeLF(s, trimTrailingEOL(body))
	var sum [sha256.Size]byte
	return hex.EncodeToString(s.Sum(sum[:0]))
}

func writeCollapsed(w hash.Hash, v string) {
	b := make([]byte, 0, len(v))
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			space = true
			continue
		}
		if space && len(b) > 0 {
			b = append(b, ' ')
		}
		space = false
		b = append(b, c)
	}
	w.Write(b)
}

func trimTrailingEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// writeLF writes b with every CRLF replaced by LF, through a buffer: a
// hash.Write per line costs more than the copy.
func writeLF(w hash.Hash, b []byte) {
	if bytes.IndexByte(b, '\r') < 0 {
		w.Write(b)
		return
	}
	buf := make([]byte, 0, min(len(b), 32<<10))
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\r')
		if i < 0 {
			i = len(b)
		}
		seg := b[:i]
		for len(seg) > 0 {
			n := min(len(seg), cap(buf)-len(buf))
			buf = append(buf, seg[:n]...)
			seg = seg[n:]
			if len(buf) == cap(buf) {
				w.Write(buf)
				buf = buf[:0]
			}
		}
		if i < len(b) {
			if i+1 < len(b) && b[i+1] == '\n' {
				b = b[i+1:] // drop the CR, keep the LF
				continue
			}
			if len(buf) == cap(buf) {
				w.Write(buf)
				buf = buf[:0]
			}
			buf = append(buf, '\r')
			b = b[i+1:]
			continue
		}
		b = nil
	}
	w.Write(buf)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so the result stays valid UTF-8.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
