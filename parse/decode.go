package parse

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"
)

type transferEncoding uint8

const (
	teIdentity transferEncoding = iota // 7bit, 8bit, binary, or unknown
	teQP
	teBase64
)

// parseTransferEncoding reads Content-Transfer-Encoding (RFC 2045 §6). An
// unknown encoding leaves the data as it is, so nothing is lost.
func (p *parser) parseTransferEncoding(h header) transferEncoding {
	v, ok := h.get("Content-Transfer-Encoding")
	if !ok {
		return teIdentity
	}
	v = strings.ToLower(strings.Trim(strings.TrimSpace(v), `"`))
	if i := strings.IndexAny(v, " \t;("); i >= 0 {
		v = v[:i]
	}
	switch v {
	case "", "7bit", "8bit", "binary", "7-bit", "8-bit":
		return teIdentity
	case "quoted-printable", "quoted_printable":
		return teQP
	case "base64", "base-64":
		return teBase64
	}
	p.defect("unknown Content-Transfer-Encoding " + quoteShort(v) + "; data kept as is")
	return teIdentity
}

// decoder undoes a transfer encoding chunk by chunk; chunks must start at
// line boundaries. Invalid input never loses data: invalid quoted-printable
// escapes are kept literally, and from the line where base64 turns invalid
// the data is passed on as it is.
type decoder struct {
	te      transferEncoding
	bad     bool // invalid quoted-printable or an incomplete base64 quantum
	skipped bool // stray characters skipped in base64

	// base64 state
	acc uint32
	n   int  // sextets in acc
	raw bool // gave up decoding base64: the rest is passed on as it is
}

// appendDecoded appends the decoded form of src to dst.
func (d *decoder) appendDecoded(dst, src []byte) []byte {
	switch d.te {
	case teQP:
		return d.appendQP(dst, src)
	case teBase64:
		return d.appendBase64(dst, src)
	}
	return append(dst, src...)
}

// appendQP decodes quoted-printable (RFC 2045 §6.7). Hard line breaks keep
// their CRLF or LF.
func (d *decoder) appendQP(dst, src []byte) []byte {
	for len(src) > 0 {
		var line []byte
		eol := ""
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
			eol = "\n"
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
				eol = "\r\n"
			}
		} else {
			line, src = src, nil
		}
		// Trailing white space was added in transport (RFC 2045 §6.7 rule 3).
		line = trimEOL(line)
		soft := false
		for len(line) > 0 {
			i := bytes.IndexByte(line, '=')
			if i < 0 {
				dst = append(dst, line...)
				break
			}
			dst = append(dst, line[:i]...)
			line = line[i:]
			switch {
			case len(line) == 1:
				soft = true
				line = nil
			case len(line) >= 3 && isHex(line[1]) && isHex(line[2]):
				dst = append(dst, unhex(line[1])<<4|unhex(line[2]))
				line = line[3:]
			default:
				d.bad = true
				dst = append(dst, '=')
				line = line[1:]
			}
		}
		if !soft {
			dst = append(dst, eol...)
		}
	}
	return dst
}

const (
	b64Invalid = 0xFF
	b64Space   = 0xFE
	b64Pad     = 0xFD
)

var b64Values = func() (t [256]byte) {
	for i := range t {
		t[i] = b64Invalid
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	for _, c := range []byte(" \t\r\n\f\v") {
		t[c] = b64Space
	}
	t['='] = b64Pad
	return t
}()

// appendBase64 decodes base64 (RFC 2045 §6.8) line by line: whole lines go
// through encoding/base64, ragged ones byte by byte. Padding in the middle
// (concatenated encodings) is accepted, and so are a few stray characters
// in a line that is otherwise base64. Any other invalid line is taken, with
// everything after it, as it is: that is usually a footer a list server
// appended, or a part that was never encoded.
func (d *decoder) appendBase64(dst, src []byte) []byte {
	for len(src) > 0 {
		if d.raw {
			return append(dst, src...)
		}
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i+1], src[i+1:]
		} else {
			src = nil
		}
		body := trimEOL(line)
		if d.n == 0 && len(body)%4 == 0 && len(body) > 0 {
			dst = growBy(dst, len(body)/4*3)
			if n, err := base64.StdEncoding.Decode(dst[len(dst):len(dst)+len(body)/4*3], body); err == nil {
				dst = dst[:len(dst)+n]
				continue
			}
		}
		mark, acc, n := len(dst), d.acc, d.n
		stray := false
		for _, c := range line {
			v := b64Values[c]
			switch {
			case v < 64:
				d.acc = d.acc<<6 | uint32(v)
				d.n++
				if d.n == 4 {
					dst = append(dst, byte(d.acc>>16), byte(d.acc>>8), byte(d.acc))
					d.acc, d.n = 0, 0
				}
			case v == b64Space:
			case v == b64Pad:
				dst = d.flushBase64(dst)
			case stray:
			case looksBase64(line):
				stray, d.skipped = true, true
			default:
				d.raw = true
				dst, d.acc, d.n = dst[:mark], acc, n
				dst = d.flushBase64(dst)
				dst = append(dst, line...)
				return append(dst, src...)
			}
		}
	}
	return dst
}

// looksBase64 tells a corrupted base64 line (a few stray characters in a
// long run of the alphabet) from text, where words are separated by spaces
// and punctuation.
func looksBase64(line []byte) bool {
	alpha, other := 0, 0
	for _, c := range bytes.TrimSpace(line) {
		switch v := b64Values[c]; {
		case v < 64:
			alpha++
		case v != b64Pad:
			other++
		}
	}
	return alpha >= 20 && other*6 <= alpha
}

// trimEOL drops trailing white space and the line end.
func trimEOL(b []byte) []byte {
	for len(b) > 0 {
		switch b[len(b)-1] {
		case ' ', '\t', '\r', '\n':
			b = b[:len(b)-1]
		default:
			return b
		}
	}
	return b
}

// flushBase64 emits the bytes of an incomplete quantum.
func (d *decoder) flushBase64(dst []byte) []byte {
	switch d.n {
	case 1:
		d.bad = true // six bits are not a byte
	case 2:
		dst = append(dst, byte(d.acc>>4))
	case 3:
		dst = append(dst, byte(d.acc>>10), byte(d.acc>>2))
	}
	d.acc, d.n = 0, 0
	return dst
}

// finish ends the input.
func (d *decoder) finish(dst []byte) []byte {
	if d.te == teBase64 && !d.raw {
		return d.flushBase64(dst)
	}
	return dst
}

func growBy(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), 2*cap(b)+n)
	copy(nb, b)
	return nb
}

// decodeAll returns the decoded body; for identity encodings it is body itself.
func (p *parser) decodeAll(te transferEncoding, body []byte) []byte {
	if te == teIdentity {
		return body
	}
	d := decoder{te: te}
	out := d.appendDecoded(make([]byte, 0, len(body)), body)
	out = d.finish(out)
	p.noteBad(&d)
	return out
}

// decodeChunks feeds the decoded body to emit in bounded chunks, so that
// hashing a large attachment needs no buffer of its size.
func (p *parser) decodeChunks(te transferEncoding, body []byte, emit func([]byte)) {
	if te == teIdentity {
		emit(body)
		return
	}
	const chunk = 32 << 10
	if p.scratch == nil {
		p.scratch = make([]byte, 0, chunk+chunk/2)
	}
	d := decoder{te: te}
	for len(body) > 0 {
		n := len(body)
		if n > chunk {
			// Cut after a line end, or anywhere if a line is that long:
			// base64 carries its state over, and quoted-printable lines
			// that long are broken anyway.
			n = chunk
			if i := bytes.IndexByte(body[chunk:], '\n'); i >= 0 && i < chunk {
				n = chunk + i + 1
			}
		}
		out := d.appendDecoded(p.scratch[:0], body[:n])
		emit(out)
		if cap(out) <= 4*chunk {
			p.scratch = out[:0]
		}
		body = body[n:]
	}
	if out := d.finish(p.scratch[:0]); len(out) > 0 {
		emit(out)
	}
	p.noteBad(&d)
}

func (p *parser) noteBad(d *decoder) {
	switch {
	case d.te == teQP && d.bad:
		p.defect("invalid quoted-printable kept as written")
	case d.raw:
		p.defect("invalid base64; undecodable rest kept as is")
	case d.skipped:
		p.defect("invalid base64; stray characters skipped")
	case d.bad:
		p.defect("invalid base64; incomplete last quantum")
	}
}

func quoteShort(s string) string {
	return strconv.Quote(truncate(s, 40))
}
