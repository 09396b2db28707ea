package parse

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
	"golang.org/x/text/encoding/unicode"
)

// charsetCases are the charsets the gateway must read, each with text in
// its script and an independent encoder to produce test data.
var charsetCases = []struct {
	label string
	enc   encoding.Encoding
	text  string
}{
	{"utf-8", unicode.UTF8, "Grüße, 你好, Привет"},
	{"UTF8", unicode.UTF8, "Grüße"},
	{"us-ascii", unicode.UTF8, "Hello, world"},
	{"iso-8859-1", charmap.ISO8859_1, "Grüße aus Köln"},
	{"latin1", charmap.ISO8859_1, "Ça va très bien"},
	{"iso-8859-2", charmap.ISO8859_2, "Zażółć gęślą jaźń"},
	{"iso-8859-3", charmap.ISO8859_3, "Ħalliem ġewwa"},
	{"iso-8859-4", charmap.ISO8859_4, "Ķīla ļoti"},
	{"iso-8859-5", charmap.ISO8859_5, "Привет мир"},
	{"iso-8859-6", charmap.ISO8859_6, "مرحبا"},
	{"iso-8859-7", charmap.ISO8859_7, "Γειά σου κόσμε"},
	{"iso-8859-8", charmap.ISO8859_8, "שלום עולם"},
	{"iso-8859-9", charmap.ISO8859_9, "Türkçe ğış"},
	{"iso-8859-10", charmap.ISO8859_10, "Þórður ŋ"},
	{"iso-8859-11", charmap.Windows874, "สวัสดี"},
	{"iso-8859-13", charmap.ISO8859_13, "Ąžuolas"},
	{"iso-8859-14", charmap.ISO8859_14, "Ŵyr ŷ"},
	{"iso-8859-15", charmap.ISO8859_15, "50 € œuvre"},
	{"iso-8859-16", charmap.ISO8859_16, "Știință"},
	{"windows-1250", charmap.Windows1250, "Příliš žluťoučký kůň"},
	{"windows-1251", charmap.Windows1251, "Привет мир"},
	{"windows-1252", charmap.Windows1252, "“smart” quotes – 5 €"},
	{"cp1252", charmap.Windows1252, "“cp” €"},
	{"windows-1253", charmap.Windows1253, "Γειά σου"},
	{"windows-1254", charmap.Windows1254, "Türkçe ğış"},
	{"windows-1255", charmap.Windows1255, "שלום"},
	{"windows-1256", charmap.Windows1256, "مرحبا"},
	{"windows-1257", charmap.Windows1257, "Ąžuolas"},
	{"windows-1258", charmap.Windows1258, "Đà"},
	{"koi8-r", charmap.KOI8R, "Привет мир"},
	{"koi8-u", charmap.KOI8U, "Привіт світ"},
	{"shift_jis", japanese.ShiftJIS, "こんにちは世界"},
	{"x-sjis", japanese.ShiftJIS, "こんにちは"},
	{"iso-2022-jp", japanese.ISO2022JP, "こんにちは世界"},
	{"euc-jp", japanese.EUCJP, "こんにちは世界"},
	{"gb2312", simplifiedchinese.GBK, "你好世界"},
	{"gbk", simplifiedchinese.GBK, "你好世界"},
	{"gb18030", simplifiedchinese.GB18030, "你好世界 €"},
	{"big5", traditionalchinese.Big5, "你好世界"},
	{"euc-kr", korean.EUCKR, "안녕하세요"},
	{"ks_c_5601-1987", korean.EUCKR, "안녕하세요"},
}

func encodeFor(t testing.TB, enc encoding.Encoding, s string) []byte {
	t.Helper()
	b, err := enc.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatalf("encoding %q: %v", s, err)
	}
	return b
}

func TestCharsets(t *testing.T) {
	for _, tc := range charsetCases {
		t.Run(tc.label, func(t *testing.T) {
			raw := encodeFor(t, tc.enc, tc.text)
			subjB := fmt.Sprintf("=?%s?B?%s?=", tc.label, base64.StdEncoding.EncodeToString(raw))
			var q strings.Builder
			for _, c := range raw {
				if c < 0x80 && c > ' ' && c != '=' && c != '?' && c != '_' {
					q.WriteByte(c)
				} else {
					fmt.Fprintf(&q, "=%02X", c)
				}
			}
			subjQ := fmt.Sprintf("=?%s?q?%s?=", tc.label, q.String())
			for _, subj := range []string{subjB, subjQ} {
				for _, cte := range []string{"8bit", "base64"} {
					body := string(raw)
					if cte == "base64" {
						body = base64.StdEncoding.EncodeToString(raw)
					}
					m := Parse(eml("From: a@b.c", "Subject: "+subj, "MIME-Version: 1.0",
						"Content-Type: text/plain; charset=\""+tc.label+"\"", "Content-Transfer-Encoding: "+cte, "", body), Options{})
					if m.Subject != tc.text {
						t.Errorf("Subject %q = %q, want %q", subj, m.Subject, tc.text)
					}
					if m.Text != tc.text {
						t.Errorf("Text (%s) = %q, want %q", cte, m.Text, tc.text)
					}
					for _, d := range m.Defects {
						if d != "no Message-ID" && d != "no Date" {
							t.Errorf("defect %q", d)
						}
					}
				}
			}
			// The same bytes in an HTML-only message.
			m := Parse(eml("From: a@b.c", "Content-Type: text/html; charset="+tc.label, "", "<p>"+string(raw)+"</p>"), Options{})
			if m.Text != tc.text {
				t.Errorf("HTML-derived Text = %q, want %q", m.Text, tc.text)
			}
		})
	}
}

func TestCharsetFallbacks(t *testing.T) {
	tests := []struct {
		name   string
		ct     string
		body   string
		text   string
		defect string
	}{
		{"no charset, utf-8", "text/plain", "Grüße", "Grüße", ""},
		{"no charset, latin1", "text/plain", "Gr\xfc\xdfe", "Grüße", "without charset"},
		{"no content-type, cp1252", "", "\x93hi\x94", "“hi”", "without charset"},
		{"us-ascii, 8-bit", "text/plain; charset=us-ascii", "caf\xe9", "café", "us-ascii"},
		{"us-ascii, utf-8", "text/plain; charset=us-ascii", "café", "café", ""},
		{"utf-8, invalid", "text/plain; charset=utf-8", "ok \xff\xfe end", "ok \ufffd end", "invalid UTF-8"},
		{"unknown, utf-8", "text/plain; charset=x-klingon", "café", "café", "unknown charset"},
		{"unknown, binary", "text/plain; charset=x-klingon", "caf\xe9", "café", "unknown charset"},
		{"utf-16 BOM", "text/plain; charset=utf-16", "\xff\xfeh\x00i\x00", "hi", ""},
		{"utf-16 BE", "text/plain; charset=utf-16", "\x00h\x00i", "hi", ""},
		{"quoted label", `text/plain; charset="ISO-8859-1"`, "\xe9", "é", ""},
		{"html meta", "text/html", `<meta charset="windows-1251"><p>` + "\xcf\xf0\xe8\xe2\xe5\xf2", "Привет", "HTML part without charset"},
		{"NUL and CR", "text/plain", "a\x00b\rc\r\nd", "ab\nc\nd", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines := []string{"From: a@b.c"}
			if tc.ct != "" {
				lines = append(lines, "Content-Type: "+tc.ct)
			}
			m := Parse(eml(append(lines, "", tc.body)...), Options{})
			if m.Text != tc.text {
				t.Errorf("Text = %q, want %q", m.Text, tc.text)
			}
			if tc.defect != "" && !hasDefect(m, tc.defect) {
				t.Errorf("no defect %q in %q", tc.defect, m.Defects)
			}
		})
	}
}

func TestLookupCharset(t *testing.T) {
	for _, l := range []string{"us-ascii (Plain Text)", "utf-8*en"} {
		if cs := lookupCharset(l); cs.kind != csASCII && cs.kind != csUTF8 {
			t.Errorf("lookupCharset(%q) = %v", l, cs.kind)
		}
	}
	for _, l := range []string{"cp932", "ms932", "cp949", "cp936", "ISO_8859-1", "iso8859-1", "windows-31j", "macintosh", "ibm850", "tis-620", "hz-gb-2312", "'ISO-8859-2'", "koi8-r (Cyrillic)"} {
		if cs := lookupCharset(l); cs.kind != csOther {
			t.Errorf("lookupCharset(%q) = %v", l, cs.kind)
		}
	}
	for _, l := range []string{"x-unknown", "iso-2022-kr", strings.Repeat("x", 100)} {
		if cs := lookupCharset(l); cs.kind != csUnknown {
			t.Errorf("lookupCharset(%q) = %v, want unknown", l, cs.kind)
		}
	}
}
