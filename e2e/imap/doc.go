// Package imap holds mailgw's end-to-end tests of the IMAP channel. They
// build the real mailgw binary, run "mailgw serve" as a child process
// against a real redis-server (internal/redistest) and a real Dovecot
// (internal/dovecottest), fill the mailbox with go-imap APPENDs and check
// what ends up in the mailbox folders, the request stream and the
// decision log: nothing lost, nothing queued twice, across Redis and
// Dovecot outages, a killed gateway and two gateways sharing a mailbox.
// Everything listens on 127.0.0.1 only.
//
// The tests need redis-server and /usr/sbin/dovecot (Debian packages
// redis-server and dovecot-imapd); a missing one fails the test
// (scripts/test.sh installs them).
package imap
