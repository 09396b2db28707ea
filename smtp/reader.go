package smtp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

const (
	firstChunk = 16 << 10
	// readStep bounds one read: go-smtp's data reader returns only when
	// the buffer is full, and the rate check runs between reads.
	readStep = 4 << 10
)

// readMessage reads the message data after trace into memory counted
// against the in-flight budget. Each read must arrive before the earlier of
// the command timeout and the moment the sender would fall under the
// minimum data rate, so a slow sender is cut off. The returned release gives the memory back to
// the budget; call it when the message has been handled.
func (s *Server) readMessage(r io.Reader, nc net.Conn, trace string, sizeHint int64) ([]byte, func(), error) {
	maxData := s.cfg.MaxMessageBytes
	var held int64
	release := func() { s.budget.Release(held) }
	// charge makes the budget cover a buffer of n bytes of message data,
	// counted twice: parsing keeps about as much again (the decoded text
	// and HTML) while the message is handled. A message bigger than the
	// whole budget may still come in alone. The one byte read past the
	// limit to notice it is not charged.
	charge := func(n int64) error {
		n = min(2*min(n, maxData), s.cfg.MaxInflightBytes)
		if n <= held {
			return nil
		}
		if !s.budget.TryAcquire(n - held) {
			return &replyNoMemory
		}
		held = n
		return nil
	}
	// A SIZE declared at MAIL sizes the buffer at once: no copies while it
	// grows, no garbage left behind.
	first := int64(firstChunk)
	if sizeHint > 0 {
		first = min(sizeHint, maxData) + 1
	}
	if err := charge(first); err != nil {
		return nil, release, err
	}
	buf := make([]byte, 0, int64(len(trace))+first)
	buf = append(buf, trace...)
	limit := len(trace) + int(maxData) + 1
	start := time.Now()
	rate := float64(s.cfg.MinDataRate)
	for {
		if len(buf) == cap(buf) {
			want := min(2*cap(buf), limit)
			if want <= cap(buf) {
				return nil, release, &replyTooLarge
			}
			if err := charge(int64(want - len(trace))); err != nil {
				return nil, release, err
			}
			nb := make([]byte, len(buf), want)
			copy(nb, buf)
			buf = nb
		}
		received := len(buf) - len(trace)
		deadline := time.Now().Add(s.cfg.CommandTimeout.D())
		if rate > 0 {
			due := start.Add(s.cfg.DataGrace.D() + time.Duration(float64(received+readStep)/rate*float64(time.Second)))
			deadline = minTime(deadline, due)
		}
		_ = nc.SetReadDeadline(deadline)
		n, err := r.Read(buf[len(buf):min(cap(buf), len(buf)+readStep)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		var ne net.Error
		switch {
		case err == nil:
		case errors.Is(err, gosmtp.ErrDataTooLarge):
			return nil, release, &replyTooLarge
		case errors.Is(err, gosmtp.ErrTooLongLine):
			return nil, release, &replyLineTooLong
		case errors.As(err, &ne) && ne.Timeout():
			// Closing is the only way to stop a slow sender: go-smtp
			// would otherwise keep reading the rest of its data.
			_ = nc.Close()
			return nil, release, replyTooSlow.withCause(fmt.Errorf("%d bytes in %s", received+n, time.Since(start).Round(time.Second)))
		default:
			return nil, release, replyReadFailed.withCause(err)
		}
	}
	if i := bareNewline(buf[len(trace):]); i >= 0 {
		return nil, release, replyBareNewline.withCause(fmt.Errorf("bare CR or LF at byte %d", i))
	}
	return buf, release, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// bareNewline returns the offset of the first CR not followed by LF or LF
// not preceded by CR, or -1. Accepting them is what makes SMTP smuggling
// possible: another server may see "\n.\n" as the end of the data where
// this one did not (CERT VU#302671), so a message holding one is refused.
func bareNewline(b []byte) int {
	for i := 0; i < len(b); {
		j := bytes.IndexAny(b[i:], "\r\n")
		if j < 0 {
			return -1
		}
		i += j
		if b[i] == '\n' || i+1 >= len(b) || b[i+1] != '\n' {
			return i
		}
		i += 2
	}
	return -1
}
