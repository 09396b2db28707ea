package parse

import (
	"bytes"
	"net/textproto"
	"strings"
)

// field is one header field: a canonical key and the value unfolded, with
// surrounding white space trimmed, otherwise as written (RFC 5322 §2.2).
type field struct {
	key   string
	value string
}

type header []field

func (h header) get(key string) (string, bool) {
	for _, f := range h {
		if f.key == key {
			return f.value, true
		}
	}
	return "", false
}

func (h header) values(key string) []string {
	var vs []string
	for _, f := range h {
		if f.key == key {
			vs = append(vs, f.value)
		}
	}
	return vs
}

func (h header) count(key string) int {
	n := 0
	for _, f := range h {
		if f.key == key {
			n++
		}
	}
	return n
}

func (h header) toMap() map[string][]string {
	if len(h) == 0 {
		return nil
	}
	m := make(map[string][]string, len(h))
	for _, f := range h {
		m[f.key] = append(m[f.key], f.value)
	}
	return m
}

// canonicalKey is the form header names are stored and looked up in:
// textproto's canonical MIME form ("Message-Id", "Dkim-Signature").
func canonicalKey(name string) string {
	if k, ok := commonKeys[name]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// canonicalKeyBytes avoids allocating a key for the fields most mail has:
// a map lookup with a converted []byte does not allocate.
func canonicalKeyBytes(name []byte) string {
	if k, ok := commonKeys[string(name)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

var commonKeys = func() map[string]string {
	names := []string{
		"Received", "Return-Path", "Delivered-To", "X-Original-To", "From", "Sender", "Reply-To",
		"To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
		"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
		"Content-ID", "Content-Description", "Content-Language", "Thread-Topic", "Thread-Index",
		"DKIM-Signature", "ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results",
		"Authentication-Results", "Received-SPF", "X-Mailer", "User-Agent", "List-Id",
		"List-Unsubscribe", "List-Unsubscribe-Post", "Precedence", "Auto-Submitted",
		"X-Auto-Response-Suppress", "X-Spam-Status", "X-Spam-Score", "X-Originating-IP",
		"X-MS-Has-Attach", "X-MS-TNEF-Correlator", "X-MS-Exchange-Organization-SCL",
		"Accept-Language", "Importance", "X-Priority", "X-Google-DKIM-Signature",
		"X-Gm-Message-State", "X-Google-Smtp-Source", "X-Received", "Feedback-ID",
	}
	m := make(map[string]string, 3*len(names))
	for _, n := range names {
		c := textproto.CanonicalMIMEHeaderKey(n)
		m[n] = c
		m[c] = c
		m[strings.ToLower(n)] = c
	}
	return m
}()

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// validKeyByte reports whether c may appear in a field name (RFC 5322 ftext).
func validKeyByte(c byte) bool { return c >= 33 && c <= 126 && c != ':' }

// fieldNameLen returns the length of the field name at the start of line and
// the index just after its colon, or 0, 0 when line is not a field.
func fieldNameLen(line []byte) (n, colon int) {
	for n < len(line) && validKeyByte(line[n]) {
		n++
	}
	if n == 0 {
		return 0, 0
	}
	// RFC 5322 obs-optional allows white space before the colon.
	c := n
	for c < len(line) && isWSP(line[c]) {
		c++
	}
	if c == len(line) || line[c] != ':' {
		return 0, 0
	}
	return n, c + 1
}

// nextLine returns the line starting at i without its line end and the
// index of the following line.
func nextLine(b []byte, i int) (line []byte, next int) {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		line, next = b[i:], len(b)
	} else {
		line, next = b[i:i+j], i+j+1
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, next
}

// readHeader parses the header section at the start of b, leniently: folded
// lines, bare LF, 8-bit values, junk lines and a missing blank line are all
// accepted with a defect. It returns the fields, the offset of the body, and
// whether the section ran past limit (0: no limit), in which case only the
// fields before the limit are returned.
func (p *parser) readHeader(b []byte, limit int) (h header, body int, over bool) {
	i := 0
	if first, next := nextLine(b, 0); bytes.HasPrefix(first, []byte("From ")) && !fieldLine(first) {
		// An mbox separator line, left on by some exports.
		i = next
		p.defect("leading mbox From line")
	}
	var (
		key        []byte
		valStart   int
		valEnd     int
		inField    bool
		sawLeading bool
	)
	flush := func() {
		if inField {
			h = append(h, field{key: canonicalKeyBytes(key), value: unfold(b[valStart:valEnd])})
			inField = false
		}
	}
	for i < len(b) {
		line, next := nextLine(b, i)
		if limit > 0 && next > limit {
			flush()
			return h, i, true
		}
		if len(line) == 0 {
			flush()
			return h, next, false
		}
		if isWSP(line[0]) {
			if inField {
				valEnd = i + len(line)
			} else if !sawLeading {
				sawLeading = true
				p.defect("header continuation line without a field")
			}
			i = next
			continue
		}
		flush()
		if n, colon := fieldNameLen(line); n > 0 {
			key, valStart, valEnd, inField = line[:n], i+colon, i+len(line), true
			i = next
			continue
		}
		// Not a field. If a field follows, this is a stray line inside the
		// header; otherwise the body started without the blank line.
		if next < len(b) {
			if nl, _ := nextLine(b, next); fieldLine(nl) {
				p.defect("header line without colon")
				i = next
				continue
			}
		}
		if len(h) > 0 {
			p.defect("no blank line between header and body")
		}
		return h, i, false
	}
	flush()
	return h, len(b), false
}

func fieldLine(line []byte) bool {
	n, _ := fieldNameLen(line)
	return n > 0
}

// unfold removes the line breaks of folded lines (RFC 5322 §2.2.3) and trims
// surrounding white space.
func unfold(v []byte) string {
	v = bytes.TrimLeft(v, " \t")
	v = bytes.TrimRight(v, " \t\r\n")
	if bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, '\r') < 0 {
		return string(v)
	}
	var sb strings.Builder
	sb.Grow(len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
