package parse

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestLimits(t *testing.T) {
	nested := func(depth int) []byte {
		var b bytes.Buffer
		b.WriteString("From: a@b.c\r\n")
		for i := range depth {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
		}
		b.WriteString("\r\ndeep text\r\n")
		for i := depth - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "--b%d--\r\n", i)
		}
		return b.Bytes()
	}
	parts := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString("From: a@b.c\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n")
		for range n {
			b.WriteString("--p\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n")
		}
		b.WriteString("--p--\r\n")
		return b.Bytes()
	}
	tests := []struct {
		name    string
		raw     []byte
		lim     Limits
		problem Problem
		why     string
	}{
		{"size ok", simple(), Limits{MaxMessageBytes: int64(len(simple()))}, ProblemNone, ""},
		{"size", simple(), Limits{MaxMessageBytes: 50}, ProblemTooLarge, fmt.Sprintf("message is %d bytes, over the limit of 50", len(simple()))},
		{"header", simple("X-Long: " + strings.Repeat("x", 200)), Limits{MaxHeaderBytes: 200}, ProblemTooLarge, "header section over 200 bytes"},
		{"header default", simple("X-Long: " + strings.Repeat("x", 1<<20)), Limits{}, ProblemTooLarge, "header section over 1048576 bytes"},
		{"parts ok", parts(9), Limits{MaxParts: 10}, ProblemNone, ""},
		{"parts", parts(10), Limits{MaxParts: 10}, ProblemTooLarge, "more than 10 MIME parts"},
		{"depth ok", nested(3), Limits{MaxDepth: 3}, ProblemNone, ""},
		{"depth", nested(4), Limits{MaxDepth: 3}, ProblemMalformed, "MIME nesting deeper than 3"},
		{"depth default", nested(25), Limits{}, ProblemMalformed, "MIME nesting deeper than 20"},
		{"too large beats malformed", []byte("no header at all, but long"), Limits{MaxMessageBytes: 10}, ProblemTooLarge, "message is 26 bytes, over the limit of 10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Parse(tc.raw, Options{Limits: tc.lim})
			if m.Problem != tc.problem || m.ProblemWhy != tc.why {
				t.Errorf("got %q %q, want %q %q", m.Problem, m.ProblemWhy, tc.problem, tc.why)
			}
		})
	}

	m := Parse(simple(), Options{Limits: Limits{MaxMessageBytes: 50}})
	if m.Text != "" || len(m.From) != 1 || m.MessageID == "" {
		t.Errorf("too large: header should be parsed, body skipped: %q %v %q", m.Text, m.From, m.MessageID)
	}
	m = Parse(nested(3), Options{Limits: Limits{MaxDepth: 3}})
	if m.Text != "deep text" {
		t.Errorf("nested text %q", m.Text)
	}
}

// TestAttachedMessageLimits checks that parts and depth inside attached
// messages count.
func TestAttachedMessageLimits(t *testing.T) {
	inner := "From: x@y.z\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n" +
		strings.Repeat("--i\r\nContent-Type: image/gif\r\n\r\nGIF\r\n", 5) + "--i--\r\n"
	raw := eml("From: a@b.c", "Content-Type: multipart/mixed; boundary=o", "", "--o", "", "text",
		"--o", "Content-Type: message/rfc822", "", inner, "--o--")
	if m := Parse(raw, Options{Limits: Limits{MaxParts: 8}}); m.Problem != ProblemTooLarge {
		t.Errorf("parts in attached message not counted: %q %d", m.Problem, len(m.Attachments))
	}
	if m := Parse(raw, Options{Limits: Limits{MaxParts: 9}}); m.Problem != ProblemNone || len(m.Attachments) != 6 {
		t.Errorf("9 parts: %q %+v", m.ProblemWhy, m.Attachments)
	}
	if m := Parse(raw, Options{Limits: Limits{MaxDepth: 2}}); m.Problem != ProblemMalformed {
		t.Errorf("depth in attached message not counted: %q", m.ProblemWhy)
	}

	// Messages attached inside messages, 100 deep.
	msg := "From: x@y.z\r\n\r\ninnermost\r\n"
	for range 100 {
		msg = "From: x@y.z\r\nContent-Type: message/rfc822\r\n\r\n" + msg
	}
	start := time.Now()
	m := Parse([]byte(msg), Options{})
	if m.Problem != ProblemMalformed || time.Since(start) > time.Second {
		t.Errorf("nested messages: %q in %v", m.ProblemWhy, time.Since(start))
	}
}

// parseMeasured parses raw and returns the message, the time taken and the
// bytes allocated.
func parseMeasured(raw []byte) (*Message, time.Duration, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	m := Parse(raw, Options{})
	d := time.Since(start)
	runtime.ReadMemStats(&after)
	return m, d, after.TotalAlloc - before.TotalAlloc
}

func TestBombs(t *testing.T) {
	var parts bytes.Buffer
	parts.WriteString("From: a@b.c\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n")
	for range 10000 {
		parts.WriteString("--p\r\n\r\nx\r\n")
	}
	parts.WriteString("--p--\r\n")

	var deep bytes.Buffer
	deep.WriteString("From: a@b.c\r\n")
	for range 5000 {
		deep.WriteString("Content-Type: multipart/mixed; boundary=\"\"\"\r\n\r\n--\"\r\n")
	}
	var deep2 bytes.Buffer
	deep2.WriteString("From: a@b.c\r\n")
	for i := range 5000 {
		fmt.Fprintf(&deep2, "Content-Type: multipart/mixed; boundary=%d\r\n\r\n--%d\r\n", i, i)
	}

	var manyHeaders bytes.Buffer
	manyHeaders.WriteString("From: a@b.c\r\n")
	for manyHeaders.Len() < 900<<10 {
		manyHeaders.WriteString("To: x" + "@y.z, \"q\" <u@v.w>\r\n")
	}
	manyHeaders.WriteString("\r\nbody\r\n")

	var longLine bytes.Buffer
	longLine.WriteString("From: a@b.c\r\nSubject: ")
	longLine.WriteString(strings.Repeat("=?utf-8?q?", 90000))
	longLine.WriteString("\r\n\r\n")

	var boundaryNoise bytes.Buffer
	boundaryNoise.WriteString("From: a@b.c\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\n")
	for range 100000 {
		boundaryNoise.WriteString("--a x\r\n")
	}

	var qpNoise bytes.Buffer
	qpNoise.WriteString("From: a@b.c\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qpNoise.WriteString(strings.Repeat("=", 1<<20))

	var htmlNoise bytes.Buffer
	htmlNoise.WriteString("From: a@b.c\r\nContent-Type: text/html\r\n\r\n")
	htmlNoise.WriteString(strings.Repeat("<p><b><i><br>&amp;", 50000))

	oneHeader := func(name, unit string) []byte {
		return []byte("From: a@b.c\r\n" + name + ": " + strings.Repeat(unit, 900<<10/len(unit)) + "\r\n\r\nbody")
	}
	tests := []struct {
		name    string
		raw     []byte
		problem Problem
	}{
		{"one huge To", oneHeader("To", "a@b.c, "), ProblemNone},
		{"To of comments", oneHeader("To", "("), ProblemNone},
		{"To of quotes", oneHeader("To", `"a`), ProblemNone},
		{"To of angles", oneHeader("To", "<a@b"), ProblemNone},
		{"To of names", oneHeader("To", "Doe, "), ProblemNone},
		{"huge References", oneHeader("References", "<a@b> "), ProblemNone},
		{"huge Subject", oneHeader("Subject", "=?utf-8?b?w4?= "), ProblemNone},
		{"huge Content-Type", oneHeader("Content-Type", "; filename*1*=%41"), ProblemNone},
		{"huge Date", oneHeader("Date", "Mon "), ProblemNone},
		{"10k parts", parts.Bytes(), ProblemTooLarge},
		{"5000 deep, empty boundary", deep.Bytes(), ProblemNone},
		{"5000 deep", deep2.Bytes(), ProblemMalformed},
		{"many address headers", manyHeaders.Bytes(), ProblemNone},
		{"encoded word noise", longLine.Bytes(), ProblemNone},
		{"boundary noise", boundaryNoise.Bytes(), ProblemNone},
		{"= noise", qpNoise.Bytes(), ProblemNone},
		{"html noise", htmlNoise.Bytes(), ProblemNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, d, alloc := parseMeasured(tc.raw)
			if m.Problem != tc.problem {
				t.Errorf("problem %q (%s), want %q", m.Problem, m.ProblemWhy, tc.problem)
			}
			if d > 2*time.Second {
				t.Errorf("took %v", d)
			}
			if limit := 64*uint64(len(tc.raw)) + 1<<20; alloc > limit {
				t.Errorf("allocated %d bytes for %d input bytes", alloc, len(tc.raw))
			}
			t.Logf("%d bytes: %v, %d bytes allocated", len(tc.raw), d, alloc)
		})
	}
}
