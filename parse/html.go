package parse

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlToText renders an HTML body as plain text for mail that has no text
// part: no scripts, styles or head, block elements on their own lines,
// entities decoded, white space collapsed, at most one blank line in a row.
func htmlToText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	w := textWriter{b: make([]byte, 0, len(s)/2)}
	var skip atom.Atom // element whose content is dropped until it ends
	pre := 0
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		switch tt {
		case html.TextToken:
			if skip != 0 {
				continue
			}
			if pre > 0 {
				w.pre(z.Text())
			} else {
				w.text(z.Text())
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			a := tagAtom(z.Raw())
			end := tt == html.EndTagToken
			if skip != 0 {
				// <body> ends a <head> nobody closed.
				if end && a == skip || skip == atom.Head && a == atom.Body {
					skip = 0
				}
				continue
			}
			switch a {
			case atom.Script, atom.Style, atom.Head, atom.Title, atom.Template, atom.Noscript:
				if tt == html.StartTagToken {
					skip = a
				}
			case atom.Br:
				w.newline()
			case atom.P, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6,
				atom.Blockquote, atom.Table, atom.Ul, atom.Ol, atom.Dl:
				w.block(2)
			case atom.Pre:
				w.block(2)
				if tt == html.StartTagToken {
					pre++
				} else if end && pre > 0 {
					pre--
				}
			case atom.Div, atom.Li, atom.Tr, atom.Dt, atom.Dd, atom.Hr, atom.Section,
				atom.Article, atom.Header, atom.Footer, atom.Nav, atom.Aside, atom.Main,
				atom.Address, atom.Figure, atom.Figcaption, atom.Caption, atom.Form,
				atom.Fieldset, atom.Legend, atom.Center, atom.Tbody, atom.Thead, atom.Tfoot:
				w.block(1)
			case atom.Td, atom.Th:
				w.space = true
			}
		}
	}
	out := strings.TrimSpace(string(w.b))
	if !utf8.ValidString(out) {
		out = strings.ToValidUTF8(out, "\uFFFD")
	}
	return out
}

// tagAtom returns the atom of the tag in the raw bytes of a tag token. It
// avoids Tokenizer.TagName, which copies every name.
func tagAtom(raw []byte) atom.Atom {
	i := 1 // '<'
	if i < len(raw) && raw[i] == '/' {
		i++
	}
	var buf [12]byte
	n := 0
	for ; i < len(raw); i++ {
		c := raw[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			break
		}
		if n == len(buf) {
			return 0
		}
		buf[n] = c
		n++
	}
	return atom.Lookup(buf[:n])
}

// textWriter collects text: white space runs become one space, never at
// the start or end of a line, and at most two line breaks in a row.
type textWriter struct {
	b     []byte
	space bool // a space is owed before the next word
}

func (w *textWriter) trailingNewlines() int {
	n := 0
	for i := len(w.b) - 1; i >= 0 && w.b[i] == '\n'; i-- {
		n++
	}
	return n
}

// block makes sure the text that follows starts after n line breaks.
func (w *textWriter) block(n int) {
	w.space = false
	if len(w.b) == 0 {
		return
	}
	for k := w.trailingNewlines(); k < n; k++ {
		w.b = append(w.b, '\n')
	}
}

// newline adds a line break, as <br> does, up to one blank line.
func (w *textWriter) newline() {
	w.space = false
	if len(w.b) > 0 && w.trailingNewlines() < 2 {
		w.b = append(w.b, '\n')
	}
}

func (w *textWriter) text(t []byte) {
	for i := 0; i < len(t); {
		c := t[i]
		size := 1
		isSpace := c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
		if c >= utf8.RuneSelf {
			var r rune
			r, size = utf8.DecodeRune(t[i:])
			isSpace = r == '\u00a0' || r == '\u2007' || r == '\u202f'
			if r == utf8.RuneError && size == 1 {
				// Keep the text valid UTF-8 whatever the tokenizer did.
				w.flushSpace()
				w.b = append(w.b, "\uFFFD"...)
				i++
				continue
			}
		}
		if isSpace {
			w.space = true
		} else if c < 0x20 {
			// Other control characters carry no text.
		} else {
			w.flushSpace()
			w.b = append(w.b, t[i:i+size]...)
		}
		i += size
	}
}

func (w *textWriter) flushSpace() {
	if w.space && len(w.b) > 0 && w.b[len(w.b)-1] != '\n' {
		w.b = append(w.b, ' ')
	}
	w.space = false
}

// pre writes preformatted text with its line breaks.
func (w *textWriter) pre(t []byte) {
	w.flushSpace()
	for _, c := range t {
		switch {
		case c == '\r':
		case c == '\n':
			w.b = append(w.b, '\n')
		case c < 0x20 && c != '\t':
		default:
			w.b = append(w.b, c)
		}
	}
}
