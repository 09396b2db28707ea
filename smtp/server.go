// Package smtp is mailgw's SMTP and LMTP listener (RFC 5321, RFC 2033),
// built on go-smtp: ESMTP with PIPELINING, 8BITMIME, SMTPUTF8 (RFC 6531),
// SIZE (RFC 1870), CHUNKING (RFC 3030) and STARTTLS (RFC 3207). It refuses
// relaying and unknown recipients at RCPT, rejects bare LF and CR in
// message data (SMTP smuggling), bounds connections, line length, message
// size, data rate and the bytes held in memory, and maps ingest decisions
// to replies. It never sends a bounce: refusals happen in the dialogue.
package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"mailgw/config"
	"mailgw/ingest"
	"mailgw/metrics"
	"mailgw/route"
)

// Handler is the part of ingest.Handler the listener needs.
type Handler interface {
	Handle(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result
	Record(ctx context.Context, env ingest.Envelope, sd ingest.SpaceDecision)
	Router() *route.Router
}

// Server is the SMTP listener.
type Server struct {
	cfg      config.SMTP
	hostname string
	handler  Handler
	log      zerolog.Logger
	smtp     *gosmtp.Server
	budget   *semaphore.Weighted
	domains  map[string]bool // domains of the support addresses
	connRate *ipRate
	msgRate  *ipRate

	// base is the context of all message handling; it is cancelled only
	// when a drain runs out of time.
	base   context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners []*limitListener
	draining  bool

	metrics serverMetrics
}

// serverMetrics are the listener's counters; nil families count nothing.
type serverMetrics struct {
	connections  *metrics.CounterVec // by result
	errorReplies *metrics.CounterVec // by code and enhanced code
	panics       *metrics.CounterVec
}

// Instrument registers the listener's metrics on reg; call it before Serve.
func (s *Server) Instrument(reg *metrics.Registry) {
	s.metrics = serverMetrics{
		connections: reg.CounterVec("mailgw_smtp_connections_total",
			"SMTP connections by result: accepted, or refused with 421 by the per-IP connection rate or the connection limits.",
			"result"),
		errorReplies: reg.CounterVec("mailgw_smtp_error_replies_total",
			"SMTP replies other than success, by reply code and enhanced status code.",
			"code", "enhanced"),
		panics: reg.CounterVec("mailgw_smtp_panics_total",
			"Panics recovered while handling a message (answered 451, logged with the stack)."),
	}
	reg.GaugeFunc("mailgw_smtp_connections_open", "SMTP connections open now.", s.openConnections)
}

func (m *serverMetrics) replied(err error) {
	// Accepted mail is answered through the same error type (go-smtp
	// sends a Reply's code as it is), so the code tells success apart.
	var se *gosmtp.SMTPError
	if errors.As(err, &se) && se.Code >= 400 {
		e := se.EnhancedCode
		m.errorReplies.Inc(strconv.Itoa(se.Code), strconv.Itoa(e[0])+"."+strconv.Itoa(e[1])+"."+strconv.Itoa(e[2]))
	}
}

func (s *Server) openConnections() float64 {
	s.mu.Lock()
	listeners := s.listeners
	s.mu.Unlock()
	n := 0
	for _, ll := range listeners {
		ll.mu.Lock()
		n += ll.total
		ll.mu.Unlock()
	}
	return float64(n)
}

// New builds a listener from its config section.
func New(cfg config.SMTP, hostname string, spaces []config.Space, h Handler, log zerolog.Logger) (*Server, error) {
	s := &Server{
		cfg:      cfg,
		hostname: hostname,
		handler:  h,
		log:      log.With().Str("component", "smtp").Logger(),
		budget:   semaphore.NewWeighted(cfg.MaxInflightBytes),
		domains:  map[string]bool{},
		connRate: newIPRate(cfg.ConnectionRatePerIP),
		msgRate:  newIPRate(cfg.MessageRatePerIP),
	}
	s.base, s.cancel = context.WithCancel(context.Background())
	for _, sp := range spaces {
		for _, a := range sp.Addresses {
			s.domains[strings.ToLower(a[strings.LastIndexByte(a, '@')+1:])] = true
		}
	}
	srv := gosmtp.NewServer(s)
	srv.Domain = hostname
	srv.LMTP = cfg.LMTP
	// go-smtp refuses a message of exactly MaxMessageBytes (its reader
	// reports the limit before it sees the end of data), so it gets one
	// byte more and readMessage enforces the exact limit.
	srv.MaxMessageBytes = cfg.MaxMessageBytes + 1
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.CommandTimeout.D()
	srv.WriteTimeout = cfg.CommandTimeout.D()
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = errorLog{s.log}
	if cfg.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("smtp: load certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.smtp = srv
	return s, nil
}

// Listen opens the configured address: host:port, or unix:/path.
func Listen(cfg config.SMTP) (net.Listener, error) {
	if path, ok := strings.CutPrefix(cfg.Listen, "unix:"); ok {
		_ = os.Remove(path) // a stale socket from an earlier run
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("smtp: %w", err)
		}
		return ln, nil
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	return ln, nil
}

// Serve accepts connections on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	ll := newLimitListener(ln, s.cfg.MaxConnections, s.cfg.MaxConnectionsPerIP, s.connRate, s.log, s.metrics.connections)
	s.mu.Lock()
	s.listeners = append(s.listeners, ll)
	s.mu.Unlock()
	err := s.smtp.Serve(ll)
	if errors.Is(err, gosmtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown drains: it stops accepting, closes every connection that is not
// receiving a message (their clients retry later; nothing was accepted
// from them), lets messages in flight finish until ctx ends, then closes
// whatever is left. A session that finishes its message gets 421 for the
// next one.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	listeners := s.listeners
	s.mu.Unlock()
	for _, ll := range listeners {
		ll.closeIdle()
	}
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.cancel()
		// go-smtp's Close does nothing once Shutdown has begun, so the
		// connections still open are closed here.
		for _, ll := range listeners {
			ll.closeAll()
		}
		return fmt.Errorf("smtp: drain: %w", err)
	}
	s.cancel()
	return nil
}

// NewSession implements gosmtp.Backend.
func (s *Server) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	ss := &session{srv: s, conn: c, counted: counted(c.Conn()), remote: c.Conn().RemoteAddr().String()}
	if s.isDraining() {
		ss.closeAfterReply()
		err := toSMTP(&replyShutdown)
		s.metrics.replied(err)
		return nil, err
	}
	return ss, nil
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// errorLog adapts zerolog to go-smtp's logger, at Error level: what
// go-smtp logs are failed connections and recovered panics.
type errorLog struct{ log zerolog.Logger }

func (l errorLog) Printf(format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	// go-smtp v0.25.1 runs BDAT's Data on a goroutine that reads the
	// session after a hang-up has cleared it, and recovers the resulting
	// nil dereference. Any client can cause it, so it is not an error
	// of ours and its stack trace is not worth a log line each time.
	if strings.HasPrefix(msg, "panic serving") && strings.Contains(msg, "handleBdat") {
		l.log.Warn().Msg("client hung up during BDAT")
		return
	}
	l.log.Error().Msg(msg)
}

func (l errorLog) Println(v ...any) {
	l.log.Error().Msg(strings.TrimSpace(fmt.Sprintln(v...)))
}

// limitListener refuses connections over the total or per-IP limit with
// a 421 before go-smtp sees them.
type limitListener struct {
	net.Listener
	max, perIP int
	rate       *ipRate
	log        zerolog.Logger
	count      *metrics.CounterVec // connections by result

	mu    sync.Mutex
	total int
	byIP  map[string]int
	conns map[*countedConn]struct{}
}

func newLimitListener(ln net.Listener, max, perIP int, rate *ipRate, log zerolog.Logger, count *metrics.CounterVec) *limitListener {
	return &limitListener{Listener: ln, max: max, perIP: perIP, rate: rate, log: log, count: count, byIP: map[string]int{}, conns: map[*countedConn]struct{}{}}
}

// closeIdle closes every connection that is not receiving a message,
// including those that have not even said EHLO yet.
func (l *limitListener) closeIdle() {
	l.closeWhere(func(c *countedConn) bool { return !c.busy.Load() })
}

func (l *limitListener) closeAll() { l.closeWhere(func(*countedConn) bool { return true }) }

func (l *limitListener) closeWhere(pick func(*countedConn) bool) {
	l.mu.Lock()
	var picked []*countedConn
	for c := range l.conns {
		if pick(c) {
			picked = append(picked, c)
		}
	}
	l.mu.Unlock()
	for _, c := range picked {
		c.Close()
	}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		if n, ok := l.rate.allow(ip); !ok {
			l.log.Warn().Str("remote", c.RemoteAddr().String()).Int("count", n).Int("limit", l.rate.limit.Count).Msg("connection rate limit reached: refused")
			l.count.Inc("refused_rate")
			go refuse(c)
			continue
		}
		l.mu.Lock()
		over := l.total >= l.max || ip != "" && l.byIP[ip] >= l.perIP
		var cc *countedConn
		if !over {
			l.total++
			if ip != "" {
				l.byIP[ip]++
			}
			cc = &countedConn{Conn: c}
			cc.release = func() { l.release(cc, ip) }
			l.conns[cc] = struct{}{}
		}
		l.mu.Unlock()
		if over {
			l.log.Warn().Str("remote", c.RemoteAddr().String()).Msg("connection limit reached: refused")
			l.count.Inc("refused_limit")
			go refuse(c)
			continue
		}
		l.count.Inc("accepted")
		return cc, nil
	}
}

func (l *limitListener) release(c *countedConn, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
	l.total--
	if ip != "" {
		if l.byIP[ip]--; l.byIP[ip] <= 0 {
			delete(l.byIP, ip)
		}
	}
}

func refuse(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
	_ = c.Close()
}

// remoteIP returns the IP of a TCP peer, "" for other transports (unix
// sockets have one trusted local peer).
func remoteIP(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	return ""
}

// countedConn is an accepted connection as the limits and the drain see it.
// It also holds back replies until the server next reads: go-smtp flushes
// every line, so a multi-line EHLO reply, or the replies to a pipelined
// group of commands, would each cost a write and a packet. A server that
// reads is waiting for the client, which by then must have every reply.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
	// busy is set while a message is being received: the drain waits for it.
	busy atomic.Bool
	// closing makes the next write (a 421 reply) the last one.
	closing atomic.Bool

	mu   sync.Mutex
	out  []byte // replies not yet sent
	werr error  // the write that failed; every later read and write fails too
}

// maxHeldReplies bounds the replies held back, against a client that
// pipelines without end.
const maxHeldReplies = 4096

func (c *countedConn) Write(b []byte) (int, error) {
	closing := c.closing.Load()
	c.mu.Lock()
	c.out = append(c.out, b...)
	var err error
	if closing || len(c.out) >= maxHeldReplies {
		err = c.flushLocked()
	} else {
		err = c.werr
	}
	c.mu.Unlock()
	if closing {
		c.Close()
	}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *countedConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// flushLocked sends the held replies; c.mu is held.
func (c *countedConn) flushLocked() error {
	if c.werr != nil || len(c.out) == 0 {
		return c.werr
	}
	_, c.werr = c.Conn.Write(c.out)
	c.out = c.out[:0]
	return c.werr
}

func (c *countedConn) Close() error {
	// The session's own close (after 221, or a 421) sends what is held.
	// The drain closes from another goroutine; should the session be in
	// the middle of a write to a peer that does not read, closing must
	// not wait for it: closing the socket is what ends that write.
	if c.mu.TryLock() {
		if len(c.out) > 0 {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_ = c.flushLocked()
		}
		c.mu.Unlock()
	}
	c.once.Do(c.release)
	return c.Conn.Close()
}

// counted finds the countedConn under a session's connection, which
// STARTTLS wraps in a *tls.Conn; nil for connections not from Serve.
func counted(c net.Conn) *countedConn {
	for {
		switch v := c.(type) {
		case *countedConn:
			return v
		case *tls.Conn:
			c = v.NetConn()
		default:
			return nil
		}
	}
}
