// Command gosmtpnull is the second reference of bench/smtp.sh: an SMTP
// server built on the same go-smtp as mailgw, with a backend that accepts
// every command and discards the message. Between smtp-sink (a do-nothing
// server in C) and mailgw, it shows what share of the gap is the SMTP
// library's own cost — the rate no server built on go-smtp can exceed on
// the same machine — and what share is mailgw's parsing, policy and Redis
// write.
//
// Usage:
//
//	gosmtpnull 127.0.0.1:PORT
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/emersion/go-smtp"
)

type backend struct{}

func (backend) NewSession(*smtp.Conn) (smtp.Session, error) { return session{}, nil }

type session struct{}

func (session) Mail(string, *smtp.MailOptions) error { return nil }
func (session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (session) Reset()                               {}
func (session) Logout() error                        { return nil }

func (session) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gosmtpnull HOST:PORT")
		os.Exit(2)
	}
	s := smtp.NewServer(backend{})
	s.Addr = os.Args[1]
	s.Domain = "gosmtpnull.example"
	// As mailgw advertises them, so the dialogue is the same.
	s.EnableSMTPUTF8 = true
	s.MaxMessageBytes = 26214400
	if err := s.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "gosmtpnull:", err)
		os.Exit(1)
	}
}
