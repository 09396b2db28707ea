package parse

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// eml joins lines with CRLF, as mail arrives over SMTP.
func eml(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n"))
}

// simple is a minimal valid message with the given extra header lines.
func simple(extra ...string) []byte {
	lines := []string{"From: Alice <alice@example.org>", "To: it@example.com", "Subject: hi",
		"Date: Mon, 2 Jan 2006 15:04:05 +0000", "Message-ID: <1@example.org>"}
	lines = append(lines, extra...)
	lines = append(lines, "", "body")
	return eml(lines...)
}

func hasDefect(m *Message, sub string) bool {
	for _, d := range m.Defects {
		if strings.Contains(d, sub) {
			return true
		}
	}
	return false
}

func TestParseSimple(t *testing.T) {
	m := Parse(simple(), Options{})
	if m.Problem != ProblemNone || m.Machine != MachineNone {
		t.Fatalf("problem %q (%s), machine %q", m.Problem, m.ProblemWhy, m.Machine)
	}
	if m.MessageID != "1@example.org" || m.Subject != "hi" || m.Text != "body" {
		t.Errorf("got id %q subject %q text %q", m.MessageID, m.Subject, m.Text)
	}
	if want := []Address{{"Alice", "alice@example.org"}}; !slices.Equal(m.From, want) {
		t.Errorf("From = %v", m.From)
	}
	if want := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC); !m.Date.Equal(want) {
		t.Errorf("Date = %v", m.Date)
	}
	if m.Size != int64(len(simple())) || len(m.ContentHash()) != 64 {
		t.Errorf("Size %d, ContentHash %q", m.Size, m.ContentHash())
	}
	if len(m.Defects) != 0 {
		t.Errorf("defects: %q", m.Defects)
	}
	if got := m.Header("message-id"); !slices.Equal(got, []string{"<1@example.org>"}) {
		t.Errorf("Header(message-id) = %q", got)
	}
	if got := m.Header("X-Missing"); got != nil {
		t.Errorf("Header(X-Missing) = %q", got)
	}
}

func TestParseNeverNil(t *testing.T) {
	for _, raw := range [][]byte{nil, {}, []byte("\r\n"), []byte(":"), []byte("\x00\xff")} {
		m := Parse(raw, Options{})
		if m == nil || m.Problem != ProblemMalformed {
			t.Errorf("Parse(%q) = %+v", raw, m)
		}
	}
}

func TestHeaderLenient(t *testing.T) {
	tests := []struct {
		name    string
		raw     []byte
		subject string
		text    string
		defect  string
	}{
		{"folded", eml("From: a@b.c", "Subject: one", "\ttwo", "  three", "", "x"), "one\ttwo  three", "x", ""},
		{"bare LF", []byte("From: a@b.c\nSubject: lf\n\nline1\nline2\n"), "lf", "line1\nline2", ""},
		{"no blank line", eml("From: a@b.c", "Subject: s", "Hello there", "second line"), "s", "Hello there\nsecond line", "no blank line"},
		{"line without colon", eml("From: a@b.c", "garbage line", "Subject: s", "", "b"), "s", "b", "without colon"},
		{"continuation first", eml(" leading", "From: a@b.c", "Subject: s", "", "b"), "s", "b", "continuation line without a field"},
		{"mbox From line", eml("From alice@b.c Mon Jan  2 15:04:05 2006", "From: a@b.c", "Subject: s", "", "b"), "s", "b", "mbox"},
		{"space before colon", eml("From: a@b.c", "Subject : spaced", "", "b"), "spaced", "b", ""},
		{"utf-8 header", eml("From: Jörg <j@b.c>", "Subject: Grüße 你好", "", "b"), "Grüße 你好", "b", ""},
		{"latin1 header", eml("From: a@b.c", "Subject: Gr\xfc\xdfe", "", "b"), "Grüße", "b", "not UTF-8"},
		{"latin1 header, body charset", eml("From: a@b.c", "Subject: \xcf\xf0\xe8\xe2\xe5\xf2", "Content-Type: text/plain; charset=windows-1251", "", "b"), "Привет", "b", "windows-1251"},
		{"headers only", eml("From: a@b.c", "Subject: s"), "s", "", ""},
		{"controls", eml("From: a@b.c", "Subject: a\x00b\x01c\td\x7f", "", "b"), "abc\td\x7f", "b", ""},
		{"encoded CRLF", eml("From: a@b.c", "Subject: =?utf-8?q?a=0D=0AX-Evil:_1?=", "", "b"), "aX-Evil: 1", "b", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Parse(tc.raw, Options{})
			if m.Subject != tc.subject {
				t.Errorf("Subject = %q, want %q", m.Subject, tc.subject)
			}
			if m.Text != tc.text {
				t.Errorf("Text = %q, want %q", m.Text, tc.text)
			}
			if tc.defect != "" && !hasDefect(m, tc.defect) {
				t.Errorf("no defect %q in %q", tc.defect, m.Defects)
			}
			if m.Problem != ProblemNone {
				t.Errorf("Problem %q: %s", m.Problem, m.ProblemWhy)
			}
		})
	}
}

func TestHeaderRawValues(t *testing.T) {
	m := Parse(eml("Received: one", "Received: two", "From: a@b.c", "Subject: =?utf-8?q?x?=", " y", "", ""), Options{})
	if got := m.Header("RECEIVED"); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("Received = %q", got)
	}
	if got := m.Header("subject"); !slices.Equal(got, []string{"=?utf-8?q?x?= y"}) {
		t.Errorf("Subject raw = %q", got)
	}
	if canonicalKey("message-id") != canonicalKey("Message-ID") || canonicalKey("x-my-header") != "X-My-Header" {
		t.Error("canonicalKey is not canonical")
	}
}

func TestIDs(t *testing.T) {
	tests := []struct {
		value  string
		want   []string
		defect bool
	}{
		{"<a@b.c>", []string{"a@b.c"}, false},
		{"  <a@b.c>\r\n\t<d@e.f> ", []string{"a@b.c", "d@e.f"}, false},
		{"<a@b.c><d@e.f>", []string{"a@b.c", "d@e.f"}, false},
		{"a@b.c", []string{"a@b.c"}, true},
		{"a@b.c d@e.f", []string{"a@b.c", "d@e.f"}, true},
		{"<a@b.c> (from John <j@x.y>)", []string{"a@b.c"}, false},
		{`Your message of "Mon, 2 Jan 2006" <a@b.c>`, []string{"a@b.c"}, false},
		{"<a @b.\r\n c>", []string{"a@b.c"}, false},
		{"<a@b.c", []string{"a@b.c"}, true},
		{"<>", nil, false},
		{"", nil, false},
		{"justtoken", []string{"justtoken"}, true},
		{"no ids here", nil, false},
	}
	for _, tc := range tests {
		p := &parser{msg: &Message{}}
		got := p.ids(tc.value, "References")
		if !slices.Equal(got, tc.want) {
			t.Errorf("ids(%q) = %q, want %q", tc.value, got, tc.want)
		}
		if d := len(p.msg.Defects) > 0; d != tc.defect {
			t.Errorf("ids(%q) defects %q", tc.value, p.msg.Defects)
		}
	}
}

func TestThreadHeaders(t *testing.T) {
	m := Parse(eml("From: a@b.c", "Message-ID: <x@y>", "In-Reply-To: <p@y>", "References: <o@y>", " <p@y>", "", "b"), Options{})
	if m.MessageID != "x@y" || !slices.Equal(m.InReplyTo, []string{"p@y"}) || !slices.Equal(m.References, []string{"o@y", "p@y"}) {
		t.Errorf("got %q %q %q", m.MessageID, m.InReplyTo, m.References)
	}
	m = Parse(eml("From: a@b.c", "", "b"), Options{})
	if m.MessageID != "" || !hasDefect(m, "no Message-ID") || m.Problem != ProblemNone {
		t.Errorf("missing Message-ID: %q %q %q", m.MessageID, m.Defects, m.Problem)
	}
}

func TestDate(t *testing.T) {
	cet := time.FixedZone("", 3600)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"Mon, 2 Jan 2006 15:04:05 +0100", time.Date(2006, 1, 2, 15, 4, 5, 0, cet)},
		{"Mon, 02 Jan 2006 15:04:05 +0100 (CET)", time.Date(2006, 1, 2, 15, 4, 5, 0, cet)},
		{"2 Jan 2006 15:04:05 +0100", time.Date(2006, 1, 2, 15, 4, 5, 0, cet)},
		{"Mon,2 Jan 2006 15:04:05 +0100", time.Date(2006, 1, 2, 15, 4, 5, 0, cet)},
		{"Monday, 2 January 2006 15:04:05 +0100", time.Date(2006, 1, 2, 15, 4, 5, 0, cet)},
		{"Mon, 2 Jan 2006 15:04:05 +01:00", time.Date(2006, 1, 2, 15, 4, 5, 0, cet)},
		{"Mon, 2 Jan 2006 15:04:05 CET", time.Date(2006, 1, 2, 15, 4, 5, 0, cet)},
		{"Mon, 2 Jan 2006 09:04:05 EST", time.Date(2006, 1, 2, 15, 4, 5, 0, cet)},
		{"Mon, 2 Jan 06 15:04 GMT", time.Date(2006, 1, 2, 15, 4, 0, 0, time.UTC)},
		{"Mon Jan  2 15:04:05 2006", time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"2006-01-02T15:04:05+01:00", time.Date(2006, 1, 2, 15, 4, 5, 0, cet)},
		{"2006-01-02 15:04:05", time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"Mon, 2 Jan 2006 15.04.05 +0100", time.Date(2006, 1, 2, 15, 4, 5, 0, cet)},
		{"Mon, 2 Jan 2006 15:04:05", time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"yesterday", time.Time{}},
		{"", time.Time{}},
		{strings.Repeat("1", 1000), time.Time{}},
	}
	for _, tc := range tests {
		got, err := parseDate(tc.in)
		if !got.Equal(tc.want) || (err != nil) != tc.want.IsZero() {
			t.Errorf("parseDate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	m := Parse(eml("From: a@b.c", "Date: soon", "", "b"), Options{})
	if !m.Date.IsZero() || !hasDefect(m, "Date") {
		t.Errorf("bad Date: %v %q", m.Date, m.Defects)
	}
}

func TestSubjectWords(t *testing.T) {
	tests := []struct{ in, want, defect string }{
		{"plain", "plain", ""},
		{"=?UTF-8?Q?caf=C3=A9_au_lait?=", "café au lait", ""},
		{"=?utf-8?b?Y2Fmw6k=?=", "café", ""},
		{"=?utf-8?b?Y2Fmw6k?=", "café", ""},
		{"Re: =?utf-8?q?caf=C3=A9?= ok", "Re: café ok", ""},
		{"=?utf-8?q?a?= =?utf-8?q?b?=", "ab", ""},
		{"=?utf-8?q?a?=\t\t=?utf-8?q?_b?=", "a b", ""},
		// One character split over two words, as some mailers do.
		{"=?utf-8?b?w4?= =?utf-8?b?pA==?=", "ä", ""},
		{"=?utf-8?q?=C3?= =?utf-8?q?=A4?=", "ä", ""},
		{"=?iso-8859-1?q?=E4?= =?utf-8?q?=C3=A4?=", "ää", ""},
		{"=?utf-8*en?q?lang?=", "lang", ""},
		{"=?x-unknown?q?abc?=", "=?x-unknown?q?abc?=", "unknown charset"},
		{"=?utf-8?b?!!!?=", "=?utf-8?b?!!!?=", "undecodable"},
		{"=?utf-8?x?abc?=", "=?utf-8?x?abc?=", ""},
		{"=?=?=?utf-8?q?ok?=", "=?=?ok", ""},
		{"=?utf-8?q?no end", "=?utf-8?q?no end", ""},
		{"=?utf-8?q?\xff?=", "\ufffd", "invalid bytes"},
	}
	for _, tc := range tests {
		p := &parser{msg: &Message{}}
		if got := p.decodeWords(tc.in, windows1252); got != tc.want {
			t.Errorf("decodeWords(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.defect != "" && !hasDefect(p.msg, tc.defect) {
			t.Errorf("decodeWords(%q): no defect %q in %q", tc.in, tc.defect, p.msg.Defects)
		}
	}
}

func TestDecodeWordsLinear(t *testing.T) {
	for _, s := range []string{
		strings.Repeat("=?", 200000),
		strings.Repeat("=?a?q?", 100000),
		"=?utf-8?q?" + strings.Repeat("=?a?q?x", 100000),
		strings.Repeat("=?utf-8?q?a?= ", 50000),
	} {
		start := time.Now()
		p := &parser{msg: &Message{}}
		p.decodeWords(s, windows1252)
		if d := time.Since(start); d > time.Second {
			t.Errorf("decodeWords of %d bytes took %v", len(s), d)
		}
	}
}

func TestAddresses(t *testing.T) {
	tests := []struct {
		in     string
		want   []Address
		defect bool
	}{
		{"alice@example.org", []Address{{"", "alice@example.org"}}, false},
		{"Alice <alice@example.org>", []Address{{"Alice", "alice@example.org"}}, false},
		{`"Doe, John" <j@x.org>, k@x.org`, []Address{{"Doe, John", "j@x.org"}, {"", "k@x.org"}}, false},
		{"=?utf-8?q?J=C3=B6rg?= <j@x.org>", []Address{{"Jörg", "j@x.org"}}, false},
		{`"=?utf-8?q?J=C3=B6rg?=" <j@x.org>`, []Address{{"Jörg", "j@x.org"}}, false},
		{"=?koi8-r?b?8NLJ18XU?= <p@x.ru>", []Address{{"Привет", "p@x.ru"}}, false},
		{"j@x.org (John Doe)", []Address{{"John Doe", "j@x.org"}}, false},
		{"undisclosed-recipients:;", []Address{}, false},
		// What net/mail refuses:
		{"Doe, John <j@x.org>", []Address{{"Doe, John", "j@x.org"}}, true},
		{"John Q. Public Jr. <jqp@x.org>", []Address{{"John Q. Public Jr.", "jqp@x.org"}}, false},
		{"<j@x.org> garbage", []Address{{"garbage", "j@x.org"}}, true},
		{"John <j@x.org> trailing, k@x.org", []Address{{"John", "j@x.org"}, {"", "k@x.org"}}, true},
		{"<j@x.org", []Address{{"", "j@x.org"}}, true},
		{"John Doe j@x.org", []Address{{"John Doe", "j@x.org"}}, true},
		{"mailto:j@x.org", []Address{{"", "j@x.org"}}, true},
		{"a@x.org; b@x.org", []Address{{"", "a@x.org"}, {"", "b@x.org"}}, true},
		{"=?x-bogus?q?N?= <n@x.org>", []Address{{"=?x-bogus?q?N?=", "n@x.org"}}, true},
		{"MAILER-DAEMON", []Address{{"", "MAILER-DAEMON"}}, true},
		{"root (Cron Daemon)", []Address{{"", "root"}}, true},
		{`"Quoted \"Name\"" <q@x.org> junk`, []Address{{`Quoted "Name"`, "q@x.org"}}, true},
		{"Team: Doe, John <j@x.org>, k@x.org;", []Address{{"Doe, John", "j@x.org"}, {"", "k@x.org"}}, true},
		{"Team:k@x.org junk", []Address{{"junk", "k@x.org"}}, true},
		{"<@relay.x:j@x.org> junk", []Address{{"junk", "j@x.org"}}, true},
		{"<>, j@x.org", []Address{{"", "j@x.org"}}, true},
		{"Gr\xfc\xdfe <g@x.de>", []Address{{"Grüße", "g@x.de"}}, true},
		{"", nil, false},
	}
	for _, tc := range tests {
		p := newTestParser()
		got := p.parseAddresses(tc.in, "To", windows1252)
		if len(got) != len(tc.want) || (len(got) > 0 && !slices.Equal(got, tc.want)) {
			t.Errorf("parseAddresses(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if d := len(p.msg.Defects) > 0; d != tc.defect {
			t.Errorf("parseAddresses(%q) defects %q", tc.in, p.msg.Defects)
		}
	}
}

func newTestParser() *parser {
	p := &parser{msg: &Message{}, opts: &Options{}, lim: DefaultLimits}
	p.initDecoders()
	return p
}

func TestFromProblems(t *testing.T) {
	tests := []struct {
		name    string
		from    []string
		problem Problem
		why     string
	}{
		{"ok", []string{"From: a@b.c"}, ProblemNone, ""},
		{"missing", nil, ProblemMalformed, "no From address"},
		{"empty", []string{"From: "}, ProblemMalformed, "no From address"},
		{"group", []string{"From: undisclosed-recipients:;"}, ProblemMalformed, "no From address"},
		{"two addresses", []string{"From: a@b.c, d@e.f"}, ProblemMalformed, "From has 2 addresses"},
		{"two fields", []string{"From: a@b.c", "From: d@e.f"}, ProblemMalformed, "2 From header fields"},
		{"no at", []string{"From: MAILER-DAEMON"}, ProblemMalformed, `From address "MAILER-DAEMON" has no @`},
		{"empty local", []string{"From: <@b.c>"}, ProblemMalformed, `From address "@b.c" has an empty local part`},
		{"empty domain", []string{"From: joe@"}, ProblemMalformed, `From address "joe@" has an empty domain`},
		{"leading at", []string{"From: @b.c"}, ProblemMalformed, `From address "@b.c" has an empty local part`},
		{"lenient", []string{"From: Doe, John <j@b.c>"}, ProblemNone, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines := append([]string{"Subject: s", "Message-ID: <x@y>"}, tc.from...)
			m := Parse(eml(append(lines, "", "b")...), Options{})
			if m.Problem != tc.problem || m.ProblemWhy != tc.why {
				t.Errorf("got %q %q, want %q %q (From %q)", m.Problem, m.ProblemWhy, tc.problem, tc.why, m.From)
			}
		})
	}
	m := Parse([]byte("just some text\r\nwithout any header\r\n"), Options{})
	if m.Problem != ProblemMalformed || m.ProblemWhy != "no header fields" || m.Text == "" {
		t.Errorf("headerless: %q %q text %q", m.Problem, m.ProblemWhy, m.Text)
	}
}

func TestAddressHeaders(t *testing.T) {
	m := Parse(eml("Delivered-To: it@example.com", "Delivered-To: <all@example.com>", "X-Original-To: it+x@example.com",
		"From: a@b.c", "Sender: s@b.c", "Reply-To: r@b.c", "To: t1@b.c", "To: t2@b.c", "Cc: C <c@b.c>", "", "b"), Options{})
	if !slices.Equal(m.DeliveredTo, []string{"it@example.com", "all@example.com"}) || !slices.Equal(m.XOriginalTo, []string{"it+x@example.com"}) {
		t.Errorf("trace: %q %q", m.DeliveredTo, m.XOriginalTo)
	}
	if len(m.Sender) != 1 || len(m.ReplyTo) != 1 || len(m.To) != 2 || m.Cc[0] != (Address{"C", "c@b.c"}) {
		t.Errorf("addresses: %v %v %v %v", m.Sender, m.ReplyTo, m.To, m.Cc)
	}
}

func TestContentHash(t *testing.T) {
	a := Parse(simple(), Options{})
	relayed := Parse(append([]byte("Received: from relay\r\nReturn-Path: <x@y>\r\n"), simple()...), Options{})
	lf := Parse([]byte(strings.ReplaceAll(string(simple()), "\r\n", "\n")+"\n"), Options{})
	other := Parse(append(simple(), '!'), Options{})
	subj := Parse(simple("Subject: other"), Options{})
	if a.ContentHash() != relayed.ContentHash() || a.ContentHash() != lf.ContentHash() {
		t.Errorf("hash not stable: %s %s %s", a.ContentHash(), relayed.ContentHash(), lf.ContentHash())
	}
	if a.ContentHash() == other.ContentHash() || a.ContentHash() == subj.ContentHash() {
		t.Error("hash ignores body or Subject")
	}
}

func TestDefectsCapped(t *testing.T) {
	var lines []string
	lines = append(lines, "From: a@b.c")
	for i := range 500 {
		lines = append(lines, fmt.Sprintf("Cc: =?x-%d?q?N?= <n@x.org>", i), "Cc: =?x-0?q?N?= <n@x.org>")
	}
	m := Parse(eml(append(lines, "", "b")...), Options{})
	if len(m.Defects) > maxDefects {
		t.Errorf("%d defects", len(m.Defects))
	}
	seen := map[string]bool{}
	for _, d := range m.Defects {
		if seen[d] {
			t.Errorf("duplicate defect %q", d)
		}
		seen[d] = true
	}
}
