package smtp

import (
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailgw/identify"
	"mailgw/identify/mailaddr"
	"mailgw/ingest"
)

// session is one SMTP connection. go-smtp calls Logout from Conn.Close,
// which can run on another goroutine while Data is still working (server
// shutdown), so the transaction state is guarded by mu.
type session struct {
	srv     *Server
	conn    *gosmtp.Conn
	counted *countedConn // nil when not served by Serve (tests)
	remote  string

	mu         sync.Mutex
	inMail     bool // MAIL accepted, transaction not yet ended
	from       string
	nullSender bool
	size       int64 // SIZE declared at MAIL, 0 if none
	rcpts      []string
	closed     bool
}

var (
	_ gosmtp.Session     = (*session)(nil)
	_ gosmtp.LMTPSession = (*session)(nil)
)

func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inMail, s.from, s.nullSender, s.rcpts, s.size = false, "", false, nil, 0
}

func (s *session) Logout() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// closeAfterReply makes the reply being sent the connection's last.
func (s *session) closeAfterReply() {
	if s.counted != nil {
		s.counted.closing.Store(true)
	}
}

func (s *session) setBusy(busy bool) {
	if s.counted != nil {
		s.counted.busy.Store(busy)
	}
}

func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if s.srv.isDraining() {
		s.closeAfterReply()
		return s.reply(&replyShutdown)
	}
	if n, ok := s.srv.msgRate.allow(remoteIP(s.conn.Conn().RemoteAddr())); !ok {
		s.srv.log.Warn().Str("remote", s.remote).Int("count", n).Int("limit", s.srv.msgRate.limit.Count).Msg("message rate limit reached")
		return s.reply(&replyIPRate)
	}
	if opts != nil && opts.Size > s.srv.cfg.MaxMessageBytes {
		// go-smtp's own check allows one byte more (see New).
		return s.reply(&replyTooLarge)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// go-smtp takes a second MAIL in a transaction and keeps the first
	// one's recipients, while a new sender here would start with none:
	// the message would reach DATA with recipients the session does not
	// know. RFC 5321 §4.1.4 refuses a nested MAIL; so does mailgw.
	if s.inMail {
		return s.reply(&replyNestedMail)
	}
	if from != "" {
		if _, err := mailaddr.Normalize(from); err != nil {
			return s.reply(replyBadSender.withCause(err))
		}
	}
	s.inMail, s.from, s.nullSender, s.rcpts, s.size = true, from, from == "", nil, 0
	if opts != nil {
		s.size = opts.Size
	}
	return nil
}

// Rcpt refuses relaying and unknown recipients before any data is sent.
// go-smtp has already removed a source route and unquoted the local part,
// so "x@y"@us arrives as x@y@us.
func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if err := s.checkRecipient(to); err != nil {
		s.srv.record(s.envelope(), ingest.SpaceDecision{Recipient: to, Decision: identify.Decision{
			Outcome: identify.Rejected, Reason: identify.ReasonNoRoute, Detail: err.Error()}})
		return s.reply(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) checkRecipient(to string) error {
	at := strings.LastIndexByte(to, '@')
	if at <= 0 || strings.Count(to, "@") != 1 || strings.ContainsAny(to[:at], "%!") {
		return replyRelayDenied.withCause(fmt.Errorf("relay form %q", to))
	}
	addr, err := mailaddr.Normalize(to)
	if err != nil {
		return replyBadAddress.withCause(err)
	}
	if !s.srv.domains[mailaddr.Domain(addr)] {
		return replyRelayDenied.withCause(fmt.Errorf("%s is not a support domain", mailaddr.Domain(addr)))
	}
	if _, ok := s.srv.handler.Router().Route(addr); !ok {
		return replyNoMailbox.withCause(fmt.Errorf("%s is no space's address", addr))
	}
	return nil
}

// reply is what the session answers for err: toSMTP's reply, counted.
func (s *session) reply(err error) error {
	e := toSMTP(err)
	s.srv.metrics.replied(e)
	return e
}

func (s *session) envelope() ingest.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ingest.Envelope{
		Channel:    ingest.ChannelSMTP,
		MailFrom:   s.from,
		NullSender: s.nullSender,
		Recipients: append([]string(nil), s.rcpts...),
		RemoteAddr: s.remote,
	}
}

func (s *session) Data(r io.Reader) error {
	res, err := s.receive(r)
	if err != nil {
		return s.reply(err)
	}
	return s.reply(summarize(res))
}

// LMTPData answers once per recipient (RFC 2033 §4.2): each gets the
// decision of its space.
func (s *session) LMTPData(r io.Reader, status gosmtp.StatusCollector) error {
	env := s.envelope()
	res, err := s.receive(r)
	if err != nil {
		return s.reply(err)
	}
	for _, rcpt := range env.Recipients {
		status.SetStatus(rcpt, s.reply(s.rcptReply(rcpt, res)))
	}
	return nil
}

func (s *session) rcptReply(rcpt string, res ingest.Result) error {
	sp, _ := s.srv.handler.Router().Route(rcpt)
	for _, d := range res.Decisions {
		if d.Space == sp.Key {
			return summarize(ingest.Result{Decisions: []ingest.SpaceDecision{d}})
		}
	}
	return replyNoMailbox.withCause(fmt.Errorf("no decision for %s", rcpt))
}

// receive reads the message and runs it through ingest. A panic while
// handling one message is logged and answered 451; the server goes on.
func (s *session) receive(r io.Reader) (res ingest.Result, err error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return res, &replyShutdown
	}
	s.setBusy(true)
	defer func() {
		s.setBusy(false)
		if s.srv.isDraining() {
			// The drain waited for this message; its reply is the last.
			s.closeAfterReply()
		}
		if p := recover(); p != nil {
			s.srv.log.Error().Str("remote", s.remote).Str("panic", fmt.Sprint(p)).Str("stack", string(debug.Stack())).Msg("panic while handling a message")
			s.srv.metrics.panics.Inc()
			err = replyReadFailed.withCause(fmt.Errorf("panic: %v", p))
		}
	}()
	env := s.envelope()
	env.ReceivedAt = time.Now()
	s.mu.Lock()
	size := s.size
	s.mu.Unlock()
	raw, release, err := s.srv.readMessage(r, s.conn.Conn(), s.trace(env), size)
	defer release()
	if err != nil {
		s.logRefusal(env, err)
		return res, err
	}
	return s.srv.handler.Handle(s.srv.base, env, raw), nil
}

// trace is the Received header mailgw prepends (RFC 5321 §4.4).
func (s *session) trace(env ingest.Envelope) string {
	proto := "ESMTP"
	if s.srv.cfg.LMTP {
		proto = "LMTP"
	} else if _, ok := s.conn.TLSConnectionState(); ok {
		proto = "ESMTPS"
	}
	peer := s.remote
	if tcp, ok := s.conn.Conn().RemoteAddr().(*net.TCPAddr); ok {
		peer = "[" + tcp.IP.String() + "]"
	}
	helo := strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' {
			return -1
		}
		return r
	}, s.conn.Hostname())
	return fmt.Sprintf("Received: from %s (%s)\r\n\tby %s (mailgw) with %s;\r\n\t%s\r\n",
		helo, peer, s.srv.hostname, proto, env.ReceivedAt.Format(time.RFC1123Z))
}

// logRefusal records a message refused before ingest saw it.
func (s *session) logRefusal(env ingest.Envelope, err error) {
	r, ok := err.(*Reply)
	if !ok || r.Reason == "" {
		s.srv.log.Warn().Err(err).Str("remote", s.remote).Str("mail_from", env.MailFrom).Msg("message not received")
		return
	}
	outcome := identify.Rejected
	if r.Code/100 == 4 {
		outcome = identify.Deferred
	}
	for _, rcpt := range env.Recipients {
		sp, _ := s.srv.handler.Router().Route(rcpt)
		s.srv.record(env, ingest.SpaceDecision{Space: sp.Key, Recipient: rcpt, Decision: identify.Decision{
			Outcome: outcome, Reason: r.Reason, Detail: err.Error()}})
	}
}

func (s *Server) record(env ingest.Envelope, sd ingest.SpaceDecision) {
	s.handler.Record(s.base, env, sd)
}

// summarize turns a message's decisions into the one SMTP reply: 451 if
// any space deferred it (the retry completes that space and is a duplicate
// for the others, so nothing is lost or doubled), else 250 if any space
// took it, else the first refusal.
func summarize(res ingest.Result) error {
	var refused, deferred *Reply
	var taken []string
	for _, d := range res.Decisions {
		switch d.Outcome {
		case identify.Deferred:
			if deferred == nil {
				deferred = decisionReply(d.Decision)
			}
		case identify.Rejected:
			if refused == nil {
				refused = decisionReply(d.Decision)
			}
		case identify.Queued:
			taken = append(taken, "queued as "+d.Request)
		case identify.Held:
			taken = append(taken, "held ("+string(d.Reason)+")")
		case identify.Ignored:
			taken = append(taken, "accepted ("+string(d.Reason)+")")
		}
	}
	switch {
	case deferred != nil:
		return deferred
	case len(taken) > 0:
		return &Reply{Code: 250, Enhanced: gosmtp.EnhancedCode{2, 0, 0}, Text: "OK: " + strings.Join(taken, ", ")}
	case refused != nil:
		return refused
	}
	return replyNoMailbox.withCause(fmt.Errorf("message %s had no decision", res.MessageID))
}
