package parse

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// addressList parses every value of an address header (To may well appear
// twice) into one list.
func (p *parser) addressList(values []string, what string, fb charset) []Address {
	var out []Address
	for _, v := range values {
		out = append(out, p.parseAddresses(v, what, fb)...)
	}
	return out
}

// bareAddresses returns just the addresses of trace fields such as
// Delivered-To.
func (p *parser) bareAddresses(values []string, what string, fb charset) []string {
	var out []string
	for _, a := range p.addressList(values, what, fb) {
		out = append(out, a.Address)
	}
	return out
}

// parseAddresses parses an RFC 5322 address list with net/mail and, when that
// fails, with a lenient parser that accepts what mailers really write:
// unquoted display names with commas, bare addresses, trailing garbage.
func (p *parser) parseAddresses(v, what string, fb charset) []Address {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	v = p.rawHeaderText(v, fb)
	list, err := p.addrs.ParseList(v)
	if err == nil {
		out := make([]Address, 0, len(list))
		for _, a := range list {
			name := a.Name
			if strings.Contains(name, "=?") {
				// net/mail leaves encoded words inside quoted strings alone,
				// but mailers put them there all the time.
				name = p.decodeWords(name, fb)
			}
			out = append(out, Address{Name: strings.TrimSpace(cleanText(name)), Address: cleanText(a.Address)})
		}
		return out
	}
	p.defect(fmt.Sprintf("malformed %s address list", what))
	return p.lenientAddresses(v, fb)
}

func (p *parser) lenientAddresses(v string, fb charset) []Address {
	var (
		out     []Address
		pending []string // segments without an address: parts of a display name
	)
	for _, seg := range splitUnquoted(v) {
		seg = strings.TrimSpace(seg)
		if seg == "" {
			continue
		}
		if !strings.ContainsAny(seg, "@<") {
			pending = append(pending, seg)
			continue
		}
		if len(pending) > 0 {
			seg = strings.Join(pending, ", ") + ", " + seg
			pending = pending[:0]
		}
		if a, ok := p.lenientAddress(seg, fb); ok {
			out = append(out, a)
		}
	}
	if len(pending) > 0 && len(out) == 0 {
		// Something like "MAILER-DAEMON": keep it, so that the caller can say
		// what is wrong with it.
		if a := cleanAddr(stripAllComments(strings.Join(pending, ", "))); a != "" {
			out = append(out, Address{Address: a})
		}
	}
	return out
}

// splitUnquoted splits an address list at commas and semicolons that are
// not inside quotes, angle brackets or comments.
func splitUnquoted(s string) []string {
	var (
		out   []string
		start int
		quote bool
		angle bool
		depth int
	)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quote:
			i++
		case c == '"' && depth == 0:
			quote = !quote
		case quote:
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case (c == ',' || c == ';') && !angle:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func (p *parser) lenientAddress(seg string, fb charset) (Address, bool) {
	if lt := indexUnquoted(seg, '<'); lt >= 0 {
		name, rest := seg[:lt], seg[lt+1:]
		addr := rest
		if gt := strings.IndexByte(rest, '>'); gt >= 0 {
			addr = rest[:gt]
			if strings.Contains(stripAllComments(rest[gt+1:]), "@") {
				return Address{}, false // "<a@b>c@d": two addresses, trust neither
			}
			if trail := strings.TrimSpace(rest[gt+1:]); trail != "" && strings.TrimSpace(name) == "" {
				name = trail // "<a@b> (Name)"
			}
		}
		// A group name ("Team: <a@b>") is not part of the display name.
		if c := indexUnquoted(name, ':'); c >= 0 {
			name = name[c+1:]
		}
		addr = cleanAddr(addr)
		if addr == "" {
			return Address{}, false
		}
		return Address{Name: p.displayName(name, fb), Address: addr}, true
	}
	// Comments are no part of the address: "(a@b) c@d" is c@d.
	fields := strings.Fields(stripAllComments(seg))
	for i, f := range fields {
		if !strings.Contains(f, "@") {
			continue
		}
		name := strings.Join(append(fields[:i:i], fields[i+1:]...), " ")
		if c := strings.IndexByte(f, ':'); c >= 0 && c < strings.IndexByte(f, '@') && !strings.HasPrefix(strings.ToLower(f), "mailto:") {
			f = f[c+1:] // "Team:a@b"
		}
		addr := cleanAddr(f)
		if addr == "" {
			return Address{}, false
		}
		return Address{Name: p.displayName(name, fb), Address: addr}, true
	}
	return Address{}, false
}

// indexUnquoted returns the index of the first c outside a quoted string.
func indexUnquoted(s string, c byte) int {
	quote := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quote {
				i++
			}
		case '"':
			quote = !quote
		case c:
			if !quote {
				return i
			}
		}
	}
	return -1
}

func (p *parser) displayName(s string, fb charset) string {
	s = strings.TrimSpace(s)
	if i := indexUnquoted(s, ':'); i >= 0 && !strings.Contains(s[:i], "=?") {
		s = strings.TrimSpace(s[i+1:])
	}
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '(' && s[len(s)-1] == ')') {
		s = s[1 : len(s)-1]
		s = strings.ReplaceAll(s, `\"`, `"`)
		s = strings.ReplaceAll(s, `\\`, `\`)
	}
	s = strings.TrimSpace(p.decodeWords(s, fb))
	if strings.Count(s, `"`)%2 == 1 {
		// A stray quote, as in `"John <j@x>`.
		s = strings.TrimSpace(strings.Trim(s, `"`))
	}
	return s
}

// cleanAddr strips what lenient parsing leaves around an address: white
// space, quotes, a mailto: scheme, an obsolete source route.
func cleanAddr(a string) string {
	// Only folding white space goes; other control characters stay, so
	// that mailaddr refuses the address instead of reading another one.
	a = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, a)
	a = strings.Trim(a, `"'<>()[],;`)
	if len(a) >= 7 && strings.EqualFold(a[:7], "mailto:") {
		a = a[7:]
	}
	if strings.HasPrefix(a, "@") {
		if c := strings.IndexByte(a, ':'); c >= 0 {
			a = a[c+1:]
		}
	}
	return a
}

// addressProblem says why a is not a usable mailbox, or "" when it is.
func addressProblem(a string) string {
	at := strings.LastIndexByte(a, '@')
	switch {
	case at < 0:
		return "has no @"
	case at == 0:
		return "has an empty local part"
	case at == len(a)-1:
		return "has an empty domain"
	}
	return ""
}

// ids extracts message ids (RFC 5322 §3.6.4) without their angle brackets
// from Message-ID, In-Reply-To or References, skipping comments and the
// free text old mailers put in In-Reply-To.
func (p *parser) ids(v, what string) []string {
	v = stripComments(v)
	var ids []string
	if strings.IndexByte(v, '<') >= 0 {
		for {
			i := strings.IndexByte(v, '<')
			if i < 0 {
				break
			}
			v = v[i+1:]
			var id string
			if j := strings.IndexByte(v, '>'); j >= 0 {
				id, v = v[:j], v[j+1:]
			} else {
				p.defect(fmt.Sprintf("unterminated id in %s", what))
				id, v = v, ""
				if k := strings.IndexAny(id, " \t<"); k >= 0 {
					id = id[:k]
				}
			}
			if id = cleanID(id); id != "" {
				ids = append(ids, id)
			}
		}
		return ids
	}
	fields := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
	for _, f := range fields {
		if strings.Contains(f, "@") {
			if id := cleanID(f); id != "" {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 && len(fields) == 1 {
		if id := cleanID(fields[0]); id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		p.defect(fmt.Sprintf("%s without angle brackets", what))
	}
	return ids
}

// stripComments removes parenthesized comments outside angle brackets.
func stripComments(v string) string {
	if strings.IndexByte(v, '(') < 0 {
		return v
	}
	var b strings.Builder
	depth, angle := 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case angle:
			angle = c != '>'
		case c == '(':
			depth++
			continue
		case c == ')' && depth > 0:
			depth--
			continue
		case depth > 0:
			continue
		case c == '<':
			angle = true
		}
		b.WriteByte(c)
	}
	return b.String()
}

func cleanID(id string) string {
	id = strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, id)
	return strings.Trim(id, `"'`)
}
