package parse

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestTransferEncodings(t *testing.T) {
	tests := []struct {
		name   string
		cte    string
		body   string
		text   string
		defect string
	}{
		{"qp", "quoted-printable", "caf=C3=A9 =3D ok=\r\n joined  \r\nnext=20\r\n", "café = ok joined\nnext", ""},
		{"qp lower hex", "Quoted-Printable", "caf=c3=a9", "café", ""},
		{"qp soft break with space", "quoted-printable", "a= \r\nb", "ab", ""},
		{"qp invalid", "quoted-printable", "100=% sure =ZZ and =C3=A9", "100=% sure =ZZ and é", "invalid quoted-printable"},
		{"qp trailing =", "quoted-printable", "end=", "end", ""},
		{"base64", "base64", "Y2Fmw6kgYXUg\r\nbGFpdA==\r\n", "café au lait", ""},
		{"base64 no padding", "base64", "Y2Fmw6k", "café", ""},
		{"base64 ragged lines", "base64", "Y2\r\nFmw6\r\nkgYXUgbGFp\r\ndA=\r\n=", "café au lait", ""},
		{"base64 spaces", "base64", " Y2Fm w6kg\tYXUg bGFpdA== ", "café au lait", ""},
		{"base64 concatenated", "base64", "YQ==\r\nYg==", "ab", ""},
		{"base64 footer", "base64", "Y2Fmw6k=\r\n-- \r\nList footer: http://x\r\n", "café-- \nList footer: http://x", "invalid base64"},
		{"base64 not encoded", "base64", "Hello, this was never base64.\r\n", "Hello, this was never base64.", "invalid base64"},
		{"base64 in second line", "base64", "Y2Fm\r\nw6k!\r\n", "cafw6k!", "invalid base64"},
		{"base64 stray characters", "base64", "SGksCgp0aGUgYmFkZ2Ug!!cmVhZGVyIGF0IHRoZSBz*aWRlIGVudHJhbmNlIHJlamVjdHMgbXkgYmFk\r\nZ2Ugc2luY2 @@ UgdGhpcyBtb3JuaW5nLg==\r\n", "Hi,\n\nthe badge reader at the side entrance rejects my badge since this morning.", "stray characters"},
		{"base64 stray, then footer", "base64", "Y2Fmw6kgYXUgbGFpdA==\r\nY2Fmw6kgYXUgbGFpdCwg!Y2Fmw6kgYXUgbGFpdCwgY2Fmw6kgYXUgbGFpdCE=\r\n_______________\r\nfooter\r\n", "café au laitcafé au lait, café au lait, café au lait!_______________\nfooter", "rest kept"},
		{"7bit", "7bit", "plain", "plain", ""},
		{"8bit", "8BIT", "Grüße", "Grüße", ""},
		{"binary", "binary", "bin", "bin", ""},
		{"unknown", "x-uuencode", "begin 644 x", "begin 644 x", "unknown Content-Transfer-Encoding"},
		{"with comment", "base64 (yes)", "YQ==", "a", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Parse(eml("From: a@b.c", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: "+tc.cte, "", tc.body), Options{})
			if m.Text != tc.text {
				t.Errorf("Text = %q, want %q", m.Text, tc.text)
			}
			if tc.defect != "" && !hasDefect(m, tc.defect) {
				t.Errorf("no defect %q in %q", tc.defect, m.Defects)
			}
			if tc.defect == "" && len(m.Defects) > 2 {
				t.Errorf("defects %q", m.Defects)
			}
		})
	}
}

// TestDecodeChunks checks that chunked decoding (used for attachments)
// gives the same bytes as decoding at once.
func TestDecodeChunks(t *testing.T) {
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var lines []string
	for i := 0; i < len(enc); i += 76 {
		lines = append(lines, enc[i:min(i+76, len(enc))])
	}
	for _, body := range []string{strings.Join(lines, "\r\n"), enc, strings.Join(lines, "\n") + "\n"} {
		p := newTestParser()
		var got []byte
		p.decodeChunks(teBase64, []byte(body), func(b []byte) { got = append(got, b...) })
		if string(got) != string(data) || len(p.msg.Defects) > 0 {
			t.Errorf("chunked base64: %d bytes, want %d; defects %q", len(got), len(data), p.msg.Defects)
		}
	}
	qp := strings.Repeat("caf=C3=A9 line=\r\n", 10000)
	p := newTestParser()
	var got []byte
	p.decodeChunks(teQP, []byte(qp), func(b []byte) { got = append(got, b...) })
	if want := strings.Repeat("café line", 10000); string(got) != want {
		t.Errorf("chunked qp: %d bytes, want %d", len(got), len(want))
	}
}

func TestHTMLToText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<p>Hello</p><p>World</p>", "Hello\n\nWorld"},
		{"<html><head><title>T</title><style>p{color:red}</style></head><body><p>Hi&nbsp;there &amp; you</p></body></html>", "Hi there & you"},
		{"<head><meta charset=utf-8><body>text", "text"},
		{"<title>unclosed<body>text", ""},
		{"a<br>b<br/><br>c", "a\nb\n\nc"},
		{"<div>one</div><div>two</div>", "one\ntwo"},
		{"<ul><li>x</li><li>y</li></ul>after", "x\ny\n\nafter"},
		{"<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"},
		{"<h1>Title</h1>text", "Title\n\ntext"},
		{"<script>alert(1)</script>visible<noscript>no</noscript>", "visible"},
		{"  lots   of \n\n  space\t\there  ", "lots of space here"},
		{"<pre>a  b\n  c</pre>d", "a  b\n  c\n\nd"},
		{"&lt;tag&gt; &#169; &#x263A; &euro;", "<tag> © ☺ €"},
		{"<p><p><p><p>x", "x"},
		{"<!-- comment -->x<!DOCTYPE html>", "x"},
		{"unterminated <b", "unterminated"},
		{"", ""},
	}
	for _, tc := range tests {
		if got := htmlToText(tc.in); got != tc.want {
			t.Errorf("htmlToText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHTMLOnly(t *testing.T) {
	m := Parse(eml("From: a@b.c", "Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "",
		"<html><body><p>Dear support,</p><p>my printer is=", " <b>broken</b>.</p><div>Thanks</div></body></html>"), Options{})
	if want := "Dear support,\n\nmy printer is <b>broken</b>."; !strings.HasPrefix(m.HTML, "<html>") || m.Text != "Dear support,\n\nmy printer is broken.\n\nThanks" {
		t.Errorf("HTML %q\nText %q (want prefix %q)", m.HTML, m.Text, want)
	}
}

const nestedMail = `From: a@b.c
Subject: nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is a multi-part message in MIME format.
--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

Plain text
--alt
Content-Type: multipart/related; boundary="rel"; type="text/html"

--rel
Content-Type: text/html; charset=utf-8

<p>HTML <img src="cid:img1@x"></p>
--rel
Content-Type: image/png
Content-ID: <img1@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--
--alt--
--outer
Content-Type: application/pdf
Content-Disposition: attachment; filename*0*=utf-8''%E2%82%AC%20;
 filename*1="report.pdf"
Content-Transfer-Encoding: base64

JVBERi0=
--outer
Content-Type: text/plain; name="notes.txt"
Content-Disposition: inline

note
--outer
Content-Type: text/plain

footer
--outer--
epilogue
`

func TestNestedMultipart(t *testing.T) {
	m := Parse([]byte(nestedMail), Options{})
	if m.Problem != ProblemNone {
		t.Fatalf("problem %s", m.ProblemWhy)
	}
	if m.Text != "Plain text\nfooter" {
		t.Errorf("Text = %q", m.Text)
	}
	if m.HTML != `<p>HTML <img src="cid:img1@x"></p>` {
		t.Errorf("HTML = %q", m.HTML)
	}
	want := []Attachment{
		{Name: "", ContentType: "image/png", Size: 8, SHA256: sha("\x89PNG\r\n\x1a\n"), Inline: true, ContentID: "img1@x"},
		{Name: "€ report.pdf", ContentType: "application/pdf", Size: 5, SHA256: sha("%PDF-")},
		{Name: "notes.txt", ContentType: "text/plain", Size: 4, SHA256: sha("note"), Inline: true},
	}
	if !slices.Equal(m.Attachments, want) {
		t.Errorf("attachments:\n%+v\nwant\n%+v", m.Attachments, want)
	}
	// The same with CRLF.
	m2 := Parse([]byte(strings.ReplaceAll(nestedMail, "\n", "\r\n")), Options{})
	if m2.Text != m.Text || m2.HTML != m.HTML || !slices.Equal(m2.Attachments, m.Attachments) {
		t.Errorf("CRLF differs: %q %q %+v", m2.Text, m2.HTML, m2.Attachments)
	}
}

func TestAlternativeOrder(t *testing.T) {
	m := Parse(eml("From: a@b.c", "Content-Type: multipart/alternative; boundary=b", "",
		"--b", "Content-Type: text/html", "", "<p>html</p>",
		"--b", "Content-Type: text/plain", "", "plain",
		"--b", "Content-Type: text/plain", "", "second plain",
		"--b--"), Options{})
	if m.Text != "plain" || m.HTML != "<p>html</p>" || len(m.Attachments) != 1 || m.Attachments[0].SHA256 != sha("second plain") {
		t.Errorf("Text %q HTML %q attachments %+v", m.Text, m.HTML, m.Attachments)
	}
}

func TestRelatedStart(t *testing.T) {
	m := Parse(eml("From: a@b.c", `Content-Type: multipart/related; boundary=b; start="<root@x>"`, "",
		"--b", "Content-Type: image/gif", "Content-ID: <pic@x>", "", "GIF",
		"--b", "Content-Type: text/html", "Content-ID: <root@x>", "", "<p>root</p>",
		"--b--"), Options{})
	if m.HTML != "<p>root</p>" || len(m.Attachments) != 1 || !m.Attachments[0].Inline || m.Attachments[0].ContentID != "pic@x" {
		t.Errorf("HTML %q attachments %+v", m.HTML, m.Attachments)
	}
}

func TestBrokenMultipart(t *testing.T) {
	tests := []struct {
		name   string
		raw    []byte
		text   string
		natt   int
		defect string
	}{
		{"no boundary param", eml("From: a@b.c", "Content-Type: multipart/mixed", "", "just text"), "just text", 0, "without boundary"},
		{"boundary absent", eml("From: a@b.c", "Content-Type: multipart/mixed; boundary=zz", "", "just text"), "just text", 0, "never found"},
		{"no close", eml("From: a@b.c", "Content-Type: multipart/mixed; boundary=zz", "", "--zz", "", "first", "--zz", "Content-Type: image/gif", "", "GIF"), "first", 1, "closing boundary"},
		{"prefix boundary", eml("From: a@b.c", "Content-Type: multipart/mixed; boundary=zz", "", "--zz", "Content-Type: multipart/alternative; boundary=zzz", "", "--zzz", "", "inner", "--zzz--", "--zz--"), "inner", 0, ""},
		{"boundary text in body", eml("From: a@b.c", "Content-Type: multipart/mixed; boundary=zz", "", "--zz", "", "say --zz here", "--zz-- "), "say --zz here", 0, ""},
		{"part without headers", eml("From: a@b.c", "Content-Type: multipart/mixed; boundary=zz", "", "--zz", "no header line", "more", "--zz--"), "no header line\nmore", 0, ""},
		{"empty parts", eml("From: a@b.c", "Content-Type: multipart/mixed; boundary=zz", "", "--zz", "--zz", "", "x", "--zz--"), "x", 0, ""},
		{"type without subtype", eml("From: a@b.c", "Content-Type: text", "", "t"), "t", 0, ""},
		{"garbage type", eml("From: a@b.c", "Content-Type: garbage", "", "t"), "", 1, "without subtype"},
		{"digest", eml("From: a@b.c", "Content-Type: multipart/digest; boundary=d", "", "--d", "", "Subject: one", "", "first", "--d--"), "", 1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Parse(tc.raw, Options{})
			if m.Text != tc.text || len(m.Attachments) != tc.natt {
				t.Errorf("Text %q attachments %+v", m.Text, m.Attachments)
			}
			if tc.defect != "" && !hasDefect(m, tc.defect) {
				t.Errorf("no defect %q in %q", tc.defect, m.Defects)
			}
		})
	}
}

func TestParams(t *testing.T) {
	tests := []struct {
		in, head string
		want     map[string]string
	}{
		{`text/plain; charset="utf-8"; format=flowed`, "text/plain", map[string]string{"charset": "utf-8", "format": "flowed"}},
		{`TEXT/Plain;CHARSET=UTF-8`, "text/plain", map[string]string{"charset": "UTF-8"}},
		{`attachment; filename=my file.pdf; size=3`, "attachment", map[string]string{"filename": "my file.pdf", "size": "3"}},
		{`attachment; filename="a \"q\" b.txt"`, "attachment", map[string]string{"filename": `a "q" b.txt`}},
		{`attachment; filename="unterminated.txt; x=1`, "attachment", map[string]string{"filename": "unterminated.txt", "x": "1"}},
		{`attachment; filename=a; filename=b`, "attachment", map[string]string{"filename": "a"}},
		{`attachment; novalue; filename=a;;`, "attachment", map[string]string{"filename": "a"}},
		{`attachment; filename*=UTF-8''%E2%82%AC.txt`, "attachment", map[string]string{"filename": "\xe2\x82\xac.txt"}},
		{`attachment; filename="fallback.txt"; filename*=utf-8''real.txt`, "attachment", map[string]string{"filename": "real.txt"}},
		{`attachment; filename*1="b.txt"; filename*0="a"`, "attachment", map[string]string{"filename": "ab.txt"}},
		{`attachment; filename*0*=iso-8859-1'de'%FC; filename*1=ber.txt`, "attachment", map[string]string{"filename": "\xfcber.txt"}},
		{`multipart/mixed; boundary="----=_Part_1"`, "multipart/mixed", map[string]string{"boundary": "----=_Part_1"}},
		{"multipart/mixed;\r\n\tboundary=abc", "multipart/mixed", map[string]string{"boundary": "abc"}},
		{``, "", map[string]string{}},
	}
	for _, tc := range tests {
		head, ps := parseParams(tc.in)
		got := map[string]string{}
		for _, p := range ps {
			got[p.name] = p.value
		}
		if head != tc.head || len(got) != len(tc.want) {
			t.Errorf("parseParams(%q) = %q %q", tc.in, head, got)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("parseParams(%q)[%s] = %q, want %q", tc.in, k, got[k], v)
			}
		}
	}
}

func TestAttachmentNames(t *testing.T) {
	tests := []struct {
		headers []string
		name    string
	}{
		{[]string{"Content-Type: application/pdf", "Content-Disposition: attachment; filename*=iso-8859-1''Gr%FC%DFe.pdf"}, "Grüße.pdf"},
		{[]string{"Content-Type: application/pdf", "Content-Disposition: attachment; filename*0*=utf-8''%D0%9F%D1%80; filename*1*=%D0%B8.pdf"}, "При.pdf"},
		{[]string{"Content-Type: application/pdf; name=\"=?utf-8?B?0J/RgNC40LLQtdGCLnBkZg==?=\"", "Content-Disposition: attachment"}, "Привет.pdf"},
		{[]string{"Content-Type: application/pdf", "Content-Disposition: attachment; filename=\"=?iso-8859-1?q?caf=E9?=.pdf\""}, "café.pdf"},
		{[]string{"Content-Type: application/pdf; charset=koi8-r", "Content-Disposition: attachment; filename=\"\xf0\xd2\xc9\xd7\xc5\xd4.pdf\""}, "Привет.pdf"},
		{[]string{"Content-Type: application/pdf", "Content-Disposition: attachment; filename=\"C:\\\\Users\\\\me\\\\x.pdf\""}, "x.pdf"},
		{[]string{"Content-Type: application/pdf", "Content-Disposition: attachment; filename=\"../../etc/passwd\""}, "passwd"},
		{[]string{"Content-Type: application/octet-stream; name=\"from-type.bin\""}, "from-type.bin"},
		{[]string{"Content-Type: application/octet-stream"}, ""},
	}
	for _, tc := range tests {
		lines := []string{"From: a@b.c", "Content-Type: multipart/mixed; boundary=b", "", "--b", "", "text", "--b"}
		lines = append(lines, tc.headers...)
		m := Parse(eml(append(lines, "", "data", "--b--")...), Options{})
		if len(m.Attachments) != 1 || m.Attachments[0].Name != tc.name {
			t.Errorf("%q: attachments %+v, want name %q", tc.headers, m.Attachments, tc.name)
		}
	}
}

const forwardMail = `From: a@b.c
Subject: Fwd: problem
Content-Type: multipart/mixed; boundary="f"

--f
Content-Type: text/plain

See below.
--f
Content-Type: message/rfc822
Content-Disposition: attachment

From: customer@x.org
Subject: =?utf-8?q?Drucker_kaputt/defekt?=
Content-Type: multipart/mixed; boundary="g"

--g
Content-Type: text/plain

inner text
--g
Content-Type: image/jpeg; name="photo.jpg"
Content-Transfer-Encoding: base64

/9j/
--g--
--f--
`

func TestAttachedMessage(t *testing.T) {
	m := Parse([]byte(forwardMail), Options{})
	if m.Text != "See below." || m.Problem != ProblemNone {
		t.Errorf("Text %q problem %q", m.Text, m.ProblemWhy)
	}
	if len(m.Attachments) != 2 {
		t.Fatalf("attachments %+v", m.Attachments)
	}
	a, b := m.Attachments[0], m.Attachments[1]
	if a.Name != "defekt.eml" && a.Name != "Drucker kaputt_defekt.eml" {
		// Slashes must not survive in a file name; the part after the
		// last one is kept.
		t.Errorf("message attachment name %q", a.Name)
	}
	if a.ContentType != "message/rfc822" || a.Size == 0 || len(a.SHA256) != 64 {
		t.Errorf("message attachment %+v", a)
	}
	if b.Name != "photo.jpg" || b.Size != 3 || b.SHA256 != sha("\xff\xd8\xff") {
		t.Errorf("nested attachment %+v", b)
	}

	noSubject := strings.Replace(forwardMail, "Subject: =?utf-8?q?Drucker_kaputt/defekt?=\n", "", 1)
	if m := Parse([]byte(noSubject), Options{}); len(m.Attachments) == 0 || m.Attachments[0].Name != "forwarded.eml" {
		t.Errorf("no subject: %+v", m.Attachments)
	}

	inner := "From: x@y.z\r\nSubject: encoded\r\n\r\nhello\r\n"
	b64 := eml("From: a@b.c", "Content-Type: multipart/mixed; boundary=f", "", "--f", "", "outer",
		"--f", "Content-Type: message/rfc822", "Content-Transfer-Encoding: base64", "",
		base64.StdEncoding.EncodeToString([]byte(inner)), "--f--")
	m = Parse(b64, Options{})
	if len(m.Attachments) != 1 || m.Attachments[0].Name != "encoded.eml" || m.Attachments[0].SHA256 != sha(inner) {
		t.Errorf("base64 message: %+v", m.Attachments)
	}
}

func TestTopLevelAttachment(t *testing.T) {
	m := Parse(eml("From: a@b.c", "Content-Type: application/pdf", "Content-Transfer-Encoding: base64", "", "JVBERi0="), Options{})
	if m.Text != "" || len(m.Attachments) != 1 || m.Attachments[0].Size != 5 {
		t.Errorf("Text %q attachments %+v", m.Text, m.Attachments)
	}
	m = Parse(eml("From: a@b.c", "Content-Type: text/plain", "Content-Disposition: attachment; filename=a.txt", "", "x"), Options{})
	if m.Text != "" || len(m.Attachments) != 1 || m.Attachments[0].Name != "a.txt" {
		t.Errorf("Text %q attachments %+v", m.Text, m.Attachments)
	}
}

func TestFlowed(t *testing.T) {
	tests := []struct {
		params, body, want string
	}{
		{"format=flowed", "This is a \r\nlong line.\r\nNew line.", "This is a long line.\nNew line."},
		{"format=flowed; delsp=yes", "Japa\r\nnese", "Japanese"[:4] + "\nnese"},
		{"format=flowed; delsp=yes", "Japa \r\nnese", "Japanese"},
		{"format=flowed", " From stuffed\r\n >not a quote", "From stuffed\n>not a quote"},
		{"format=flowed", "> quoted \r\n> more\r\nreply", "> quoted more\nreply"},
		{"format=flowed", "> a \r\n>> b", "> a \n>> b"},
		{"format=flowed", "text\r\n-- \r\nsig", "text\n-- \nsig"},
		{"format=fixed", "kept \r\nas is", "kept \nas is"},
	}
	for _, tc := range tests {
		m := Parse(eml("From: a@b.c", "Content-Type: text/plain; charset=utf-8; "+tc.params, "", tc.body), Options{})
		if m.Text != tc.want {
			t.Errorf("%s %q: Text = %q, want %q", tc.params, tc.body, m.Text, tc.want)
		}
	}
}
