package parse

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"testing"

	"golang.org/x/text/encoding"
)

// traceHeader is what a message typically carries by the time it reaches
// the gateway.
const traceHeader = "Return-Path: <carol@example.com>\r\n" +
	"Delivered-To: it@example.com\r\n" +
	"Received: from mail-ej1-f41.google.com (mail-ej1-f41.google.com [209.85.218.41])\r\n" +
	"\tby mx.example.com (Postfix) with ESMTPS id 4ZCz3WJPSPrH\r\n" +
	"\tfor <it@example.com>; Wed, 12 Mar 2025 15:14:08 +0100 (CET)\r\n" +
	"Authentication-Results: mx.example.com; dkim=pass header.d=example.com; spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel1;\r\n" +
	"\th=from:to:subject:date:message-id:mime-version:content-type;\r\n" +
	"\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
	"\tb=ZmFrZSBzaWduYXR1cmUgZm9yIGJlbmNobWFya2luZyBvbmx5IGZha2Ugc2lnbmF0dXJlIGZvciBiZW5jaG1hcmtpbmcgb25seQ==\r\n"

func benchPlain() []byte {
	var b bytes.Buffer
	b.WriteString(traceHeader)
	b.WriteString("From: Carol Weber <carol@example.com>\r\nTo: IT Help <it@example.com>\r\nCc: Ted Baker <ted@example.com>\r\n" +
		"Subject: VPN drops every 10 minutes since Monday\r\nDate: Wed, 12 Mar 2025 15:14:06 +0100\r\n" +
		"Message-ID: <ef87e072a1f531f01d4ee5791e785773@EXCH01.corp.example.com>\r\n" +
		"In-Reply-To: <aa11@example.com>\r\nReferences: <a9@example.com> <aa11@example.com>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	line := "since Monday my VPN connection drops roughly every ten minutes, Grüße.\r\n"
	for b.Len() < 4096-len(line) {
		b.WriteString(line)
	}
	return b.Bytes()
}

func benchAttachment() []byte {
	data := make([]byte, 100<<10)
	for i := range data {
		data[i] = byte(i*131 + i>>8)
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	b.WriteString(traceHeader)
	b.WriteString("From: Carol Weber <carol@example.com>\r\nTo: it@example.com\r\nSubject: Screenshot\r\n" +
		"Date: Wed, 12 Mar 2025 15:14:06 +0100\r\nMessage-ID: <att@example.com>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"See the attached screenshot.\r\n\r\nCarol\r\n--b1\r\nContent-Type: image/png; name=\"screenshot.png\"\r\n" +
		"Content-Disposition: attachment; filename=\"screenshot.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for i := 0; i < len(enc); i += 76 {
		b.WriteString(enc[i:min(i+76, len(enc))])
		b.WriteString("\r\n")
	}
	b.WriteString("--b1--\r\n")
	return b.Bytes()
}

func benchMultilingual(tb testing.TB) []byte {
	word := func(label string, s string) string {
		var enc encoding.Encoding
		for _, c := range charsetCases {
			if c.label == label {
				enc = c.enc
			}
		}
		raw, err := enc.NewEncoder().Bytes([]byte(s))
		if err != nil {
			tb.Fatal(err)
		}
		return fmt.Sprintf("=?%s?B?%s?=", label, base64.StdEncoding.EncodeToString(raw))
	}
	var b bytes.Buffer
	b.WriteString(traceHeader)
	b.WriteString("From: " + word("koi8-r", "Дейв Миллер") + " <dave@customer.example>\r\n")
	b.WriteString("To: " + word("iso-2022-jp", "サポート") + " <it@example.com>, " +
		word("big5", "林葛蕾") + " <grace@other.example>\r\n")
	b.WriteString("Subject: " + word("shift_jis", "会議室のプロジェクター") + " - " +
		word("iso-8859-2", "błędna stawka") + "\r\n")
	b.WriteString("Date: Wed, 12 Mar 2025 15:14:06 +0100\r\nMessage-ID: <ml@example.com>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	var html strings.Builder
	html.WriteString("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>p{margin:0}</style><title>x</title></head><body>")
	paras := []string{
		"Ο εκτυπωτής στον 2ο όροφο δεν τυπώνει &mdash; παρακαλώ ελέγξτε.",
		"Не могу подключиться к VPN: ошибка&nbsp;809.",
		"会議室のプロジェクターが映りません。よろしくお願いします。",
		"请问三月份发票何时开具？开票信息如下。",
		"이메일 서명이 깨져 보입니다 &amp; 확인 부탁드립니다.",
		"مرحبا، لا يمكنني الوصول إلى البريد.",
		"Zażółć gęślą jaźń &lt;test&gt; Grüße aus Köln.",
	}
	for html.Len() < 16<<10 {
		for _, p := range paras {
			html.WriteString("<div><p>" + p + "</p><br></div>\n")
		}
		html.WriteString("<table><tr><td>a</td><td>b</td></tr></table><script>var x = 1;</script>\n")
	}
	html.WriteString("</body></html>")
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(html.String()))
	w.Close()
	return b.Bytes()
}

func benchParse(b *testing.B, raw []byte) {
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	m := Parse(raw, Options{})
	if m.Problem != ProblemNone || (m.Text == "" && len(m.Attachments) == 0) {
		b.Fatalf("bad benchmark input: %q %q", m.ProblemWhy, m.Defects)
	}
	b.ResetTimer()
	for b.Loop() {
		Parse(raw, Options{})
	}
}

func BenchmarkParsePlain4KB(b *testing.B) { benchParse(b, benchPlain()) }

func BenchmarkParseAttachment100KB(b *testing.B) { benchParse(b, benchAttachment()) }

func BenchmarkParseMultilingualHTML(b *testing.B) { benchParse(b, benchMultilingual(b)) }

func TestBenchInputs(t *testing.T) {
	m := Parse(benchMultilingual(t), Options{})
	if m.Subject != "会議室のプロジェクター - błędna stawka" || m.From[0].Name != "Дейв Миллер" || m.To[0].Name != "サポート" || m.To[1].Name != "林葛蕾" {
		t.Errorf("headers: %q %v %v", m.Subject, m.From, m.To)
	}
	if !strings.Contains(m.Text, "Не могу подключиться к VPN: ошибка 809.") || strings.Contains(m.Text, "var x") {
		t.Errorf("text: %.300q", m.Text)
	}
	m = Parse(benchAttachment(), Options{})
	if len(m.Attachments) != 1 || m.Attachments[0].Size != 100<<10 {
		t.Errorf("attachment: %+v", m.Attachments)
	}
}
