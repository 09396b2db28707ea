package mailaddr

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"john.doe@example.com", "john.doe@example.com"},
		{"John.Doe@Example.COM", "john.doe@example.com"},
		{"  john@example.com\t", "john@example.com"},

		// IDNA: domains in their ASCII form (UTS #46, non-transitional).
		{"user@BÜCHER.example", "user@xn--bcher-kva.example"},
		{"user@bücher.example", "user@xn--bcher-kva.example"},
		{"user@XN--BCHER-KVA.example", "user@xn--bcher-kva.example"},
		{"user@Straße.example", "user@xn--strae-oqa.example"},
		{"user@ｅｘａｍｐｌｅ.com", "user@example.com"},      // full-width letters map to ASCII
		{"user@example\u3002com", "user@example.com"}, // ideographic full stop is a dot

		// Local parts: lower case, NFC.
		{"Jürgen@example.com", "jürgen@example.com"},
		{"Ju\u0308rgen@example.com", "jürgen@example.com"}, // NFD
		{"JU\u0308RGEN@example.com", "jürgen@example.com"},
		{"ÉMILE@example.com", "émile@example.com"},
		{"用户@例子.example", "用户@xn--fsqu00a.example"},

		// +tag names another mailbox: kept.
		{"it+Urgent@example.com", "it+urgent@example.com"},

		// Quoted local parts.
		{`"john"@example.com`, "john@example.com"},
		{`"John.Doe"@example.com`, "john.doe@example.com"},
		{`"john doe"@example.com`, `"john doe"@example.com`},
		{`"John Doe"@Example.com`, `"john doe"@example.com`},
		{`"a..b"@example.com`, `"a..b"@example.com`},
		{`".a"@example.com`, `".a"@example.com`},
		{`"a@b"@example.com`, `"a@b"@example.com`},

		// Angle brackets and the root dot.
		{"<john@example.com>", "john@example.com"},
		{" <John@Example.com> ", "john@example.com"},
		{"john@example.com.", "john@example.com"},
		{"john@EXAMPLE.COM.", "john@example.com"},

		// An address literal matches no domain policy but is a mailbox.
		{"john@[192.0.2.1]", "john@[192.0.2.1]"},
		{"john@[IPv6:2001:DB8::1]", "john@[ipv6:2001:db8::1]"},

		// Limits that are still fine.
		{strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com"},
		{"a@" + strings.Repeat("x", 63) + ".example", "a@" + strings.Repeat("x", 63) + ".example"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Normalize(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			again, err := Normalize(got)
			if err != nil || again != got {
				t.Errorf("Normalize(%q) = %q, %v; not idempotent", got, again, err)
			}
		})
	}
}

func TestNormalizeErrors(t *testing.T) {
	longDomain := strings.Repeat("abcdefghi.", 25) + "example" // 257 octets
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"blank", "   "},
		{"empty brackets", "<>"},
		{"no at", "john.example.com"},
		{"no local part", "@example.com"},
		{"no domain", "john@"},
		{"root only", "john@."},
		{"only brackets around at", "<@>"},

		{"NUL in local part", "jo\x00hn@example.com"},
		{"control in local part", "jo\x01hn@example.com"},
		{"DEL in local part", "jo\x7fhn@example.com"},
		{"CR LF in local part", "john\r\nBcc: x@example.com"},
		{"control in quoted local part", "\"jo\x07hn\"@example.com"},
		{"control in domain", "john@exa\x01mple.com"},
		{"control in address literal", "john@[192.0.2.1\x00]"},

		{"space in local part", "john doe@example.com"},
		{"tab in local part", "john\tdoe@example.com"},
		{"no-break space in local part", "john\u00a0doe@example.com"},
		{"space after an unclosed quote", `"john doe@example.com`},
		{"space after a quoted word", `"john" doe@example.com`},
		{"space in domain", "a@exa mple.com"},

		{"invalid UTF-8 in local part", "jo\xffhn@example.com"},
		{"invalid UTF-8 in domain", "john@exa\xc3mple.com"},

		{"overlong address", strings.Repeat("a", 250) + "@" + strings.Repeat("b", 300) + ".example"},
		{"overlong local part", strings.Repeat("a", 257) + "@example.com"},
		{"overlong domain label", "a@" + strings.Repeat("x", 64) + ".example"},
		{"overlong domain", "a@" + longDomain},

		{"numeric domain", "john@192.0.2.1"},
		{"second @ in local part", "a@b@c.example"},
		{"Greek question mark, NFC of ';'", "a\u037eb@example.com"},
		{"empty label", "a@example..com"},
		{"leading dot", "a@.example.com"},
		{"empty label and underscore", "a@exa_mple..com"},
		{"comma in domain", "a@exa,mple.com"},
		{"bracket in domain", "a@exa<mple.com"},
		{"slash in domain", "a@exa/mple.com"},
		{"hyphen at label start", "a@-example.com"},
		{"hyphen at label end", "a@example-.com"},
		{"bad punycode", "a@xn--zz.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Normalize(tt.in)
			if err == nil {
				t.Fatalf("Normalize(%q) = %q, nil; want an error", tt.in, got)
			}
			if !errors.Is(err, ErrBadAddress) {
				t.Errorf("Normalize(%q) error %v does not wrap ErrBadAddress", tt.in, err)
			}
			if !strings.HasPrefix(err.Error(), "mailaddr: ") {
				t.Errorf("error %q is not prefixed mailaddr:", err)
			}
		})
	}
}

// TestNormalizeCompare checks which spellings name the same mailbox.
func TestNormalizeCompare(t *testing.T) {
	same := [][2]string{
		{"Jürgen@example.com", "Ju\u0308rgen@example.com"}, // NFC vs NFD
		{"\u00c5ngstr\u00f6m@example.com", "A\u030angstro\u0308m@example.com"},
		{"JOHN@EXAMPLE.COM", "john@example.com"},
		{`"john"@example.com`, "john@example.com"},
		{"user@bücher.example", "user@xn--bcher-kva.example"},
		{"user@BU\u0308CHER.example", "user@bücher.example"}, // NFD domain
		{"<john@example.com>", "john@example.com."},
		{"I\u0307@example.com", "\u0130@example.com"}, // NFD and NFC of İ
		{"T\u0308@example.com", "\u1e97@example.com"}, // T̈ lower-cases to ẗ, which is U+1E97 in NFC
	}
	for _, p := range same {
		a, errA := Normalize(p[0])
		b, errB := Normalize(p[1])
		if errA != nil || errB != nil || a != b {
			t.Errorf("Normalize(%q) = %q, %v and Normalize(%q) = %q, %v; want equal", p[0], a, errA, p[1], b, errB)
		}
	}
	different := [][2]string{
		{"it+tag@example.com", "it@example.com"},
		{"a@\u0430pple.example", "a@apple.example"}, // Cyrillic а
		{"\u0430dmin@example.com", "admin@example.com"},
		{`"john doe"@example.com`, "johndoe@example.com"},
		{"john@example.com", "john@example.com.evil.example"},
	}
	for _, p := range different {
		a, errA := Normalize(p[0])
		b, errB := Normalize(p[1])
		if errA != nil || errB != nil {
			t.Errorf("Normalize(%q), Normalize(%q): %v, %v", p[0], p[1], errA, errB)
			continue
		}
		if a == b {
			t.Errorf("Normalize(%q) == Normalize(%q) == %q; want different mailboxes", p[0], p[1], a)
		}
	}
	if a, _ := Normalize("a@\u0430pple.example"); a != "a@xn--pple-43d.example" {
		t.Errorf("Cyrillic homograph normalizes to %q, want its own punycode label", a)
	}
}

func TestNormalizeDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":     "example.com",
		"Example.COM.":    "example.com",
		" example.com ":   "example.com",
		"BÜCHER.example":  "xn--bcher-kva.example",
		"\u0430pple.test": "xn--pple-43d.test",
		"[192.0.2.1]":     "[192.0.2.1]",
	} {
		if got, err := NormalizeDomain(in); err != nil || got != want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".", " ", "exa mple.com", "a..b", "exa\x00mple.com", "-a.example"} {
		if got, err := NormalizeDomain(in); err == nil || !errors.Is(err, ErrBadAddress) {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want an ErrBadAddress", in, got, err)
		}
	}
}

func TestWithoutTag(t *testing.T) {
	for in, want := range map[string]string{
		"it@example.com":        "it@example.com",
		"it+urgent@example.com": "it@example.com",
		"it+@example.com":       "it@example.com",
		"it+a+b@example.com":    "it@example.com",
		"+only@example.com":     "+only@example.com", // nothing before the tag: not a tag
		"no-at-sign":            "no-at-sign",
		"a+b@[192.0.2.1]":       "a@[192.0.2.1]",
	} {
		if got := WithoutTag(in); got != want {
			t.Errorf("WithoutTag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDomain(t *testing.T) {
	for in, want := range map[string]string{
		"a@example.com":     "example.com",
		`"a@b"@example.com`: "example.com",
		"a@[192.0.2.1]":     "[192.0.2.1]",
	} {
		if got := Domain(in); got != want {
			t.Errorf("Domain(%q) = %q, want %q", in, got, want)
		}
	}
}

// checkNormalize states what holds for every input: Normalize never panics,
// fails only with ErrBadAddress, and what it returns is valid UTF-8, a fixed
// point of Normalize and of NormalizeDomain for its domain.
func checkNormalize(t *testing.T, in string) {
	t.Helper()
	out, err := Normalize(in)
	if err != nil {
		if !errors.Is(err, ErrBadAddress) {
			t.Errorf("Normalize(%q) error %v does not wrap ErrBadAddress", in, err)
		}
		return
	}
	if !utf8.ValidString(out) {
		t.Errorf("Normalize(%q) = %q: invalid UTF-8", in, out)
	}
	if !strings.Contains(out, "@") {
		t.Errorf("Normalize(%q) = %q: no @", in, out)
	}
	again, err := Normalize(out)
	if err != nil || again != out {
		t.Errorf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", in, out, out, again, err)
	}
	d := Domain(out)
	if nd, err := NormalizeDomain(d); err != nil || nd != d {
		t.Errorf("Normalize(%q) = %q, but NormalizeDomain(%q) = %q, %v", in, out, d, nd, err)
	}
	_ = WithoutTag(out)
}

// Inputs the fuzzer found or that sit on an edge of the rules.
var normalizeEdgeCases = []string{
	"a@example.com..",
	"a@..",
	"a@example.com.\u3002",
	"\"\"@example.com",
	"\"a\"@example.com",
	"\"@example.com",
	"İ@example.com",
	"ǅ@example.com",
	"A\u0345\u0301@example.com",
	"\u1e9e@example.com",
	"a@[]",
	"<<a@example.com>>",
	"<<@0",
	"<<a@example.com",
	"T\u0308@0",
	"I\u0307@example.com",
	"\u037e@0\u0305",
	"\"\u037e\"@example.com",
}

func TestNormalizeEdgeCases(t *testing.T) {
	for _, in := range normalizeEdgeCases {
		checkNormalize(t, in)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"john.doe@example.com", "John@Example.COM.", "user@BÜCHER.example", "Ju\u0308rgen@example.com",
		`"john doe"@example.com`, `"john"@example.com`, "<it+tag@example.com>", "a@[192.0.2.1]",
		"a@\u0430pple.example", "a@exa_mple..com", "a@example\u3002com", "用户@例子.example",
	} {
		f.Add(s)
	}
	for _, s := range normalizeEdgeCases {
		f.Add(s)
	}
	f.Fuzz(checkNormalize)
}
