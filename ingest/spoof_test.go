package ingest_test

import (
	"testing"

	"mailgw/identify"
	"mailgw/identify/mailaddr"
	"mailgw/parse"
)

func TestScratchFrom(t *testing.T) {
	froms := []string{
		"From: a@x.example\r\nFrom: carol@example.com",
		"From: carol@example.com, attacker@evil.example",
		`From: "carol@example.com" <attacker@evil.example>`,
		"From: =?utf-8?q?Carol_=00=0D=0ABcc=3A_x=40evil.example_=3Ccarol=40example.com=3E?= <attacker@evil.example>",
		"From: =?utf-8?b?PGNhcm9sQGV4YW1wbGUuY29tPg==?= <attacker@evil.example>",
		"From: =?utf-8?q?carol=40example.com?=",
		"From: =?utf-8?q?carol=40example.com?= <attacker@evil.example>",
		"From: carol@example.com <attacker@evil.example>",
		"From: attacker@evil.example (carol@example.com)",
		"From: (carol@example.com) attacker@evil.example",
		"From: carol@еxample.com",
		"From: ju\u0308rgen@example.com",
		"From: Carol@EXAMPLE.com",
		`From: "carol"@example.com`,
		"From: carol@example.com.",
		"From: <@evil.example:carol@example.com>",
		"From: <@example.com:attacker@evil.example>",
		"From: ",
		"From: <>",
		"From: Undisclosed recipients:;",
		"From: car\x00ol@example.com",
		"From: carol\x00@evil.example",
		"From: carol@example.com\x00@evil.example",
		"From: <carol@example.com\x00>",
		"From: \"car\x00ol\"@example.com",
		"From: carol@example.com\x00.evil.example",
		"From: attacker@evil.example\r\n\tcarol@example.com",
		"From: Carol <carol@example.com>, <attacker@evil.example>",
		"From: carol@example.com,",
		"From: ,carol@example.com",
		"From: \"carol@example.com\\\" <attacker@evil.example>",
		"From: \"attacker@evil.example\" <carol@example.com>",
		"From: <carol@example.com>attacker@evil.example",
		"From: <attacker@evil.example>carol@example.com",
		"From: carol@example.com@evil.example",
		"From: \"carol@example.com\"@evil.example",
		"From: carol@[127.0.0.1]",
		"From: team: carol@example.com;",
		"From: team: carol@example.com, attacker@evil.example;",
		"From: carol@example.com\r\nSender: x@y.example",
		"From: carol%evil.example@example.com",
		"From: carol@example.com (\r\n)",
		"From: =?utf-8?q?=3Ccarol=40example.com=3E?=",
		"From: carol@exa\u0301mple.com",
		"From: carol@xn--exmple-cua.com",
	}
	for _, f := range froms {
		raw := []byte(f + "\r\nTo: it@example.com\r\nSubject: x\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n")
		m := parse.Parse(raw, parse.Options{Limits: parse.Limits{MaxMessageBytes: 1 << 20, MaxHeaderBytes: 1 << 20, MaxParts: 10, MaxDepth: 5}})
		var norm []string
		for _, a := range m.From {
			n, err := mailaddr.Normalize(a.Address)
			norm = append(norm, n+" err="+func() string {
				if err != nil {
					return err.Error()
				}
				return ""
			}()+" canon="+func() string {
				if identify.CanonicalFrom(a.Address) {
					return "y"
				}
				return "n"
			}())
		}
		t.Logf("%q\n   -> from=%q problem=%s %q norm=%q", f, m.From, m.Problem, m.ProblemWhy, norm)
	}
}
