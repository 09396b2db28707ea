package smtp

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"mailgw/config"
)

// injected is a complete second transaction an attacker hides after a
// fake end of data (CERT VU#302671): a server that took the variant for the
// end of the data would run it as commands.
const injected = "MAIL FROM:<ceo@example.com>\r\n" +
	"RCPT TO:<it@example.com>\r\n" +
	"DATA\r\n" +
	"From: ceo@example.com\r\nTo: it@example.com\r\nSubject: smuggled\r\n\r\nwire the money\r\n"

// smugglingCases are the data sections of messages that hide injected
// behind an end-of-data look-alike or a bare line end, each followed by
// the real end of data.
var smugglingCases = []struct {
	name  string
	data  string
	quirk string // how go-smtp's data reader deviates, see below
}{
	{"LF.LF", "From: carol@example.com\r\nSubject: a\r\n\r\nbody\n.\n" + injected, ""},
	{"LF.CRLF", "From: carol@example.com\r\nSubject: a\r\n\r\nbody\n.\r\n" + injected, ""},
	{"CR.CR", "From: carol@example.com\r\nSubject: a\r\n\r\nbody\r.\r" + injected, ""},
	{"CRLF.LF", "From: carol@example.com\r\nSubject: a\r\n\r\nbody\r\n.\n" + injected, ""},
	// go-smtp v0.25.1 drops ".\r" at the start of a line when no LF follows,
	// so the bare CR never reaches mailgw: the injected text stays inside
	// the one message (it ends nothing early and runs no command).
	{"CRLF.CR", "From: carol@example.com\r\nSubject: a\r\n\r\nbody\r\n.\r" + injected, quirkMerged},
	{"CR.LF", "From: carol@example.com\r\nSubject: a\r\n\r\nbody\r.\n" + injected, ""},
	{"bare LF in header", "From: carol@example.com\r\nSubject: a\nBcc: x@example.com\r\n\r\nbody\r\n" + injected, ""},
	{"bare CR in header", "From: carol@example.com\r\nSubject: a\rBcc: x@example.com\r\n\r\nbody\r\n" + injected, ""},
	{"bare LF in body", "From: carol@example.com\r\nSubject: a\r\n\r\nbody\n" + injected, ""},
	{"bare CR in body", "From: carol@example.com\r\nSubject: a\r\n\r\nbody\r" + injected, ""},
	{"bare LF before end", "From: carol@example.com\r\nSubject: a\r\n\r\n" + injected + "tail\n", ""},
	{"bare CR before end", "From: carol@example.com\r\nSubject: a\r\n\r\n" + injected + "tail\rx", ""},
	// The data ends in "\r\r\n.\r\n": go-smtp v0.25.1 loses the line start
	// after "\r\r" and never sees the end of data; mailgw's data-rate
	// deadline then closes the connection, and nothing is queued.
	{"bare CR just before the end of data", "From: carol@example.com\r\nSubject: a\r\n\r\n" + injected + "tail\r", quirkStalls},
}

const (
	quirkMerged = "merged"
	quirkStalls = "stalls"
)

func TestSmuggling(t *testing.T) {
	for _, tt := range smugglingCases {
		t.Run(tt.name, func(t *testing.T) {
			ts, h := fakeServer(t, func(c *config.Config) {
				c.SMTP.DataGrace = config.Duration(300 * time.Millisecond)
				c.SMTP.MinDataRate = 1000
			})
			c := dialRaw(t, ts.addr)
			c.greet()
			c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n")
			c.expect(250, "")
			c.expect(250, "")
			c.expect(354, "")
			data := tt.data
			if !strings.HasSuffix(data, "\r\n") {
				data += "\r\n"
			}
			c.send(data + ".\r\n")
			switch tt.quirk {
			case quirkMerged:
				c.expect(250, "2.0.0")
				msgs := h.messages()
				if len(msgs) != 1 || !strings.Contains(string(msgs[0].raw), "MAIL FROM:<ceo@example.com>") {
					t.Fatalf("handler got %d messages, want the one message with the injected text in its body", len(msgs))
				}
				if r := c.cmd("NOOP"); r.code != 250 {
					t.Fatalf("reply after DATA = %v, want the NOOP's: the injected transaction was run", r)
				}
				return
			case quirkStalls:
				if replies := c.waitClosed(); len(replies) != 0 {
					t.Errorf("replies before the close: %v", replies)
				}
				if msgs := h.messages(); len(msgs) != 0 {
					t.Fatalf("handler got %d messages, want none", len(msgs))
				}
				return
			}
			r := c.reply()
			if r.code != 554 || r.enhanced() != "5.6.0" {
				t.Errorf("DATA reply = %v, want 554 5.6.0", r)
			}
			// Exactly one reply: the next one answers the NOOP, not an
			// injected command.
			if r := c.cmd("NOOP"); r.code != 250 || !strings.Contains(r.text(), "successfully done nothing") {
				t.Fatalf("reply after DATA = %v, want the NOOP's: the injected transaction was run", r)
			}
			if msgs := h.messages(); len(msgs) != 0 {
				t.Fatalf("handler got %d messages, want none; first: %q", len(msgs), msgs[0].raw)
			}
			recs := h.recordedDecisions()
			if len(recs) != 1 || recs[0].sd.Reason != "malformed" || recs[0].sd.Space != "IT" {
				t.Errorf("recorded %+v, want one malformed decision for IT", recs)
			}

			// The connection still works for a clean transaction.
			c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n")
			c.expect(250, "")
			c.expect(250, "")
			c.expect(354, "")
			c.send(message("carol@example.com", "it@example.com", "clean", "after") + ".\r\n")
			c.expect(250, "2.0.0")
			msgs := h.messages()
			if len(msgs) != 1 {
				t.Fatalf("handler got %d messages, want exactly the clean one", len(msgs))
			}
			if strings.Contains(string(msgs[0].raw), "smuggled") {
				t.Errorf("clean message holds smuggled text: %q", msgs[0].raw)
			}
		})
	}
}

// TestBareNewline checks the scanner on the data as go-smtp hands it over.
func TestBareNewline(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", -1},
		{"a\r\nb\r\n", -1},
		{"\r\n\r\n", -1},
		{"a\nb", 1},
		{"a\rb", 1},
		{"a\r", 1},
		{"\n", 0},
		{"a\r\n\n", 3},
		{"a\r\r\n", 1},
		{"a\r\nb\n.\n", 4},
	}
	for _, tt := range tests {
		if got := bareNewline([]byte(tt.in)); got != tt.want {
			t.Errorf("bareNewline(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// bdat sends msg in chunks of the given sizes, the last with LAST, and
// returns the reply to each chunk.
func bdat(c *rawConn, msg string, sizes ...int) []reply {
	c.t.Helper()
	var out []reply
	for i, n := range sizes {
		last := ""
		if i == len(sizes)-1 {
			last = " LAST"
			n = len(msg)
		}
		c.send(fmt.Sprintf("BDAT %d%s\r\n%s", n, last, msg[:n]))
		msg = msg[n:]
		out = append(out, c.reply())
	}
	return out
}

func TestBDAT(t *testing.T) {
	clean := message("carol@example.com", "it@example.com", "chunked", "line one\r\nline two")
	tests := []struct {
		name   string
		msg    string
		chunks []int // sizes of all chunks but the last
		code   int
		ench   string
	}{
		{"one chunk", clean, nil, 250, "2.0.0"},
		{"three chunks", clean, []int{10, 30}, 250, "2.0.0"},
		{"chunk boundary inside CRLF", clean, []int{strings.Index(clean, "\r\n") + 1}, 250, "2.0.0"},
		{"bare LF", "From: carol@example.com\r\nSubject: a\r\n\r\nbody\n.\n" + injected, nil, 554, "5.6.0"},
		{"bare CR", "From: carol@example.com\r\nSubject: a\r\n\r\nbody\r.\r" + injected, nil, 554, "5.6.0"},
		{"bare LF in second chunk", clean + "x\ny\r\n", []int{len(clean)}, 554, "5.6.0"},
		{"dot line is data", "From: carol@example.com\r\nSubject: a\r\n\r\n.\r\nmore\r\n", nil, 250, "2.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, h := fakeServer(t, nil)
			c := dialRaw(t, ts.addr)
			c.greet()
			c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\n")
			c.expect(250, "")
			c.expect(250, "")
			replies := bdat(c, tt.msg, append(tt.chunks, 0)...)
			for i, r := range replies[:len(replies)-1] {
				if r.code != 250 {
					t.Errorf("chunk %d: %v", i, r)
				}
			}
			r := replies[len(replies)-1]
			if r.code != tt.code || r.enhanced() != tt.ench {
				t.Fatalf("BDAT LAST = %v, want %d %s", r, tt.code, tt.ench)
			}
			msgs := h.messages()
			if tt.code != 250 {
				if len(msgs) != 0 {
					t.Errorf("handler got a refused message: %q", msgs[0].raw)
				}
			} else {
				if len(msgs) != 1 {
					t.Fatalf("handler got %d messages, want 1", len(msgs))
				}
				if _, body, _ := strings.Cut(string(msgs[0].raw), ";\r\n\t"); !strings.HasSuffix(body, tt.msg) {
					t.Errorf("message not kept byte for byte: %q", msgs[0].raw)
				}
			}
			if r := c.cmd("NOOP"); r.code != 250 {
				t.Errorf("NOOP after BDAT: %v", r)
			}
		})
	}
}

func TestBDATOverSize(t *testing.T) {
	ts, h := fakeServer(t, func(c *config.Config) { c.SMTP.MaxMessageBytes = 1000 })
	c := dialRaw(t, ts.addr)
	c.greet()
	c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\n")
	c.expect(250, "")
	c.expect(250, "")
	c.send("BDAT 600\r\n" + strings.Repeat("a", 598) + "\r\n")
	c.expect(250, "")
	c.send("BDAT 600 LAST\r\n" + strings.Repeat("b", 598) + "\r\n")
	c.expect(552, "5.3.4")
	if len(h.messages()) != 0 {
		t.Error("handler got an oversized message")
	}
	if r := c.cmd("NOOP"); r.code != 250 {
		t.Errorf("NOOP after refusal: %v", r)
	}
}

// TestBDATClientGone: a client that hangs up after announcing a chunk it
// never sends must not make the server panic (go-smtp runs Data for BDAT
// on its own goroutine and reads the session from the connection, which
// Close has already cleared).
func TestBDATClientGone(t *testing.T) {
	ts, _ := fakeServer(t, nil)
	for i := 0; i < 20; i++ {
		c := dialRaw(t, ts.addr)
		c.send("EHLO client.example\r\nMAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nBDAT 10\r\n")
		if tc, ok := c.c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		c.waitClosed()
	}
	// A full transaction afterwards: the server goes on, and by the time it
	// is answered the sessions above have ended.
	d := dialClient(t, ts.addr)
	if _, err := send(d, "carol@example.com", []string{"it@example.com"}, message("carol@example.com", "it@example.com", "after", "x")); err != nil {
		t.Fatalf("transaction after the hang-ups: %v", err)
	}
	logs := ts.logs.String()
	if n := strings.Count(logs, "panic"); n > 0 {
		first, _, _ := strings.Cut(logs[strings.Index(logs, "panic"):], `\n`)
		t.Errorf("hang-ups mid-BDAT logged %d panics, the first: %s", strings.Count(logs, `"level":"error"`), first)
	}
}
