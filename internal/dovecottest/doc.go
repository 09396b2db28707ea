// Package dovecottest runs a real Dovecot IMAP server for tests.
//
// Start writes a minimal dovecot.conf into a fresh temporary directory —
// IMAP only (RFC 3501), plain text on 127.0.0.1 and a free port, no TLS,
// one mail user in a passwd-file, Maildir storage — and runs
// /usr/sbin/dovecot in the foreground as a child of the test. It waits
// until the server greets and the user can log in. The Server can be
// stopped, restarted on the same port and data, and killed, to simulate
// outages; Append, Messages and Status read and write mailboxes through
// go-imap v2, as a mail client would.
//
// Dovecot runs in its own process group: Kill and the cleanup at the end
// of the test end the master and every process it spawned (login, imap,
// auth, ...), and nothing else.
//
// The directory is a short one of its own under $TMPDIR (or /tmp), not
// t.TempDir: Dovecot's UNIX sockets live below it and their paths may not
// exceed 108 bytes, which a long test name would break. The cleanup
// removes it. Mail is not fsynced (mail_fsync = never): tests kill
// processes, not the machine, and fsync stalls for seconds on a busy
// shared disk.
//
// # Users and permissions
//
// Run as root, Dovecot's internal processes run as the dovecot and
// dovenull users (nobody where those do not exist) and mail is stored as
// nobody; the temporary directory is made world-readable for that. Run as
// another user, every process runs as that user, with chroots turned off.
//
// # Missing dovecot
//
// A missing /usr/sbin/dovecot fails the test: skipped tests hide defects.
// scripts/test.sh installs it (Debian package dovecot-imapd).
package dovecottest
