package parse

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/unicode"
)

type csKind uint8

const (
	csNone    csKind = iota // no charset given
	csUnknown               // a charset nobody knows
	csUTF8
	csASCII
	csOther
)

type charset struct {
	kind csKind
	name string // normalized label, for defects
	enc  encoding.Encoding
	// ascii: pure ASCII input decodes to itself, so it needs no conversion.
	ascii bool
}

// Labels mail uses that the WHATWG and IANA tables lack, and utf-16, where
// WHATWG assumes little endian but MIME (RFC 2781) big endian unless a BOM
// says otherwise.
var charsetAliases = map[string]charset{
	"cp932":   {enc: japanese.ShiftJIS, ascii: true},
	"ms932":   {enc: japanese.ShiftJIS, ascii: true},
	"sjis":    {enc: japanese.ShiftJIS, ascii: true},
	"cp949":   {enc: korean.EUCKR, ascii: true},
	"ms949":   {enc: korean.EUCKR, ascii: true},
	"uhc":     {enc: korean.EUCKR, ascii: true},
	"cp936":   {enc: simplifiedchinese.GBK, ascii: true},
	"ms936":   {enc: simplifiedchinese.GBK, ascii: true},
	"euc-cn":  {enc: simplifiedchinese.GBK, ascii: true},
	"latin-1": {enc: charmap.Windows1252, ascii: true},
	"utf-16":  {enc: unicode.UTF16(unicode.BigEndian, unicode.UseBOM)},
	"utf16":   {enc: unicode.UTF16(unicode.BigEndian, unicode.UseBOM)},
}

// asciiLabels are the WHATWG names of the encodings that map ASCII to
// itself; everything else (ISO-2022-JP, UTF-16, EBCDIC...) is always decoded.
var asciiLabels = map[string]bool{
	"windows-1250": true, "windows-1251": true, "windows-1252": true, "windows-1253": true,
	"windows-1254": true, "windows-1255": true, "windows-1256": true, "windows-1257": true,
	"windows-1258": true, "windows-874": true, "iso-8859-2": true, "iso-8859-3": true,
	"iso-8859-4": true, "iso-8859-5": true, "iso-8859-6": true, "iso-8859-7": true,
	"iso-8859-8": true, "iso-8859-8-i": true, "iso-8859-10": true, "iso-8859-13": true,
	"iso-8859-14": true, "iso-8859-15": true, "iso-8859-16": true, "koi8-r": true,
	"koi8-u": true, "macintosh": true, "x-mac-cyrillic": true, "ibm866": true,
	"shift_jis": true, "euc-jp": true, "euc-kr": true, "gbk": true, "gb18030": true, "big5": true,
}

var windows1252 = charset{kind: csOther, name: "windows-1252", enc: charmap.Windows1252, ascii: true}

// normCharset turns a charset label as written into a lookup key: no quotes,
// no RFC 2231 language suffix, lower case.
func normCharset(s string) string {
	s = strings.TrimSpace(s)
	s = strings.Trim(s, `"'`)
	// Cut a language suffix (RFC 2231 "*en") or a trailing comment.
	if i := strings.IndexAny(s, "* \t("); i >= 0 {
		s = s[:i]
	}
	return strings.ToLower(strings.TrimSpace(s))
}

func lookupCharset(label string) charset {
	n := normCharset(label)
	switch n {
	case "":
		return charset{kind: csNone}
	case "utf-8", "utf8", "x-utf_8j", "unicode-1-1-utf-8":
		return charset{kind: csUTF8, name: n}
	case "us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us":
		return charset{kind: csASCII, name: n}
	}
	if cs, ok := charsetAliases[n]; ok {
		cs.kind, cs.name = csOther, n
		return cs
	}
	if len(n) > 64 {
		return charset{kind: csUnknown, name: truncate(n, 40)}
	}
	if enc, err := htmlindex.Get(n); err == nil && enc != encoding.Replacement {
		canon, _ := htmlindex.Name(enc)
		if canon == "utf-8" {
			return charset{kind: csUTF8, name: n}
		}
		return charset{kind: csOther, name: n, enc: enc, ascii: asciiLabels[canon]}
	}
	for _, l := range [...]string{n, "cs" + n} {
		if enc, err := ianaindex.MIME.Encoding(l); err == nil && enc != nil {
			return charset{kind: csOther, name: n, enc: enc}
		}
	}
	return charset{kind: csUnknown, name: n}
}

// charsetReader lets mime.WordDecoder (and so net/mail) use the same table.
func charsetReader(label string, input io.Reader) (io.Reader, error) {
	cs := lookupCharset(label)
	switch cs.kind {
	case csUTF8, csASCII:
		return input, nil
	case csOther:
		return cs.enc.NewDecoder().Reader(input), nil
	}
	return nil, fmt.Errorf("parse: unknown charset %q", label)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// convert decodes b from cs to UTF-8 and reports whether b was not valid in
// cs (the result is always valid UTF-8). The result may alias b.
func convert(b []byte, cs charset) ([]byte, bool) {
	switch cs.kind {
	case csOther:
		if cs.ascii && isASCII(b) {
			return b, false
		}
		out, err := cs.enc.NewDecoder().Bytes(b)
		if err != nil {
			return bytes.ToValidUTF8(b, []byte("\uFFFD")), true
		}
		if !utf8.Valid(out) {
			return bytes.ToValidUTF8(out, []byte("\uFFFD")), true
		}
		return out, false
	default:
		if utf8.Valid(b) {
			return b, false
		}
		return bytes.ToValidUTF8(b, []byte("\uFFFD")), true
	}
}

// toUTF8 converts the body of a text part to UTF-8. A missing or us-ascii
// label on 8-bit data that is not UTF-8 almost always means Windows-1252
// (or Latin-1, its subset), which loses nothing, whereas replacement
// characters would.
func (p *parser) toUTF8(b []byte, label string) []byte {
	cs := lookupCharset(label)
	switch cs.kind {
	case csNone, csASCII:
		if utf8.Valid(b) {
			return b
		}
		if cs.kind == csNone {
			p.defect("text part without charset is not UTF-8; read as windows-1252")
		} else {
			p.defect("8-bit data in us-ascii text part; read as windows-1252")
		}
		out, _ := convert(b, windows1252)
		return out
	case csUnknown:
		// Unknown labels are mostly variants of Western charsets; reading
		// 8-bit data as Windows-1252 keeps every byte, replacement
		// characters would not.
		p.defect(fmt.Sprintf("unknown charset %q", cs.name))
		if !utf8.Valid(b) {
			out, _ := convert(b, windows1252)
			return out
		}
		return b
	}
	out, bad := convert(b, cs)
	if bad {
		if cs.kind == csUTF8 {
			p.defect("invalid UTF-8 in text part repaired")
		} else {
			p.defect(fmt.Sprintf("invalid %s data in text part repaired", cs.name))
		}
	}
	return out
}
