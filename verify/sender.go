package verify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"mailgw/config"
)

// Sender delivers one message; a *SendError says whether to try again.
type Sender interface {
	Send(ctx context.Context, from, to string, msg []byte) error
}

// SendError is a failed delivery. Temporary errors (4xx replies, network
// failures) are retried with backoff; permanent ones (5xx) are given up.
type SendError struct {
	Temporary bool
	Err       error
}

func (e *SendError) Error() string { return "verify: send: " + e.Err.Error() }
func (e *SendError) Unwrap() error { return e.Err }

// Smarthost sends through the configured relay with go-smtp's client:
// STARTTLS (opportunistic or required, RFC 3207), AUTH PLAIN (RFC 4616)
// when a user is configured, one transaction per message.
type Smarthost struct {
	Addr     string
	Hostname string // our EHLO name
	TLS      string // config.TLSStartTLS, config.TLSRequired or config.TLSNone
	RootCAs  *x509.CertPool
	Username string
	Password string
	Timeout  time.Duration // the whole transaction
}

// NewSmarthost builds a sender from the outbound config; password is the
// value of outbound.password_env, resolved by the caller.
func NewSmarthost(o config.Outbound, hostname, password string) (*Smarthost, error) {
	s := &Smarthost{Addr: o.Smarthost, Hostname: hostname, TLS: o.TLS, Username: o.Username, Password: password, Timeout: time.Minute}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("verify: outbound.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("verify: outbound.ca_file: no certificates in %s", o.CAFile)
		}
		s.RootCAs = pool
	}
	return s, nil
}

// Send delivers msg to one recipient.
func (s *Smarthost) Send(ctx context.Context, from, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	c, err := s.connect(ctx)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	if err := s.transact(c, from, to, msg); err != nil {
		return classify(err)
	}
	return nil
}

func (s *Smarthost) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return nil, err
	}
	// go-smtp's client sets its own per-command deadlines; closing the
	// connection when ctx ends bounds the whole transaction.
	context.AfterFunc(ctx, func() { conn.Close() })
	return conn, nil
}

// connect opens a session, with STARTTLS unless outbound.tls is none. In
// opportunistic mode a relay that does not offer or fails STARTTLS is used
// in plain text, like Postfix's "may" level: it protects against passive
// reading only, so the certificate is not checked either.
func (s *Smarthost) connect(ctx context.Context) (*gosmtp.Client, error) {
	conn, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	if s.TLS == config.TLSNone {
		return gosmtp.NewClient(conn), nil
	}
	host, _, _ := net.SplitHostPort(s.Addr)
	tc := &tls.Config{ServerName: host, RootCAs: s.RootCAs, MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: s.TLS == config.TLSStartTLS}
	c, err := gosmtp.NewClientStartTLS(conn, tc)
	if err == nil {
		return c, nil
	}
	if s.TLS == config.TLSRequired {
		return nil, &SendError{Temporary: true, Err: fmt.Errorf("STARTTLS required by outbound.tls: %w", err)}
	}
	if conn, err = s.dial(ctx); err != nil {
		return nil, err
	}
	return gosmtp.NewClient(conn), nil
}

func (s *Smarthost) transact(c *gosmtp.Client, from, to string, msg []byte) error {
	if err := c.Hello(s.Hostname); err != nil {
		return err
	}
	if s.Username != "" {
		if _, tlsOn := c.TLSConnectionState(); !tlsOn && s.TLS != config.TLSNone {
			// A relay without STARTTLS (or an attacker who stripped it)
			// would read the password: only tls: none sends it in clear.
			return &SendError{Temporary: true, Err: errors.New("relay offers no TLS: not sending the password in clear")}
		}
		if err := c.Auth(sasl.NewPlainClient("", s.Username, s.Password)); err != nil {
			return err
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func classify(err error) error {
	var se *SendError
	if errors.As(err, &se) {
		return se
	}
	var smtpErr *gosmtp.SMTPError
	if errors.As(err, &smtpErr) {
		return &SendError{Temporary: smtpErr.Code/100 != 5, Err: err}
	}
	return &SendError{Temporary: true, Err: err}
}
