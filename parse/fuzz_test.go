package parse

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzSeeds are small inputs that reach the odd corners quickly.
var fuzzSeeds = []string{
	"From: a@b.c\r\nSubject: =?utf-8?q?x?=\r\n\r\nbody",
	"From: a@b.c\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n\n<p>x</p>\n--b\nContent-Type: message/rfc822\n\nFrom: c@d.e\n\ninner\n--b--\n",
	"From: a@b.c\r\nContent-Type: text/plain; charset=iso-2022-jp\r\nContent-Transfer-Encoding: base64\r\n\r\nGyRCJDMkcyRLJEEkTxsoQg==\r\n",
	"From: a@b.c\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E9=\r\n=ZZ",
	"From: a@b.c\r\nContent-Disposition: attachment; filename*0*=utf-8''%E2; filename*1*=%82%AC\r\n\r\nx",
	"From: Doe, John <j@x>, <@y>, \"q\" z@w (c)\r\nTo: =?x?b?!?=\r\n\r\n",
	"From: a@b.c\r\nContent-Type: multipart/related; boundary=r; start=\"<s>\"\r\n\r\n--r\r\nContent-ID: <s>\r\n\r\nroot\r\n--r--",
	"From: a@b.c\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\r\nAuto-Submitted: auto-replied\r\n\r\n--x\r\n\r\n--x--",
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	dir := filepath.Join("..", "testdata", "mails")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// A slow input must fail with the input saved, not just stall.
		watchdog := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("Parse of %d bytes took over 5s", len(raw))) })
		m := Parse(raw, Options{OwnDomain: "example.com", Limits: Limits{MaxParts: 50, MaxDepth: 8}})
		watchdog.Stop()
		checkMessage(t, raw, m)
	})
}

// checkMessage asserts what must hold for any input.
func checkMessage(t *testing.T, raw []byte, m *Message) {
	t.Helper()
	for _, d := range m.Defects {
		if strings.HasPrefix(d, "panic") {
			t.Fatalf("parser panicked: %s", d)
		}
	}
	switch m.Problem {
	case ProblemNone, ProblemTooLarge, ProblemMalformed:
	default:
		t.Fatalf("Problem %q", m.Problem)
	}
	if (m.Problem == ProblemNone) != (m.ProblemWhy == "") {
		t.Fatalf("Problem %q with ProblemWhy %q", m.Problem, m.ProblemWhy)
	}
	switch m.Machine {
	case MachineNone, MachineAutoReply, MachineBounce, MachineBulk, MachineLoop:
	default:
		t.Fatalf("Machine %q", m.Machine)
	}
	if (m.Machine == MachineNone) != (m.MachineWhy == "") {
		t.Fatalf("Machine %q with MachineWhy %q", m.Machine, m.MachineWhy)
	}
	if bound := 4*len(raw) + 64; len(m.Text) > bound || len(m.HTML) > bound {
		t.Fatalf("Text %d, HTML %d bytes from %d input bytes", len(m.Text), len(m.HTML), len(raw))
	}
	if len(m.Defects) > maxDefects {
		t.Fatalf("%d defects", len(m.Defects))
	}
	if m.Size != int64(len(raw)) || len(m.ContentHash()) != 64 {
		t.Fatalf("Size %d ContentHash %q", m.Size, m.ContentHash())
	}
	strs := []string{m.MessageID, m.Subject, m.Text, m.HTML, m.MachineWhy, m.ProblemWhy, string(m.Machine), string(m.Problem)}
	strs = append(strs, m.InReplyTo...)
	strs = append(strs, m.References...)
	strs = append(strs, m.DeliveredTo...)
	strs = append(strs, m.XOriginalTo...)
	strs = append(strs, m.Defects...)
	for _, l := range [][]Address{m.From, m.Sender, m.ReplyTo, m.To, m.Cc} {
		for _, a := range l {
			strs = append(strs, a.Name, a.Address)
		}
	}
	for _, a := range m.Attachments {
		strs = append(strs, a.Name, a.ContentType, a.SHA256, a.ContentID)
		if a.Size < 0 || a.Size > int64(len(raw)) {
			t.Fatalf("attachment size %d from %d bytes", a.Size, len(raw))
		}
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8: %q", s)
		}
	}
	if strings.ContainsAny(m.Subject, "\r\n\x00") {
		t.Fatalf("Subject %q", m.Subject)
	}
}

// TestFixtures parses every fixture mail and checks the invariants; the
// expected decisions are checked where the whole pipeline runs.
func TestFixtures(t *testing.T) {
	dir := filepath.Join("..", "testdata", "mails")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Skipf("no fixtures: %v", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			checkMessage(t, raw, Parse(raw, Options{}))
		})
	}
}
