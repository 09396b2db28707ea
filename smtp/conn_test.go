package smtp

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingConn is the socket under a countedConn: it records each write
// as the peer would see it, one segment per call.
type recordingConn struct {
	net.Conn // nil: only the methods below are used
	mu       sync.Mutex
	writes   []string
	writeErr error
	closed   bool
	toRead   string
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	c.writes = append(c.writes, string(b))
	return len(b), nil
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n := copy(b, c.toRead)
	c.toRead = c.toRead[n:]
	return n, nil
}

func (c *recordingConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *recordingConn) SetWriteDeadline(time.Time) error { return nil }

func (c *recordingConn) segments() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.writes...)
}

func TestRepliesHeldUntilRead(t *testing.T) {
	type step struct {
		op   string // write, read, close, closing
		data string
	}
	tests := []struct {
		name  string
		steps []step
		want  []string // segments on the socket
	}{
		{"multi-line EHLO reply goes out as one segment",
			[]step{{"write", "250-mx\r\n"}, {"write", "250-PIPELINING\r\n"}, {"write", "250 SMTPUTF8\r\n"}, {"read", ""}},
			[]string{"250-mx\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n"}},
		{"replies to a pipelined group together, then the next",
			[]step{{"write", "250 a\r\n"}, {"write", "250 b\r\n"}, {"write", "354 c\r\n"}, {"read", ""}, {"write", "250 d\r\n"}, {"read", ""}},
			[]string{"250 a\r\n250 b\r\n354 c\r\n", "250 d\r\n"}},
		{"nothing held: a read writes nothing",
			[]step{{"read", ""}, {"read", ""}},
			nil},
		{"close sends what is held",
			[]step{{"write", "221 bye\r\n"}, {"close", ""}},
			[]string{"221 bye\r\n"}},
		{"while closing, a write goes out at once and closes",
			[]step{{"write", "250 ok\r\n"}, {"closing", ""}, {"write", "421 shutting down\r\n"}},
			[]string{"250 ok\r\n421 shutting down\r\n"}},
		{"a flood of replies is sent once over the bound",
			[]step{{"write", strings.Repeat("x", maxHeldReplies-1)}, {"write", "yy"}, {"write", "z"}},
			[]string{strings.Repeat("x", maxHeldReplies-1) + "yy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := &recordingConn{toRead: "x"}
			released := 0
			c := &countedConn{Conn: raw, release: func() { released++ }}
			for _, s := range tt.steps {
				switch s.op {
				case "write":
					if n, err := c.Write([]byte(s.data)); err != nil || n != len(s.data) {
						t.Fatalf("Write(%q) = %d, %v", s.data, n, err)
					}
				case "read":
					raw.toRead = "x"
					if _, err := c.Read(make([]byte, 1)); err != nil {
						t.Fatalf("Read: %v", err)
					}
				case "close":
					c.Close()
				case "closing":
					c.closing.Store(true)
				}
			}
			if got := raw.segments(); !slices.Equal(got, tt.want) {
				t.Errorf("segments %q, want %q", got, tt.want)
			}
			wantClosed := tt.steps[len(tt.steps)-1].op == "close" || tt.steps[len(tt.steps)-2].op == "closing"
			if raw.closed != wantClosed || (released == 1) != wantClosed {
				t.Errorf("closed %v, released %d times; want closed %v", raw.closed, released, wantClosed)
			}
		})
	}
}

// A write that failed fails every later read and write: go-smtp then ends
// the session instead of talking to a peer that gets nothing.
func TestHeldReplyWriteErrorSticks(t *testing.T) {
	boom := errors.New("connection reset")
	raw := &recordingConn{writeErr: boom, toRead: "x"}
	c := &countedConn{Conn: raw, release: func() {}}
	if _, err := c.Write([]byte("250 ok\r\n")); err != nil {
		t.Fatalf("held write: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, boom) {
		t.Fatalf("read after a failed flush: %v, want %v", err, boom)
	}
	if _, err := c.Write([]byte("250 again\r\n")); !errors.Is(err, boom) {
		t.Fatalf("write after a failed flush: %v, want %v", err, boom)
	}
}

// A client that pipelines a whole transaction (RFC 2920) gets every reply,
// grouped, and the message is taken.
func TestPipelinedTransaction(t *testing.T) {
	ts, h := fakeServer(t, nil)
	c := dialRaw(t, ts.addr)
	c.greet()
	c.cmd("EHLO client.example")
	c.send("MAIL FROM:<carol@example.com>\r\nRCPT TO:<it@example.com>\r\nDATA\r\n")
	c.expect(250, "2.0.0")
	c.expect(250, "2.0.0")
	c.expect(354, "")
	c.send("From: carol@example.com\r\nSubject: pipelined\r\n\r\nhello\r\n.\r\nQUIT\r\n")
	c.expect(250, "2.0.0")
	c.expect(221, "2.0.0")
	if got := len(h.messages()); got != 1 {
		t.Fatalf("%d messages taken, want 1", got)
	}
	if !bytes.Contains(h.messages()[0].raw, []byte("Subject: pipelined")) {
		t.Errorf("message taken: %q", h.messages()[0].raw)
	}
}
