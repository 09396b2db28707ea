// Package browser holds mailgw's browser end-to-end tests. They build the
// real mailgw binary, run "mailgw serve" as a child process against a real
// redis-server (internal/redistest) with a capturing SMTP server as its
// smarthost, and drive the verification pages with Debian's Chromium
// (/usr/bin/chromium) through the DevTools protocol (chromedp), the way an
// unknown sender does: open the link from the mail, press Confirm.
// Everything listens on 127.0.0.1 only.
//
// The tests need redis-server and /usr/bin/chromium; a missing one fails
// the test (scripts/test.sh installs them). Set MAILGW_SCREENSHOTS to a
// directory to keep the screenshots the tests take.
package browser
