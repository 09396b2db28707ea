package verify_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"mailgw/config"
	"mailgw/verify"
)

// relayMsg is one message the test relay accepted.
type relayMsg struct {
	From, To string
	Data     []byte
	TLS      bool   // the transaction ran over STARTTLS
	User     string // the authenticated user, "" without AUTH
	Helo     string // the client's EHLO name
}

type relayOptions struct {
	tls        *tls.Config       // offers STARTTLS when set
	user, pass string            // requires AUTH PLAIN with these when set
	rcptErr    *gosmtp.SMTPError // returned at RCPT when set
}

// relay is an in-process SMTP server standing in for the smarthost.
type relay struct {
	addr string
	opt  relayOptions
	mu   sync.Mutex
	msgs []relayMsg
	auth []string // user names of every AUTH attempt, "tls" or "plain" appended
}

func startRelay(t *testing.T, opt relayOptions) *relay {
	t.Helper()
	r := &relay{opt: opt}
	s := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		return &relaySession{r: r, c: c}, nil
	}))
	s.Domain = "relay.test"
	s.TLSConfig = opt.tls
	s.AllowInsecureAuth = true
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return r
}

func (r *relay) received() []relayMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relayMsg(nil), r.msgs...)
}

type relaySession struct {
	r        *relay
	c        *gosmtp.Conn
	user     string
	from, to string
}

func (s *relaySession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *relaySession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		_, isTLS := s.c.TLSConnectionState()
		s.r.mu.Lock()
		s.r.auth = append(s.r.auth, fmt.Sprintf("%s over TLS %v", username, isTLS))
		s.r.mu.Unlock()
		if s.r.opt.user == "" || username != s.r.opt.user || password != s.r.opt.pass {
			return gosmtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

func (s *relaySession) Mail(from string, _ *gosmtp.MailOptions) error {
	if s.r.opt.user != "" && s.user == "" {
		return gosmtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *relaySession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if s.r.opt.rcptErr != nil {
		return s.r.opt.rcptErr
	}
	s.to = to
	return nil
}

func (s *relaySession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.c.TLSConnectionState()
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.msgs = append(s.r.msgs, relayMsg{From: s.from, To: s.to, Data: b, TLS: isTLS, User: s.user, Helo: s.c.Hostname()})
	return nil
}

func (s *relaySession) Reset()        { s.from, s.to = "", "" }
func (s *relaySession) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1 that is its own CA and
// writes it as PEM to a file, for outbound.ca_file.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "relay.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, path
}

var testMsg = []byte("From: support@example.com\r\nTo: dave@other.example\r\nSubject: Please confirm\r\n\r\nHello.\r\n.leading dot\r\n")

func smarthost(t *testing.T, o config.Outbound, password string) *verify.Smarthost {
	t.Helper()
	s, err := verify.NewSmarthost(o, "mx.example.com", password)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func send(t *testing.T, s *verify.Smarthost) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Send(ctx, "support@example.com", "dave@other.example", testMsg)
}

// checkOne checks the relay got testMsg once, over TLS or not.
func checkOne(t *testing.T, r *relay, wantTLS bool, wantUser string) {
	t.Helper()
	got := r.received()
	if len(got) != 1 {
		t.Fatalf("relay got %d messages, want 1", len(got))
	}
	m := got[0]
	if m.From != "support@example.com" || m.To != "dave@other.example" || !bytes.Equal(m.Data, testMsg) {
		t.Errorf("relay got %s -> %s:\n%q", m.From, m.To, m.Data)
	}
	if m.TLS != wantTLS {
		t.Errorf("over TLS: %v, want %v", m.TLS, wantTLS)
	}
	if m.User != wantUser {
		t.Errorf("authenticated as %q, want %q", m.User, wantUser)
	}
	if m.Helo != "mx.example.com" {
		t.Errorf("EHLO %q, want the hostname", m.Helo)
	}
}

// sendError checks err is a *SendError of the given kind.
func sendError(t *testing.T, err error, temporary bool) {
	t.Helper()
	var se *verify.SendError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want a *verify.SendError", err, err)
	}
	if se.Temporary != temporary {
		t.Fatalf("error %v: Temporary %v, want %v", err, se.Temporary, temporary)
	}
}

func TestSmarthostPlain(t *testing.T) {
	r := startRelay(t, relayOptions{})
	if err := send(t, smarthost(t, config.Outbound{Smarthost: r.addr, TLS: config.TLSNone}, "")); err != nil {
		t.Fatal(err)
	}
	checkOne(t, r, false, "")
}

func TestSmarthostStartTLSOpportunistic(t *testing.T) {
	tc, _ := selfSigned(t)
	t.Run("offered", func(t *testing.T) {
		// The certificate is not trusted: opportunistic TLS does not check it.
		r := startRelay(t, relayOptions{tls: tc})
		if err := send(t, smarthost(t, config.Outbound{Smarthost: r.addr, TLS: config.TLSStartTLS}, "")); err != nil {
			t.Fatal(err)
		}
		checkOne(t, r, true, "")
	})
	t.Run("not offered", func(t *testing.T) {
		r := startRelay(t, relayOptions{})
		if err := send(t, smarthost(t, config.Outbound{Smarthost: r.addr, TLS: config.TLSStartTLS}, "")); err != nil {
			t.Fatal(err)
		}
		checkOne(t, r, false, "")
	})
}

func TestSmarthostStartTLSRequired(t *testing.T) {
	tc, caFile := selfSigned(t)
	t.Run("trusted by ca_file", func(t *testing.T) {
		r := startRelay(t, relayOptions{tls: tc})
		if err := send(t, smarthost(t, config.Outbound{Smarthost: r.addr, TLS: config.TLSRequired, CAFile: caFile}, "")); err != nil {
			t.Fatal(err)
		}
		checkOne(t, r, true, "")
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		r := startRelay(t, relayOptions{tls: tc})
		sendError(t, send(t, smarthost(t, config.Outbound{Smarthost: r.addr, TLS: config.TLSRequired}, "")), true)
		if n := len(r.received()); n != 0 {
			t.Fatalf("relay got %d messages", n)
		}
	})
	t.Run("not offered", func(t *testing.T) {
		r := startRelay(t, relayOptions{})
		sendError(t, send(t, smarthost(t, config.Outbound{Smarthost: r.addr, TLS: config.TLSRequired, CAFile: caFile}, "")), true)
		if n := len(r.received()); n != 0 {
			t.Fatalf("relay got %d messages in plain text", n)
		}
	})
}

func TestSmarthostAuth(t *testing.T) {
	tc, caFile := selfSigned(t)
	for _, tt := range []struct {
		name string
		tls  string
		ca   string
		srv  *tls.Config
	}{
		{"plain", config.TLSNone, "", nil},
		{"starttls required", config.TLSRequired, caFile, tc},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, relayOptions{tls: tt.srv, user: "mailgw", pass: "s3cret"})
			o := config.Outbound{Smarthost: r.addr, TLS: tt.tls, CAFile: tt.ca, Username: "mailgw", PasswordEnv: "PW"}
			if err := send(t, smarthost(t, o, "s3cret")); err != nil {
				t.Fatal(err)
			}
			checkOne(t, r, tt.srv != nil, "mailgw")

			err := send(t, smarthost(t, o, "wrong"))
			sendError(t, err, false)
			if n := len(r.received()); n != 1 {
				t.Fatalf("relay got a message with a wrong password")
			}
		})
	}
}

func TestSmarthostReplies(t *testing.T) {
	for _, tt := range []struct {
		name      string
		err       *gosmtp.SMTPError
		temporary bool
	}{
		{"451 at RCPT", &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"}, true},
		{"550 at RCPT", &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, relayOptions{rcptErr: tt.err})
			err := send(t, smarthost(t, config.Outbound{Smarthost: r.addr, TLS: config.TLSNone}, ""))
			sendError(t, err, tt.temporary)
			var se *gosmtp.SMTPError
			if !errors.As(err, &se) || se.Code != tt.err.Code {
				t.Errorf("error %v does not carry the relay's reply", err)
			}
		})
	}
}

func TestSmarthostUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, mode := range []string{config.TLSNone, config.TLSStartTLS, config.TLSRequired} {
		t.Run(mode, func(t *testing.T) {
			sendError(t, send(t, smarthost(t, config.Outbound{Smarthost: addr, TLS: mode}, "")), true)
		})
	}
}

// TestSmarthostTimeout: a relay that accepts and never answers is given
// up after the Smarthost's timeout, as a temporary failure.
func TestSmarthostTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	s := smarthost(t, config.Outbound{Smarthost: ln.Addr().String(), TLS: config.TLSStartTLS}, "")
	s.Timeout = 300 * time.Millisecond
	began := time.Now()
	sendError(t, send(t, s), true)
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("Send took %v with a 300ms timeout", d)
	}
}

func TestNewSmarthostBadCAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, filepath.Join(t.TempDir(), "missing.pem")} {
		if _, err := verify.NewSmarthost(config.Outbound{Smarthost: "127.0.0.1:25", TLS: config.TLSRequired, CAFile: f}, "mx.example.com", ""); err == nil {
			t.Errorf("NewSmarthost with ca_file %s: no error", f)
		}
	}
}

// TestSmarthostNoPasswordInClear: with opportunistic TLS, a relay that
// does not offer STARTTLS (or an attacker who strips it from the EHLO
// reply) must not be sent the password in plain text. Only outbound.tls
// none, chosen by the operator for a relay on a trusted network, may
// authenticate without TLS.
func TestSmarthostNoPasswordInClear(t *testing.T) {
	r := startRelay(t, relayOptions{user: "mailgw", pass: "s3cret"})
	o := config.Outbound{Smarthost: r.addr, TLS: config.TLSStartTLS, Username: "mailgw", PasswordEnv: "PW"}
	err := send(t, smarthost(t, o, "s3cret"))
	r.mu.Lock()
	auth := append([]string(nil), r.auth...)
	r.mu.Unlock()
	if len(auth) != 0 {
		t.Errorf("credentials sent without TLS: %v", auth)
	}
	if err == nil {
		t.Errorf("Send succeeded with AUTH over a plain-text connection")
	}
}
