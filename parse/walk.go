package parse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"

	htmlcharset "golang.org/x/net/html/charset"
)

// walkCtx is what an entity needs to know about where it sits in the tree.
type walkCtx struct {
	depth    int
	top      bool      // the message itself
	alt      *altGroup // nearest enclosing multipart/alternative
	related  bool      // inside a multipart/related
	resource bool      // a non-root member of a multipart/related, or below one
	nested   bool      // inside an attached message
	digest   bool      // child of multipart/digest: default type message/rfc822
}

// altGroup remembers whether a multipart/alternative already gave its plain
// text; a second one is an attachment.
type altGroup struct{ plain bool }

// walk visits one MIME entity (RFC 2046) and everything below it.
func (p *parser) walk(h header, body []byte, c walkCtx) {
	if p.stop {
		return
	}
	p.parts++
	if p.parts > p.lim.MaxParts {
		p.setProblem(ProblemTooLarge, fmt.Sprintf("more than %d MIME parts", p.lim.MaxParts))
		p.stop = true
		return
	}
	if c.depth > p.lim.MaxDepth {
		p.setProblem(ProblemMalformed, fmt.Sprintf("MIME nesting deeper than %d", p.lim.MaxDepth))
		return
	}
	ct, ps := p.contentType(h, c)
	switch {
	case strings.HasPrefix(ct, "multipart/"):
		if p.multipart(ct, ps, body, c) {
			return
		}
		// Without a usable boundary the best reading is plain text.
		ct = "text/plain"
	case ct == "message/rfc822" || ct == "message/global":
		p.message(h, ct, ps, body, c)
		return
	}
	p.leaf(h, ct, ps, body, c)
}

func (p *parser) contentType(h header, c walkCtx) (string, params) {
	def := "text/plain"
	if c.digest {
		def = "message/rfc822"
	}
	v, ok := h.get("Content-Type")
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	if h.count("Content-Type") > 1 {
		p.defect("several Content-Type fields")
	}
	ct, ps := parseParams(v)
	if i := strings.IndexByte(ct, '/'); i <= 0 || i == len(ct)-1 {
		if ct == "text" {
			return "text/plain", ps
		}
		p.defect("Content-Type without subtype: " + quoteShort(ct))
		return "application/octet-stream", ps
	}
	return ct, ps
}

// multipart walks the parts of a multipart entity. It returns false when
// the body cannot be split, so the caller can keep it as text.
func (p *parser) multipart(ct string, ps params, body []byte, c walkCtx) bool {
	boundary := ps.get("boundary")
	if boundary == "" {
		p.defect("multipart without boundary; read as text")
		return false
	}
	it := partIter{body: body, delim: []byte("--" + boundary)}
	if !it.start() {
		p.defect("multipart boundary never found; read as text")
		return false
	}
	sub := ct[len("multipart/"):]
	cc := c
	cc.depth, cc.top, cc.digest = c.depth+1, false, false
	switch sub {
	case "alternative":
		cc.alt = &altGroup{}
	case "related":
		cc.related = true
	case "digest":
		cc.digest = true
	}
	root := 0
	if sub == "related" {
		root = p.relatedRoot(it, ps.get("start"))
	}
	for i := 0; it.next(); i++ {
		ph, pb, _ := p.readHeader(it.part, 0)
		pc := cc
		if sub == "related" && i != root {
			pc.resource = true
		}
		p.walk(ph, it.part[pb:], pc)
		if p.stop {
			return true
		}
	}
	if !it.closed {
		p.defect("multipart without closing boundary")
	}
	return true
}

// relatedRoot returns the index of the root part of a multipart/related
// (RFC 2387): the one named by start, else the first.
func (p *parser) relatedRoot(it partIter, start string) int {
	start = cleanID(strings.Trim(strings.TrimSpace(start), "<>"))
	if start == "" {
		return 0
	}
	for i := 0; it.next() && i < p.lim.MaxParts; i++ {
		end := bytes.Index(it.part, []byte("\n\n"))
		if e := bytes.Index(it.part, []byte("\n\r\n")); e >= 0 && (end < 0 || e < end) {
			end = e
		}
		if end < 0 {
			end = len(it.part)
		}
		// A throwaway parser: defects in the header show up in the walk.
		quiet := parser{msg: &Message{}}
		h, _, _ := quiet.readHeader(it.part[:end], 0)
		if v, ok := h.get("Content-Id"); ok && cleanID(strings.Trim(strings.TrimSpace(v), "<>")) == start {
			return i
		}
	}
	return 0
}

// partIter splits a multipart body at its delimiter lines.
type partIter struct {
	body   []byte
	delim  []byte // "--" + boundary
	pos    int    // start of the next part
	part   []byte
	closed bool
	done   bool
}

// findDelim finds the next delimiter line at or after from: the boundary
// at the start of a line, optionally "--", then only white space.
func (it *partIter) findDelim(from int) (at, after int, closing, ok bool) {
	b := it.body
	for from < len(b) {
		k := bytes.Index(b[from:], it.delim)
		if k < 0 {
			return 0, 0, false, false
		}
		at = from + k
		from = at + 1
		if at > 0 && b[at-1] != '\n' {
			continue
		}
		j := at + len(it.delim)
		closing = j+1 < len(b) && b[j] == '-' && b[j+1] == '-'
		if closing {
			j += 2
		}
		for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\r') {
			j++
		}
		if j == len(b) {
			return at, j, closing, true
		}
		if b[j] == '\n' {
			return at, j + 1, closing, true
		}
	}
	return 0, 0, false, false
}

// start skips the preamble; it reports whether a delimiter exists at all.
func (it *partIter) start() bool {
	_, after, closing, ok := it.findDelim(0)
	if !ok {
		return false
	}
	it.pos, it.closed, it.done = after, closing, closing
	return true
}

func (it *partIter) next() bool {
	if it.done {
		return false
	}
	at, after, closing, ok := it.findDelim(it.pos)
	if !ok {
		// No closing delimiter: the last part runs to the end.
		it.part, it.done = it.body[it.pos:], true
		return true
	}
	end := at
	// The line break before a delimiter belongs to the delimiter.
	if end > it.pos && it.body[end-1] == '\n' {
		end--
		if end > it.pos && it.body[end-1] == '\r' {
			end--
		}
	}
	it.part, it.pos = it.body[it.pos:end], after
	if closing {
		it.closed, it.done = true, true
	}
	return true
}

// leaf handles a non-multipart entity: a body text or an attachment.
func (p *parser) leaf(h header, ct string, ps params, body []byte, c walkCtx) {
	fb := windows1252
	if cs := lookupCharset(ps.get("charset")); cs.kind == csOther {
		fb = cs
	}
	disp, dps := p.disposition(h)
	name := ""
	if pr, ok := dps.find("filename"); ok {
		name = p.paramText(pr, fb)
	}
	if pr, ok := ps.find("name"); ok && name == "" {
		name = p.paramText(pr, fb)
	}
	name = fileName(name)
	isAttachment := disp == "attachment" || name != "" || c.resource
	if !isAttachment && (ct == "text/plain" || ct == "text/html") {
		if c.nested {
			// The body of an attached message: covered by that attachment.
			return
		}
		switch {
		case ct == "text/plain" && (c.alt == nil || !c.alt.plain):
			text := p.textBody(h, ps, body, false)
			if c.alt != nil {
				c.alt.plain = true
			}
			if !p.havePlain || strings.TrimSpace(p.msg.Text) == "" {
				p.msg.Text, p.havePlain = text, true
			} else if text != "" {
				// More inline text (a split body, a list footer) belongs
				// to the text, not to an unnamed attachment.
				p.msg.Text = strings.TrimRight(p.msg.Text, "\n") + "\n" + text
			}
			return
		case ct == "text/html" && !p.haveHTML:
			p.msg.HTML, p.haveHTML = p.textBody(h, ps, body, true), true
			return
		}
	}
	cid := contentID(h)
	p.attach(h, body, Attachment{
		Name:        name,
		ContentType: ct,
		Inline:      disp == "inline" || cid != "" && c.related,
		ContentID:   cid,
	})
}

func (p *parser) disposition(h header) (string, params) {
	v, ok := h.get("Content-Disposition")
	if !ok {
		return "", nil
	}
	return parseParams(v)
}

func contentID(h header) string {
	v, _ := h.get("Content-Id")
	return cleanText(cleanID(strings.Trim(strings.TrimSpace(stripComments(v)), "<>")))
}

// attach records an attachment with the size and SHA-256 of its decoded
// content.
func (p *parser) attach(h header, body []byte, a Attachment) {
	te := p.parseTransferEncoding(h)
	if p.budget <= 0 {
		p.defect("decoding budget spent; attachment not hashed")
		p.msg.Attachments = append(p.msg.Attachments, a)
		return
	}
	s := sha256.New()
	var n int64
	p.decodeChunks(te, body, func(b []byte) {
		s.Write(b)
		n += int64(len(b))
	})
	p.budget -= n
	a.Size = n
	var sum [sha256.Size]byte
	a.SHA256 = hex.EncodeToString(s.Sum(sum[:0]))
	p.msg.Attachments = append(p.msg.Attachments, a)
}

// message handles an attached message (RFC 2046 §5.2.1): it is one
// attachment, and its own attachments are listed after it.
func (p *parser) message(h header, ct string, ps params, body []byte, c walkCtx) {
	te := p.parseTransferEncoding(h)
	disp, dps := p.disposition(h)
	name := ""
	if pr, ok := dps.find("filename"); ok {
		name = fileName(p.paramText(pr, windows1252))
	}
	if pr, ok := ps.find("name"); ok && name == "" {
		name = fileName(p.paramText(pr, windows1252))
	}
	cid := contentID(h)
	a := Attachment{Name: name, ContentType: ct, Inline: disp == "inline" || cid != "" && c.related, ContentID: cid}
	if p.budget <= 0 {
		p.defect("decoding budget spent; attached message not parsed")
		p.msg.Attachments = append(p.msg.Attachments, a)
		return
	}
	data := p.decodeAll(te, body)
	p.budget -= int64(len(data))
	nh, nb, over := p.readHeader(data, p.lim.MaxHeaderBytes)
	if a.Name == "" {
		subj := ""
		if v, ok := nh.get("Subject"); ok {
			subj = p.decodeWords(v, headerFallbackCharset(nh))
		}
		a.Name = "forwarded.eml"
		if s := fileName(subj); s != "" {
			a.Name = truncate(s, 100) + ".eml"
		}
	}
	sum := sha256.Sum256(data)
	a.Size, a.SHA256 = int64(len(data)), hex.EncodeToString(sum[:])
	p.msg.Attachments = append(p.msg.Attachments, a)
	if over {
		p.defect("attached message has an oversized header; not parsed")
		return
	}
	p.walk(nh, data[nb:], walkCtx{depth: c.depth + 1, nested: true})
}

// fileName makes a name safe to show and to use as a file name: clean
// text, no directories, not absurdly long.
func fileName(s string) string {
	s = strings.TrimSpace(cleanText(s))
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if s == "." || s == ".." {
		return ""
	}
	return truncate(s, 255)
}

// textBody decodes a text part to UTF-8 with LF line ends.
func (p *parser) textBody(h header, ps params, body []byte, html bool) string {
	data := p.decodeAll(p.parseTransferEncoding(h), body)
	p.budget -= int64(len(data))
	label := ps.get("charset")
	if html && label == "" && !utf8.Valid(data) {
		// Use the <meta> charset of the document, as a browser would.
		_, label, _ = htmlcharset.DetermineEncoding(data, "text/html")
		p.defect("HTML part without charset is not UTF-8; read as " + label)
	}
	text := normalizeText(p.toUTF8(data, label))
	if !html && strings.EqualFold(ps.get("format"), "flowed") {
		text = unflow(text, strings.EqualFold(ps.get("delsp"), "yes"))
	}
	return text
}

// normalizeText turns CRLF and lone CR into LF and drops the other
// control characters but tab and form feed: they carry no text and only
// confuse whatever shows or stores it.
func normalizeText(b []byte) string {
	i := 0
	for i < len(b) && (b[i] >= 0x20 || b[i] == '\n' || b[i] == '\t') {
		i++
	}
	if i == len(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b))
	start := 0
	for ; i < len(b); i++ {
		c := b[i]
		if c >= 0x20 || c == '\n' || c == '\t' {
			continue
		}
		sb.Write(b[start:i])
		start = i + 1
		switch {
		case c == '\r' && (i+1 == len(b) || b[i+1] != '\n'):
			sb.WriteByte('\n')
		case c == '\f':
			sb.WriteByte(c)
		}
	}
	sb.Write(b[start:])
	return sb.String()
}
