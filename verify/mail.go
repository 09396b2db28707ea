package verify

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html/template"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	texttemplate "text/template"
	"time"
)

var textBody = texttemplate.Must(texttemplate.New("text").Parse(`Hello{{if .Name}} {{.Name}}{{end}},

we received your email{{if .Subject}} "{{.Subject}}"{{end}}{{if .Space}} for {{.Space}}{{end}}.
Before we can open a request for it, please confirm that this address
is yours:

  {{.Link}}

The link is valid until {{.Expires}}. If you did not write to us, ignore
this message: nothing will be opened, and your address will be forgotten.
`))

var htmlBody = template.Must(template.New("html").Parse(`<!DOCTYPE html>
<html lang="en"><body style="font-family: sans-serif; line-height: 1.5">
<p>Hello{{if .Name}} {{.Name}}{{end}},</p>
<p>we received your email{{if .Subject}} &ldquo;{{.Subject}}&rdquo;{{end}}{{if .Space}} for {{.Space}}{{end}}.
Before we can open a request for it, please confirm that this address is yours:</p>
<p><a href="{{.Link}}" style="display:inline-block;padding:.6em 1.2em;background:#0b57d0;color:#fff;text-decoration:none;border-radius:4px">Confirm my email address</a></p>
<p>Or open this link: {{.Link}}</p>
<p>The link is valid until {{.Expires}}. If you did not write to us, ignore this message:
nothing will be opened, and your address will be forgotten.</p>
</body></html>
`))

// compose builds the verification mail. It carries what makes any
// well-behaved responder stay silent (Auto-Submitted, RFC 3834;
// X-Auto-Response-Suppress for Exchange) and what makes mailgw recognise
// it if it comes back anyway: a Message-ID mailgw.*@hostname and the loop
// header.
func (s *Service) compose(h Held, link string) ([]byte, error) {
	data := struct{ Name, Subject, Space, Link, Expires string }{
		Name: oneLine(h.Name), Subject: oneLine(h.Subject), Link: link,
		Expires: s.now().Add(s.cfg.TTL.D()).UTC().Format("Monday, 2 January 2006 15:04 MST"),
	}
	if h.Space != "" {
		data.Space = s.spaceName(h.Space)
	}
	var text, html bytes.Buffer
	if err := textBody.Execute(&text, data); err != nil {
		return nil, fmt.Errorf("verify: compose: %w", err)
	}
	if err := htmlBody.Execute(&html, data); err != nil {
		return nil, fmt.Errorf("verify: compose: %w", err)
	}

	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("verify: compose: %w", err)
	}
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	hdr := []struct{ k, v string }{
		{"From", s.opt.From},
		{"To", h.Address},
		{"Subject", mime.QEncoding.Encode("utf-8", "Please confirm your email address")},
		{"Date", s.now().Format(time.RFC1123Z)},
		{"Message-ID", "<mailgw." + hex.EncodeToString(id[:]) + "@" + s.opt.Hostname + ">"},
		{"Auto-Submitted", "auto-generated"},
		{"X-Auto-Response-Suppress", "All"},
		{"X-Mailgw-Loop", s.opt.Hostname},
		{"MIME-Version", "1.0"},
		{"Content-Type", "multipart/alternative; boundary=" + mw.Boundary()},
	}
	var head bytes.Buffer
	for _, kv := range hdr {
		fmt.Fprintf(&head, "%s: %s\r\n", kv.k, kv.v)
	}
	head.WriteString("\r\n")
	for _, part := range []struct {
		ctype string
		body  []byte
	}{{"text/plain; charset=utf-8", text.Bytes()}, {"text/html; charset=utf-8", html.Bytes()}} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, fmt.Errorf("verify: compose: %w", err)
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write(part.body); err != nil {
			return nil, fmt.Errorf("verify: compose: %w", err)
		}
		if err := qp.Close(); err != nil {
			return nil, fmt.Errorf("verify: compose: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("verify: compose: %w", err)
	}
	return append(head.Bytes(), b.Bytes()...), nil
}

// oneLine keeps a sender-supplied string from breaking the mail's layout.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return s
}
