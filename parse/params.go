package parse

import (
	"slices"
	"strconv"
	"strings"
)

type param struct {
	name  string // lower case, RFC 2231 sections already joined
	value string // as written, RFC 2231 percent-encoding undone (still in its charset)
	cs    string // RFC 2231 charset, if any
}

type params []param

func (ps params) get(name string) string {
	for _, p := range ps {
		if p.name == name {
			return p.value
		}
	}
	return ""
}

func (ps params) find(name string) (param, bool) {
	for _, p := range ps {
		if p.name == name {
			return p, true
		}
	}
	return param{}, false
}

// parseParams parses a Content-Type or Content-Disposition value (RFC 2045
// §5.1, RFC 2183, RFC 2231) leniently: unquoted values with spaces,
// duplicate parameters (the first wins), missing values and unterminated
// quotes are all accepted. It returns the lower-cased value before the
// first ";".
func parseParams(v string) (string, params) {
	head, rest, _ := strings.Cut(v, ";")
	head = strings.ToLower(strings.TrimSpace(head))
	if rest == "" {
		return head, nil
	}
	type section struct {
		n       int
		encoded bool
		value   string
	}
	var (
		ps       params
		sections map[string][]section
	)
	for len(rest) > 0 {
		rest = strings.TrimLeft(rest, " \t\r\n;")
		if rest == "" {
			break
		}
		eq := strings.IndexAny(rest, "=;")
		if eq < 0 || rest[eq] == ';' {
			// A name without a value: skip it.
			if eq < 0 {
				break
			}
			rest = rest[eq+1:]
			continue
		}
		name := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimLeft(rest[eq+1:], " \t\r\n")
		var val string
		if strings.HasPrefix(rest, `"`) {
			val, rest = quoted(rest)
		} else {
			end := strings.IndexByte(rest, ';')
			if end < 0 {
				end = len(rest)
			}
			val, rest = strings.TrimSpace(rest[:end]), rest[end:]
		}
		if name == "" {
			continue
		}
		// RFC 2231: name*=charset'lang'value, name*0=..., name*1*=...
		if star := strings.IndexByte(name, '*'); star >= 0 {
			base, suffix := name[:star], name[star+1:]
			encoded := strings.HasSuffix(suffix, "*") || suffix == ""
			suffix = strings.TrimSuffix(suffix, "*")
			n := 0
			if suffix != "" {
				var err error
				if n, err = strconv.Atoi(suffix); err != nil || n < 0 || n > 999 {
					continue
				}
			}
			if sections == nil {
				sections = make(map[string][]section)
			}
			if len(sections[base]) < 1000 {
				sections[base] = append(sections[base], section{n, encoded, val})
			}
			continue
		}
		if _, dup := ps.find(name); !dup {
			ps = append(ps, param{name: name, value: val})
		}
	}
	for base, secs := range sections {
		slices.SortStableFunc(secs, func(a, b section) int { return a.n - b.n })
		var b strings.Builder
		cs := ""
		for i, s := range secs {
			if i > 0 && s.n == secs[i-1].n {
				continue
			}
			val := s.value
			if s.encoded {
				if i == 0 {
					// charset'language'value
					if c1 := strings.IndexByte(val, '\''); c1 >= 0 {
						if c2 := strings.IndexByte(val[c1+1:], '\''); c2 >= 0 {
							cs, val = val[:c1], val[c1+1+c2+1:]
						}
					}
				}
				val = percentDecode(val)
			}
			b.WriteString(val)
		}
		// The extended form wins over a plain one of the same name.
		ext := param{name: base, value: b.String(), cs: cs}
		if i := slices.IndexFunc(ps, func(p param) bool { return p.name == base }); i >= 0 {
			ps[i] = ext
		} else {
			ps = append(ps, ext)
		}
	}
	return head, ps
}

// quoted returns the content of the quoted string at the start of s and
// what follows it; an unterminated string runs to the next ";" or the end.
func quoted(s string) (string, string) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:]
		default:
			b.WriteByte(c)
		}
	}
	v := s[1:]
	if end := strings.IndexByte(v, ';'); end >= 0 {
		return strings.TrimSpace(v[:end]), v[end:]
	}
	return strings.TrimSpace(v), ""
}

func percentDecode(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// text returns a parameter value, such as a file name, as clean UTF-8:
// RFC 2231 charset applied, RFC 2047 encoded words (not allowed there, but
// common) decoded, raw 8-bit read as fb when it is not UTF-8.
func (p *parser) paramText(pr param, fb charset) string {
	v := pr.value
	if pr.cs != "" {
		cs := lookupCharset(pr.cs)
		if cs.kind == csUnknown {
			p.defect("unknown charset in RFC 2231 parameter")
		}
		b, _ := convert([]byte(v), cs)
		v = string(b)
	}
	return strings.TrimSpace(p.decodeWords(v, fb))
}
