package smtp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgw/config"
)

// fuzzTimeout bounds one fuzz input's dialogue; the server must have
// answered and closed by then once the client stopped writing.
const fuzzTimeout = 5 * time.Second

// FuzzSession feeds arbitrary bytes to a server as a client's dialogue
// after EHLO. The server must not panic or hang, may only hand over
// messages without bare CR or LF, to support addresses and within the size
// limit, and must still answer a fresh connection.
func FuzzSession(f *testing.F) {
	const maxBytes = 64 << 10
	ts, h := fakeServer(f, func(c *config.Config) {
		c.SMTP.MaxMessageBytes = maxBytes
		c.SMTP.MaxInflightBytes = 4 * maxBytes
		c.SMTP.MaxConnections = 100000
		c.SMTP.MaxConnectionsPerIP = 100000
		// Thousands of connections a second from one address are the
		// fuzzer's doing, not a flood to refuse.
		c.SMTP.ConnectionRatePerIP.Count = -1
		c.SMTP.MessageRatePerIP.Count = -1
		c.SMTP.MaxRecipients = 5
		c.SMTP.MaxLineLength = 1000
		c.SMTP.CommandTimeout = config.Duration(fuzzTimeout)
	})

	tx := "MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n"
	for _, sc := range smugglingCases {
		f.Add([]byte(tx + sc.data + "\r\n.\r\n"))
		f.Add([]byte(tx + sc.data + "\r\n.\r\nQUIT\r\n"))
		f.Add([]byte("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nBDAT " + strconv.Itoa(len(sc.data)) + " LAST\r\n" + sc.data))
	}
	clean := message("carol@example.com", "it@example.com", "fuzz", "hello\r\n..dot\r\n")
	for _, seed := range []string{
		tx + clean + ".\r\n",
		tx + clean + ".\r\n" + tx + clean + ".\r\nQUIT\r\n",
		"MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nBDAT 10\r\n" + clean[:10] + "BDAT " + strconv.Itoa(len(clean)-10) + " LAST\r\n" + clean[10:],
		"MAIL FROM:<carol@example.com> SIZE=999999999\r\nRCPT TO:<it@example.com>\r\n",
		"MAIL FROM:<>\r\nRCPT TO:<\"x@y\"@example.com>\r\nRCPT TO:<@a:b@c.example>\r\nRCPT TO:<u%v@example.com>\r\nDATA\r\n",
		"RCPT TO:<it@example.com>\r\nDATA\r\n.\r\n",
		"STARTTLS\r\nAUTH PLAIN AGNhcm9sAHg=\r\nVRFY it\r\nEXPN it\r\nHELP\r\nNOOP\r\nRSET\r\n",
		"EHLO again\r\nMAIL FROM:<carol@example.com>\r\nEHLO again\r\nRCPT TO:<it@example.com>\r\n",
		"MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nBDAT 4294967295 LAST\r\nabc",
		"MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nBDAT -1\r\nBDAT 1 MORE\r\n",
		tx + "Subject: " + strings.Repeat("x", 3000) + "\r\n\r\n.\r\n",
		tx + strings.Repeat("a\r\n", 30000) + ".\r\n",
		"MAIL FROM:<carol@example.com>\r\n" + strings.Repeat("RCPT TO:<it@example.com>\r\n", 8) + "DATA\r\n" + clean + ".\r\n",
		tx + "x\r\r\n.\r\n",
		"\x00\xff\r\n\n\r",
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		h.takeMessages()
		c, err := net.DialTimeout("tcp", ts.addr, fuzzTimeout)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(fuzzTimeout))
		r := bufio.NewReader(c)
		readReply := func() string {
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("read reply: %v", err)
				}
				if len(line) < 4 || line[3] != '-' {
					return line
				}
			}
		}
		if l := readReply(); !strings.HasPrefix(l, "220 ") {
			t.Fatalf("greeting %q", l)
		}
		if _, err := io.WriteString(c, "EHLO fuzz.example\r\n"); err != nil {
			t.Fatal(err)
		}
		if l := readReply(); !strings.HasPrefix(l, "250 ") {
			t.Fatalf("EHLO reply %q", l)
		}
		_, _ = c.Write(data) // the server may close early (QUIT, errors)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		// Once the client has stopped, the server answers and closes.
		_, err = io.Copy(io.Discard, r)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("server still holds the connection %v after the client finished", fuzzTimeout)
		}

		for _, m := range h.takeMessages() {
			_, body, ok := strings.Cut(string(m.raw), "\r\n\t")
			if !ok {
				t.Fatalf("message without trace: %q", m.raw)
			}
			// Skip the rest of the trace: its second and third lines.
			for range 2 {
				_, body, _ = strings.Cut(body, "\r\n")
			}
			if i := bareNewline([]byte(body)); i >= 0 {
				t.Fatalf("handler got a message with a bare CR or LF at %d: %q", i, body)
			}
			if len(body) > maxBytes {
				t.Fatalf("handler got %d bytes, over the %d limit", len(body), maxBytes)
			}
			if len(m.env.Recipients) == 0 {
				t.Fatal("handler got a message without recipients")
			}
			for _, rcpt := range m.env.Recipients {
				if _, ok := h.Router().Route(rcpt); !ok {
					t.Fatalf("handler got a message for %q, which is no support address", rcpt)
				}
			}
		}
		if p := unknownPanics(ts.logs.String()); len(p) > 0 {
			t.Fatalf("server panicked:\n%s", strings.Join(p, "\n"))
		}

		// A fresh connection is still served.
		d, err := net.DialTimeout("tcp", ts.addr, fuzzTimeout)
		if err != nil {
			t.Fatalf("fresh dial: %v", err)
		}
		defer d.Close()
		_ = d.SetDeadline(time.Now().Add(fuzzTimeout))
		line, err := bufio.NewReader(d).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "220 ") {
			t.Fatalf("fresh connection greeting %q, %v", line, err)
		}
	})
}

// unknownPanics returns the log lines about panics, leaving out go-smtp's
// nil session in the BDAT goroutine when a client hangs up mid-chunk: that
// one is reproduced and reported by TestBDATClientGone, and would otherwise
// stop every fuzzing run within seconds. Log lines are matched per line
// because a panic of an earlier input may be logged during a later one.
func unknownPanics(logs string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "panic") {
			continue
		}
		if strings.Contains(line, "nil pointer dereference") && strings.Contains(line, "go-smtp.(*Conn).handleBdat.func1()") {
			continue
		}
		out = append(out, line)
	}
	return out
}
