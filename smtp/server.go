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
	"strings"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"mailgw/config"
	"mailgw/ingest"
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

	// base is the context of all message handling; it is cancelled only
	// when a drain runs out of time.
	base   context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[*session]struct{}
	draining bool
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
		sessions: map[*session]struct{}{},
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
	srv.MaxMessageBytes = cfg.MaxMessageBytes
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
	err := s.smtp.Serve(newLimitListener(ln, s.cfg.MaxConnections, s.cfg.MaxConnectionsPerIP, s.log))
	if errors.Is(err, gosmtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown drains: it stops accepting, closes idle sessions (their clients
// retry later; nothing was accepted from them), lets transactions in flight
// finish until ctx ends, then closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for ss := range s.sessions {
		ss.closeIfIdle()
	}
	s.mu.Unlock()
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.cancel()
		s.smtp.Close()
		return fmt.Errorf("smtp: drain: %w", err)
	}
	s.cancel()
	return nil
}

// NewSession implements gosmtp.Backend.
func (s *Server) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	ss := &session{srv: s, conn: c, remote: c.Conn().RemoteAddr().String()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return nil, toSMTP(&replyShutdown)
	}
	s.sessions[ss] = struct{}{}
	return ss, nil
}

func (s *Server) forget(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}

// errorLog adapts zerolog to go-smtp's logger, at Error level: what
// go-smtp logs are failed connections and recovered panics.
type errorLog struct{ log zerolog.Logger }

func (l errorLog) Printf(format string, v ...any) {
	l.log.Error().Msg(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (l errorLog) Println(v ...any) {
	l.log.Error().Msg(strings.TrimSpace(fmt.Sprintln(v...)))
}

// limitListener refuses connections over the total or per-IP limit with
// a 421 before go-smtp sees them.
type limitListener struct {
	net.Listener
	max, perIP int
	log        zerolog.Logger

	mu    sync.Mutex
	total int
	byIP  map[string]int
}

func newLimitListener(ln net.Listener, max, perIP int, log zerolog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: max, perIP: perIP, log: log, byIP: map[string]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		l.mu.Lock()
		over := l.total >= l.max || ip != "" && l.byIP[ip] >= l.perIP
		if !over {
			l.total++
			if ip != "" {
				l.byIP[ip]++
			}
		}
		l.mu.Unlock()
		if over {
			l.log.Warn().Str("remote", c.RemoteAddr().String()).Msg("connection limit reached: refused")
			go refuse(c)
			continue
		}
		return &countedConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *limitListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
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

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
