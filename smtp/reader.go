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

const firstChunk = 64 << 10

// readMessage reads the message data after trace into memory that is
// counted against the in-flight budget, enforcing the minimum data rate.
// The returned release gives the memory back to the budget; call it when
// the message has been handled.
func (s *Server) readMessage(r io.Reader, nc net.Conn, trace string) ([]byte, func(), error) {
	var held int64
	release := func() { s.budget.Release(held) }
	grow := func(buf []byte, want int) ([]byte, error) {
		delta := int64(want - cap(buf))
		if !s.budget.TryAcquire(delta) {
			return buf, &replyNoMemory
		}
		held += delta
		nb := make([]byte, len(buf), want)
		copy(nb, buf)
		return nb, nil
	}
	buf, err := grow(nil, len(trace)+firstChunk)
	if err != nil {
		return nil, release, err
	}
	buf = append(buf, trace...)
	limit := len(trace) + int(s.cfg.MaxMessageBytes) + 1
	start := time.Now()
	for {
		if len(buf) == cap(buf) {
			want := min(2*cap(buf), limit)
			if want <= cap(buf) {
				return nil, release, &replyTooLarge
			}
			if buf, err = grow(buf, want); err != nil {
				return nil, release, err
			}
		}
		_ = nc.SetReadDeadline(time.Now().Add(s.cfg.CommandTimeout.D()))
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, gosmtp.ErrDataTooLarge) {
				return nil, release, &replyTooLarge
			}
			return nil, release, replyReadFailed.withCause(err)
		}
		if elapsed := time.Since(start); elapsed > s.cfg.DataGrace.D() &&
			float64(len(buf)-len(trace)) < float64(s.cfg.MinDataRate)*elapsed.Seconds() {
			// Closing is the only way to stop a slow sender: go-smtp would
			// otherwise keep reading the rest of its data.
			_ = nc.Close()
			return nil, release, replyTooSlow.withCause(fmt.Errorf("%d bytes in %s", len(buf)-len(trace), elapsed.Round(time.Second)))
		}
	}
	if i := bareNewline(buf[len(trace):]); i >= 0 {
		return nil, release, replyBareNewline.withCause(fmt.Errorf("bare CR or LF at byte %d", i))
	}
	return buf, release, nil
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
