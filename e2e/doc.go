// Package e2e holds mailgw's end-to-end tests. They build the real mailgw
// binary, run "mailgw serve" as a child process against a real
// redis-server (internal/redistest), and drive it over SMTP with the tools
// operators use — swaks and Postfix's smtp-source — and with go-smtp
// clients. Everything listens on 127.0.0.1 only.
//
// The tests need redis-server, swaks and /usr/sbin/smtp-source; a missing
// tool fails the test (scripts/test.sh installs them).
package e2e
