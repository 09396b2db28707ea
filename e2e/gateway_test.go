package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/internal/proctest"
	"mailgw/route"
)

const (
	hostname      = "mx.example.com"
	readyTimeout  = 10 * time.Second // bound on waiting for a new mailgw to greet
	stopTimeout   = 15 * time.Second // bound on waiting for mailgw to exit after SIGTERM
	ioTimeout     = 10 * time.Second // per SMTP command on a raw connection
	bindAttempts  = 5                // fresh ports tried when mailgw cannot bind
	installAdvice = "run scripts/test.sh, which installs them"
)

// mailgwBin is the binary TestMain builds; every test runs it.
var mailgwBin string

func TestMain(m *testing.M) {
	os.Exit(proctest.RunMailgwTests(m, "mailgw-e2e-", &mailgwBin))
}

// requireTool returns the path of a system tool the tests drive, or fails
// the test: a skipped test would hide defects.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	if strings.Contains(name, "/") {
		if fi, err := os.Stat(name); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return name
		}
		t.Fatalf("%s is not installed: %s", name, installAdvice)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (%v): %s", name, err, installAdvice)
	}
	return p
}

// childEnv is the environment of every child: the test's own, without the
// variables that would override a child's config.
func childEnv() []string { return proctest.MailgwEnv() }

// syncBuffer is a bytes.Buffer safe for a child's writer and the test.
type syncBuffer = proctest.SyncBuffer

// gwOptions configure one mailgw under test.
type gwOptions struct {
	RedisURL string
	// SMTP and Redis are extra YAML mapping entries for the smtp and redis
	// sections, e.g. "shutdown_grace: 10s".
	SMTP, Redis string
}

const configTemplate = `hostname: %s
redis: {url: %q%s}
smtp: {listen: "127.0.0.1:%d", connection_rate_per_ip: {count: -1}, message_rate_per_ip: {count: -1}%s}
http: {listen: "127.0.0.1:%d"}
access:
  internal_domains: [example.com]
  external_accounts: listed_domains
  external_domains: [partner.example]
  signup: verify
spaces:
  - {key: IT, name: IT help, addresses: [it@example.com], channel_access: open}
  - {key: BILL, name: Billing, addresses: [billing@example.com], channel_access: restricted}
customers:
  - {email: carol@example.com, name: Carol}
agents: [agent@example.com]
# The load tests flood from one sender on purpose; rate limits have tests
# of their own.
rate: {sender: {count: -1}, space: {count: -1}}
`

func writeConfig(t testing.TB, smtpPort, httpPort int, opts gwOptions) string {
	t.Helper()
	extra := func(s string) string {
		if s == "" {
			return ""
		}
		return ", " + s
	}
	path := filepath.Join(t.TempDir(), "mailgw.yaml")
	cfg := fmt.Sprintf(configTemplate, hostname, opts.RedisURL, extra(opts.Redis), smtpPort, extra(opts.SMTP), httpPort)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// gateway is one mailgw process started by a test.
type gateway struct {
	Addr   string // SMTP listener, 127.0.0.1:PORT
	Config string // config file path; empty in demo mode

	proc *proctest.Mailgw
}

// startGateway writes a config for opts and runs "mailgw serve" with its
// SMTP and HTTP listeners on free ports, retrying with other ports if the
// child cannot bind.
func startGateway(t *testing.T, opts gwOptions) *gateway {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := proctest.MustFreePort(t)
		cfg := writeConfig(t, port, proctest.MustFreePort(t), opts)
		g := launch(t, "serve", "--config", cfg)
		g.Config = cfg
		g.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err := g.waitReady(hostname)
		if err == nil {
			return g
		}
		if g.proc.BindFailed() && attempt < bindAttempts {
			t.Logf("mailgw could not bind %s, trying another port", g.Addr)
			continue
		}
		t.Fatalf("mailgw on %s: %v", g.Addr, err)
	}
}

// launch starts the mailgw binary with args; see proctest.StartMailgw.
func launch(t *testing.T, args ...string) *gateway {
	t.Helper()
	return &gateway{proc: proctest.StartMailgw(t, mailgwBin, args...)}
}

func (g *gateway) exited() bool { return g.proc.Exited() }

// waitReady waits until g.Addr accepts a connection and greets with a 220
// naming host, the child exits, or readyTimeout passes.
func (g *gateway) waitReady(host string) error {
	err := g.proc.WaitReady(readyTimeout, 20*time.Millisecond, func() error {
		return proctest.ProbeSMTPGreeting(g.Addr, host)
	})
	if err != nil {
		return fmt.Errorf("mailgw %w", err)
	}
	return nil
}

// signal sends sig to the child, by pid.
func (g *gateway) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := g.proc.Signal(sig); err != nil {
		t.Fatalf("signal mailgw (pid %d): %v", g.proc.Pid(), err)
	}
}

// wait waits up to within for the child to exit and returns its exit
// status, failing the test if it does not exit in time.
func (g *gateway) wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-g.proc.Done():
	case <-time.After(within):
		t.Fatalf("mailgw (pid %d) still running %v after SIGTERM", g.proc.Pid(), within)
	}
	if g.proc.Err() == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(g.proc.Err(), &ee) {
		return ee.ExitCode()
	}
	t.Fatalf("mailgw: %v", g.proc.Err())
	return -1
}

// stop sends SIGTERM and requires a clean exit with status 0.
func (g *gateway) stop(t testing.TB) {
	t.Helper()
	g.signal(t, syscall.SIGTERM)
	if code := g.wait(t, stopTimeout); code != 0 {
		t.Errorf("mailgw exited with status %d after SIGTERM, want 0", code)
	}
}

// logLines returns the child's stderr lines, each a JSON object (README:
// "Logs go to stderr as JSON lines"); other lines are one test error.
func (g *gateway) logLines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	var bad []string
	for _, line := range strings.Split(strings.TrimSpace(g.proc.Stderr.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			bad = append(bad, line)
			continue
		}
		out = append(out, m)
	}
	if len(bad) > 0 {
		t.Errorf("%d stderr lines are not JSON, the first: %q", len(bad), bad[0])
	}
	return out
}

// decisions returns the "decision" log lines with the given reason.
func decisions(lines []map[string]any, reason string) []map[string]any {
	var out []map[string]any
	for _, m := range lines {
		if m["message"] == "decision" && m["reason"] == reason {
			out = append(out, m)
		}
	}
	return out
}

// runMailgw runs a short mailgw command (not serve) and returns its
// stdout, stderr and exit status.
func runMailgw(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mailgwBin, args...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("mailgw %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), code
}

// logEntry is one object of "mailgw log --json".
type logEntry = route.Entry

// decisionLog runs "mailgw log --json" against g's config.
func decisionLog(t testing.TB, g *gateway, extra ...string) []logEntry {
	t.Helper()
	args := append([]string{"log", "--config", g.Config, "--json"}, extra...)
	stdout, stderr, code := runMailgw(t, args...)
	if code != 0 {
		t.Fatalf("mailgw log: exit status %d, stderr:\n%s", code, stderr)
	}
	return proctest.DecodeJSONLines[logEntry](t, stdout)
}

// streamKey is the request stream of a space with the default prefix.
func streamKey(space string) string { return "mailgw:{" + space + "}:requests" }

// streamEntries reads a whole request stream.
func streamEntries(t testing.TB, rdb *redis.Client, space string) []redis.XMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := rdb.XRange(ctx, streamKey(space), "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", streamKey(space), err)
	}
	return msgs
}

func field(m redis.XMessage, name string) string {
	v, _ := m.Values[name].(string)
	return v
}

// message builds a plain-text message with CRLF line ends.
func message(from, to, messageID, subject, body string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\n", from, to, subject)
	b.WriteString("Date: Tue, 24 Nov 2026 08:00:00 +0000\r\n")
	if messageID != "" {
		fmt.Fprintf(&b, "Message-ID: <%s>\r\n", messageID)
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString(body + "\r\n")
	return []byte(b.String())
}

// rawConn is an SMTP connection driven line by line, for what a client
// library would not do: bare LFs, half a message, timing around SIGTERM.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	tp *textproto.Conn
}

// dialRaw connects and reads the 220 greeting.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := &rawConn{t: t, c: c, tp: textproto.NewConn(c)}
	if code, msg, err := r.read(); err != nil || code != 220 {
		t.Fatalf("greeting: %d %q %v", code, msg, err)
	}
	return r
}

// read reads one (possibly multi-line) reply.
func (r *rawConn) read() (int, string, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(ioTimeout))
	return r.tp.ReadResponse(0)
}

// send writes s as it is, without adding a line end.
func (r *rawConn) send(s string) {
	r.t.Helper()
	_ = r.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// cmd sends one command line and reads the reply.
func (r *rawConn) cmd(line string) (int, string, error) {
	r.send(line + "\r\n")
	return r.read()
}

// try sends one command line and reads the reply, returning a write
// error instead of failing the test: the server may have closed the
// connection.
func (r *rawConn) try(line string) (int, string, error) {
	_ = r.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := r.c.Write([]byte(line + "\r\n")); err != nil {
		return 0, "", err
	}
	return r.read()
}

// expect sends one command line and requires the reply code.
func (r *rawConn) expect(line string, want int) string {
	r.t.Helper()
	code, msg, err := r.cmd(line)
	if err != nil || code != want {
		r.t.Fatalf("%s: got %d %q (%v), want %d", line, code, msg, err, want)
	}
	return msg
}
