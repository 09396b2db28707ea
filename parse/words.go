package parse

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"
)

// headerFallbackCharset is the charset assumed for raw 8-bit header text
// that is not UTF-8 (RFC 6532 allows only UTF-8): mailers that send such
// headers use the charset of their body, else Windows-1252 is the best guess.
func headerFallbackCharset(h header) charset {
	if v, ok := h.get("Content-Type"); ok {
		_, params := parseParams(v)
		if cs := lookupCharset(params.get("charset")); cs.kind == csOther {
			return cs
		}
	}
	return windows1252
}

// decodeWords decodes a header value with RFC 2047 encoded words into clean
// UTF-8 (see cleanText). Adjacent encoded words in the same charset are
// joined before conversion, as mailers split multibyte characters across
// them. Words in unknown charsets and undecodable words are kept as written.
func (p *parser) decodeWords(s string, fb charset) string {
	if !strings.Contains(s, "=?") {
		return cleanText(p.rawHeaderText(s, fb))
	}
	var (
		out       strings.Builder
		run       []byte // decoded bytes of the current run of words
		runCS     string
		runStart  int // where the run starts in s, to keep it as written
		runEnd    int
		textStart int
		pos       int
		prevWord  bool
		failEnd   = -1
	)
	out.Grow(len(s))
	flush := func() {
		if runEnd > runStart {
			cs := lookupCharset(runCS)
			if cs.kind == csUnknown || cs.kind == csNone {
				p.defect(fmt.Sprintf("unknown charset %q in encoded word", cs.name))
				out.WriteString(s[runStart:runEnd])
			} else {
				b, bad := convert(run, cs)
				if bad {
					p.defect("invalid bytes in encoded word repaired")
				}
				out.Write(b)
			}
		}
		run, runStart, runEnd = run[:0], 0, 0
	}
	for {
		j := strings.Index(s[pos:], "=?")
		if j < 0 {
			break
		}
		start := pos + j
		w, ok := scanWord(s, start, &failEnd)
		if !ok {
			pos = start + 2
			continue
		}
		payload, ok := w.decode()
		if !ok {
			p.defect("undecodable encoded word kept as written")
			pos, prevWord = w.end, false
			continue
		}
		between := s[textStart:start]
		joined := prevWord && isAllWSP(between)
		if !joined {
			flush()
			out.WriteString(p.rawHeaderText(between, fb))
		}
		if !joined || normCharset(w.charset) != normCharset(runCS) {
			flush()
			runCS, runStart = w.charset, start
		}
		run = append(run, payload...)
		runEnd = w.end
		prevWord, textStart, pos = true, w.end, w.end
	}
	flush()
	out.WriteString(p.rawHeaderText(s[textStart:], fb))
	return cleanText(out.String())
}

// rawHeaderText returns text found outside encoded words as UTF-8.
func (p *parser) rawHeaderText(s string, fb charset) string {
	if utf8.ValidString(s) {
		return s
	}
	p.defect(fmt.Sprintf("8-bit header text is not UTF-8; read as %s", fb.name))
	b, _ := convert([]byte(s), fb)
	return string(b)
}

func isAllWSP(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n' {
			return false
		}
	}
	return true
}

type encodedWord struct {
	charset string
	enc     byte // 'Q' or 'B'
	text    string
	end     int // index after "?="
}

// scanWord recognizes "=?charset?enc?text?=" at s[start:]. failEnd
// remembers where an earlier scan met white space without finding "?=", so
// that a header full of "=?" stays linear.
func scanWord(s string, start int, failEnd *int) (encodedWord, bool) {
	var w encodedWord
	i := start + 2
	k := i
	for ; k < len(s) && s[k] != '?'; k++ {
		if c := s[k]; c <= ' ' || c >= 0x7f || k-i > 75 {
			return w, false
		}
	}
	if k == i || k+2 >= len(s) || s[k+2] != '?' {
		return w, false
	}
	switch s[k+1] {
	case 'Q', 'q':
		w.enc = 'Q'
	case 'B', 'b':
		w.enc = 'B'
	default:
		return w, false
	}
	t := k + 3
	if t < *failEnd {
		return w, false
	}
	for m := t; m < len(s); m++ {
		switch s[m] {
		case '?':
			if m+1 < len(s) && s[m+1] == '=' {
				w.charset, w.text, w.end = s[i:k], s[t:m], m+2
				return w, true
			}
		case ' ', '\t', '\r', '\n':
			*failEnd = m
			return w, false
		}
	}
	*failEnd = len(s)
	return w, false
}

func (w encodedWord) decode() ([]byte, bool) {
	if w.enc == 'B' {
		if b, err := base64.StdEncoding.DecodeString(w.text); err == nil {
			return b, true
		}
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(w.text, "="))
		return b, err == nil
	}
	b := make([]byte, 0, len(w.text))
	for i := 0; i < len(w.text); i++ {
		c := w.text[i]
		switch {
		case c == '_':
			b = append(b, ' ')
		case c == '=' && i+2 < len(w.text) && isHex(w.text[i+1]) && isHex(w.text[i+2]):
			b = append(b, unhex(w.text[i+1])<<4|unhex(w.text[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return b, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// cleanText makes s safe to show and store: valid UTF-8, and no C0 control
// characters other than tab (no CR or LF to inject header lines, no NUL).
func cleanText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	i := 0
	for i < len(s) && (s[i] >= 0x20 || s[i] == '\t') {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		if c := s[i]; c >= 0x20 || c == '\t' {
			b.WriteByte(c)
		}
	}
	return b.String()
}
