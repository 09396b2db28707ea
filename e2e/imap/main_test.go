package imap_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"mailgw/internal/dovecottest"
	"mailgw/internal/proctest"
	"mailgw/route"
)

const (
	hostname     = "mx.example.com"
	mailboxName  = "support" // imap[0].name
	passwordEnv  = "MAILGW_TEST_IMAP_PW"
	fixtureDir   = "../../testdata/mails"
	readyTimeout = 15 * time.Second // bound on waiting for a new mailgw to greet
	stopTimeout  = 20 * time.Second // bound on waiting for mailgw to exit after SIGTERM
	bindAttempts = 5                // fresh ports tried when mailgw cannot bind
	pollEvery    = 50 * time.Millisecond

	leaseKey  = "mailgw:imap:" + mailboxName + ":lease"
	cursorKey = "mailgw:imap:" + mailboxName + ":cursor"
	itStream  = "mailgw:{IT}:requests"
	logStream = "mailgw:log"
)

// mailgwBin is the binary TestMain builds; every test runs it.
var mailgwBin string

func TestMain(m *testing.M) {
	os.Exit(proctest.RunMailgwTests(m, "mailgw-e2e-imap-", &mailgwBin))
}

// ---------------------------------------------------------------- config

// gwOptions configure one mailgw under test.
type gwOptions struct {
	RedisURL     string
	IMAP         *dovecottest.Server
	IMAPAddr     string // imap[0].addr, when not IMAP.Addr() (a proxy)
	PollInterval string // imap[0].poll_interval; default 1s
}

// writeConfig writes a config with the fixture corpus's access, verify,
// spaces, organizations, customers and agents (testdata/mails/config.yaml)
// and its message size limit, so the fixtures are decided as documented
// there except for the recipient: IMAP mail always goes to the space of
// the mailbox's address (it@example.com, space IT).
//
// Rate limits are turned off: hundreds of messages from the same few
// fixture senders within a minute would rightly be rate_limited, which is
// not what these tests are about.
func writeConfig(t testing.TB, smtpPort, httpPort int, o gwOptions) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var fixture map[string]any
	if err := yaml.Unmarshal(b, &fixture); err != nil {
		t.Fatalf("testdata/mails/config.yaml: %v", err)
	}
	poll := o.PollInterval
	if poll == "" {
		poll = "1s"
	}
	addr := o.IMAPAddr
	if addr == "" {
		addr = o.IMAP.Addr()
	}
	smtpCfg := map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", smtpPort), "shutdown_grace": "5s"}
	if fs, ok := fixture["smtp"].(map[string]any); ok && fs["max_message_bytes"] != nil {
		smtpCfg["max_message_bytes"] = fs["max_message_bytes"]
	}
	cfg := map[string]any{
		"hostname": hostname,
		"redis":    map[string]any{"url": o.RedisURL},
		"smtp":     smtpCfg,
		"http":     map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", httpPort)},
		"rate": map[string]any{
			"sender": map[string]any{"count": -1},
			"space":  map[string]any{"count": -1},
		},
		"imap": []any{map[string]any{
			"name":          mailboxName,
			"addr":          addr,
			"tls":           "none",
			"username":      o.IMAP.User,
			"password_env":  passwordEnv,
			"mailbox":       "INBOX",
			"address":       "it@example.com",
			"processed":     "Processed",
			"rejected":      "Rejected",
			"idle":          true,
			"poll_interval": poll,
			"batch_size":    50,
		}},
	}
	// No outbound smarthost: verification mail for held requests stays in
	// the outbox instead of going to whatever listens on 127.0.0.1:2526.
	for _, k := range []string{"access", "verify", "spaces", "organizations", "customers", "agents"} {
		if v, ok := fixture[k]; ok {
			cfg[k] = v
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mailgw.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ---------------------------------------------------------------- mailgw process

// gateway is one "mailgw serve" started by a test.
type gateway struct {
	Name   string // for messages: "mailgw", "mailgw A", ...
	Addr   string // SMTP listener, 127.0.0.1:PORT
	Config string

	proc *proctest.Mailgw
}

// startGateway writes a config for o and runs "mailgw serve" with its
// SMTP and HTTP listeners on free ports, retrying with other ports if the
// child cannot bind.
func startGateway(t *testing.T, name string, o gwOptions) *gateway {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := proctest.MustFreePort(t)
		cfg := writeConfig(t, port, proctest.MustFreePort(t), o)
		g := launch(t, name, cfg)
		g.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err := g.waitReady()
		if err == nil {
			return g
		}
		if g.proc.BindFailed() && attempt < bindAttempts {
			t.Logf("%s could not bind %s, trying another port", name, g.Addr)
			continue
		}
		t.Fatalf("%s on %s: %v", name, g.Addr, err)
	}
}

// restart starts a new mailgw with g's config (same ports).
func (g *gateway) restart(t *testing.T) *gateway {
	t.Helper()
	n := launch(t, g.Name+" (restarted)", g.Config)
	n.Addr = g.Addr
	if err := n.waitReady(); err != nil {
		t.Fatalf("%s on %s: %v", n.Name, n.Addr, err)
	}
	return n
}

// launch runs "mailgw serve --config cfg" with the IMAP password in its
// environment; see proctest.StartMailgw.
func launch(t *testing.T, name, cfg string) *gateway {
	t.Helper()
	env := []string{passwordEnv + "=" + dovecottest.DefaultPassword}
	p := proctest.StartMailgwEnv(t, mailgwBin, env, "serve", "--config", cfg)
	return &gateway{Name: name, Config: cfg, proc: p}
}

func (g *gateway) pid() int { return g.proc.Pid() }

func (g *gateway) exited() bool { return g.proc.Exited() }

// waitReady waits until g.Addr greets with "220 mx.example.com", the child
// exits, or readyTimeout passes.
func (g *gateway) waitReady() error {
	return g.proc.WaitReady(readyTimeout, 20*time.Millisecond, func() error {
		return proctest.ProbeSMTPGreeting(g.Addr, hostname)
	})
}

// kill ends mailgw with SIGKILL, by pid, and waits for it: a crash.
func (g *gateway) kill(t testing.TB) {
	t.Helper()
	if err := g.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s (pid %d): %v", g.Name, g.pid(), err)
	}
	select {
	case <-g.proc.Done():
	case <-time.After(stopTimeout):
		t.Fatalf("%s (pid %d) still running %v after SIGKILL", g.Name, g.pid(), stopTimeout)
	}
}

// stop sends SIGTERM and requires a clean exit.
func (g *gateway) stop(t testing.TB) {
	t.Helper()
	if err := g.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal %s: %v", g.Name, err)
	}
	select {
	case <-g.proc.Done():
	case <-time.After(stopTimeout):
		t.Fatalf("%s (pid %d) still running %v after SIGTERM", g.Name, g.pid(), stopTimeout)
	}
	if g.proc.Err() != nil {
		t.Errorf("%s exited with %v after SIGTERM, want status 0", g.Name, g.proc.Err())
	}
}

// logLines returns the child's stderr lines that are JSON objects.
func (g *gateway) logLines() []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(g.proc.Stderr.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// connects counts the poller's "connected" lines: IMAP sessions it began.
func (g *gateway) connects() int {
	n := 0
	for _, m := range g.logLines() {
		if m["component"] == "imap" && m["message"] == "connected" {
			n++
		}
	}
	return n
}

// imapDecisions counts the child's decision lines of channel imap.
func (g *gateway) imapDecisions() int {
	n := 0
	for _, m := range g.logLines() {
		if m["message"] == "decision" && m["channel"] == "imap" {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------- proxy

// stallProxy passes IMAP connections through to a server until a client
// sends its first UID command of a kind (STORE, MOVE). Depending on its
// options it forwards that command and, once the server has answered it,
// closes Stalled; or it holds the command back too and closes Stalled at
// once. Either way it forwards nothing more from that client, so the test
// can kill mailgw at exactly that point.
type stallProxy struct {
	Addr    string
	Stalled chan struct{}

	target string
	opt    stallOptions
	armed  sync.Once // the first such command stalls its connection
	fired  sync.Once
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
}

// stallOptions say where a stallProxy stalls.
type stallOptions struct {
	Command string // the UID command to stall at: STORE or MOVE
	Forward bool   // whether the server gets that command
	// HideMove removes MOVE (and IMAP4rev2, which implies it) from the
	// capabilities the server announces, so the client takes go-imap's
	// fallback: COPY, STORE \Deleted, EXPUNGE.
	HideMove bool
}

func startStallProxy(t *testing.T, target string, opt stallOptions) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{Addr: ln.Addr().String(), Stalled: make(chan struct{}), target: target, opt: opt, ln: ln}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

// track keeps c to be closed by the cleanup.
func (p *stallProxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
}

func (p *stallProxy) fire() { p.fired.Do(func() { close(p.Stalled) }) }

// capabilityLine matches the server lines that announce capabilities: an
// untagged CAPABILITY response, or an OK with a CAPABILITY response code.
var capabilityLine = regexp.MustCompile(`^(\* CAPABILITY |(\*|[A-Za-z0-9]+) OK \[CAPABILITY )`)

// hideMove drops MOVE and IMAP4rev2 from a capability announcement.
func hideMove(line string) string {
	if !capabilityLine.MatchString(line) {
		return line
	}
	for _, c := range []string{"MOVE", "IMAP4rev2"} {
		for _, end := range []string{" ", "]", "\r\n"} {
			line = strings.ReplaceAll(line, " "+c+end, end)
		}
	}
	return line
}

func (p *stallProxy) serve(client net.Conn) {
	p.track(client)
	defer client.Close()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.track(server)
	defer server.Close()
	stallTag := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer client.Close()
		r := bufio.NewReader(server)
		tag := ""
		for {
			line, err := r.ReadString('\n')
			if p.opt.HideMove {
				line = hideMove(line)
			}
			if _, werr := client.Write([]byte(line)); werr != nil || err != nil {
				return
			}
			if tag == "" {
				select {
				case tag = <-stallTag:
				default:
				}
			}
			if tag != "" && strings.HasPrefix(line, tag+" ") {
				p.fire()
			}
		}
	}()
	r := bufio.NewReader(client)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		f := strings.Fields(line)
		stall := false
		if len(f) >= 3 && strings.EqualFold(f[1], "UID") && strings.EqualFold(f[2], p.opt.Command) {
			p.armed.Do(func() { stall = true })
		}
		if stall && !p.opt.Forward {
			p.fire()
			_, _ = io.Copy(io.Discard, r)
			break
		}
		if stall {
			stallTag <- f[0]
		}
		if _, err := server.Write([]byte(line)); err != nil {
			break
		}
		if stall {
			// Hold everything after the command until the client goes away.
			_, _ = io.Copy(io.Discard, r)
			break
		}
	}
	_ = server.Close()
	<-done
}

// ---------------------------------------------------------------- decision log

// logEntry is one object of "mailgw log --json".
type logEntry = route.Entry

// decisionLog runs "mailgw log --json -n 100000" against cfg.
func decisionLog(t testing.TB, cfg string) []logEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mailgwBin, "log", "--config", cfg, "--json", "-n", "100000")
	cmd.Env = proctest.MailgwEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mailgw log: %v, stderr:\n%s", err, stderr.String())
	}
	return proctest.DecodeJSONLines[logEntry](t, stdout.String())
}

// ---------------------------------------------------------------- Redis

func rctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// streamIDs returns the message_id of every entry of the IT stream, in order.
func streamIDs(t testing.TB, rdb *redis.Client) []string {
	t.Helper()
	msgs, err := rdb.XRange(rctx(t), itStream, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", itStream, err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		v, _ := m.Values["message_id"].(string)
		if ch, _ := m.Values["channel"].(string); ch != "imap" {
			t.Errorf("stream entry %s has channel %q, want imap", m.ID, ch)
		}
		ids[i] = v
	}
	return ids
}

func xlen(t testing.TB, rdb *redis.Client) int64 {
	t.Helper()
	n, err := rdb.XLen(rctx(t), itStream).Result()
	if err != nil {
		t.Fatalf("XLEN: %v", err)
	}
	return n
}

// waitLog waits until the decision log stream has at least n entries:
// mailgw writes it in the background, shortly after the decisions.
func waitLog(t testing.TB, rdb *redis.Client, n int64) {
	t.Helper()
	waitFor(t, 15*time.Second, fmt.Sprintf("%d decision log entries", n), func() (bool, string) {
		got, err := rdb.XLen(rctx(t), logStream).Result()
		if err != nil {
			t.Fatalf("XLEN %s: %v", logStream, err)
		}
		return got >= n, fmt.Sprintf("%d entries", got)
	})
}

// leaseHolder returns the pid in the lease value ("host/pid/random"), 0
// when nobody holds it.
func leaseHolder(t testing.TB, rdb *redis.Client) int {
	t.Helper()
	v, err := rdb.Get(rctx(t), leaseKey).Result()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatalf("GET %s: %v", leaseKey, err)
	}
	f := strings.Split(v, "/")
	if len(f) < 3 {
		t.Fatalf("lease value %q is not host/pid/random", v)
	}
	pid, err := strconv.Atoi(f[len(f)-2])
	if err != nil {
		t.Fatalf("lease value %q: %v", v, err)
	}
	return pid
}

// ---------------------------------------------------------------- waiting

// waitFor polls cond until it holds, failing the test after within. cond
// describes the state it saw, for the failure message.
func waitFor(t testing.TB, within time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not after %v (%s)", what, within, state)
		}
		time.Sleep(pollEvery)
	}
}

// killWhenQueued kills g with SIGKILL as soon as the stream has more than
// n entries, polling every millisecond so that the kill lands in the
// middle of a batch, and returns the stream length it saw. check, if not
// nil, runs every 50 ms meanwhile.
func killWhenQueued(t testing.TB, g *gateway, rdb *redis.Client, n int64, check func()) int64 {
	t.Helper()
	const within = 60 * time.Second
	start, lastCheck := time.Now(), time.Time{}
	for {
		got := xlen(t, rdb)
		if got > n {
			g.kill(t)
			return got
		}
		if g.exited() {
			t.Fatalf("%s exited by itself: %v", g.Name, g.proc.Err())
		}
		if time.Since(start) > within {
			t.Fatalf("stream has %d entries after %v, want more than %d", got, within, n)
		}
		if check != nil && time.Since(lastCheck) > pollEvery {
			check()
			lastCheck = time.Now()
		}
		time.Sleep(time.Millisecond)
	}
}

// waitInboxEmpty waits until INBOX has no message left.
func waitInboxEmpty(t testing.TB, dc *dovecottest.Server, within time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, within, "INBOX empty", func() (bool, string) {
		st := dc.Status(t, "INBOX")
		return st.Messages == 0, fmt.Sprintf("INBOX: %d messages, %d unseen", st.Messages, st.Unseen)
	})
}

// ---------------------------------------------------------------- messages

// carolMessage is a plain request from carol@example.com, a known active
// internal customer: queued in IT.
func carolMessage(messageID, subject string) []byte {
	return fmt.Appendf(nil, "From: Carol <carol@example.com>\r\nTo: it@example.com\r\nSubject: %s\r\n"+
		"Date: Tue, 24 Nov 2026 08:00:00 +0000\r\nMessage-ID: <%s>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", subject, messageID, "Body of "+subject)
}

// carolMessages returns n messages with IDs prefix-000@imap.example, ...
func carolMessages(prefix string, n int) (raws [][]byte, ids []string) {
	for i := range n {
		id := fmt.Sprintf("%s-%03d@imap.example", prefix, i)
		raws = append(raws, carolMessage(id, fmt.Sprintf("%s %d", prefix, i)))
		ids = append(ids, id)
	}
	return raws, ids
}

var messageIDHeader = regexp.MustCompile(`(?im)^message-id:[ \t]*(?:\r?\n[ \t]+)?<([^<>\r\n]*)>`)

// withMessageID gives raw a unique Message-ID: the one in its header
// gets tag appended to its local part (so the domain, and a mailgw. prefix
// that marks mailgw's own mail, stay), and a message without one gets
// "Message-ID: <tag@imap-e2e.example>" as its first line. It returns the
// message and the ID, without angle brackets.
func withMessageID(raw []byte, tag string) ([]byte, string) {
	head := raw
	if i := headerEnd(raw); i >= 0 {
		head = raw[:i]
	}
	if loc := messageIDHeader.FindSubmatchIndex(head); loc != nil {
		old := string(raw[loc[2]:loc[3]])
		id := old + "." + tag
		if at := strings.LastIndexByte(old, '@'); at >= 0 {
			id = old[:at] + "." + tag + old[at:]
		}
		out := slices.Concat(raw[:loc[2]], []byte(id), raw[loc[3]:])
		return out, id
	}
	eol := "\r\n"
	if i := bytes.IndexByte(raw, '\n'); i > 0 && raw[i-1] != '\r' {
		eol = "\n"
	}
	id := tag + "@imap-e2e.example"
	return slices.Concat([]byte("Message-ID: <"+id+">"+eol), raw), id
}

// headerEnd is the offset of the empty line that ends the header, or -1.
func headerEnd(raw []byte) int {
	if bytes.HasPrefix(raw, []byte("\r\n")) || bytes.HasPrefix(raw, []byte("\n")) {
		return 0
	}
	crlf := bytes.Index(raw, []byte("\r\n\r\n"))
	lf := bytes.Index(raw, []byte("\n\n"))
	switch {
	case crlf < 0:
		return lf
	case lf < 0:
		return crlf
	default:
		return min(crlf, lf)
	}
}

// fixtureMessages returns n messages cycling through the .eml fixtures of
// testdata/mails in name order, each with a Message-ID of its own, and
// the IDs.
func fixtureMessages(t testing.TB, n int) (raws [][]byte, ids []string) {
	t.Helper()
	entries, err := os.ReadDir(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	var files [][]byte
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(fixtureDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	if len(files) == 0 {
		t.Fatalf("no .eml fixtures in %s", fixtureDir)
	}
	for i := range n {
		raw, id := withMessageID(files[i%len(files)], fmt.Sprintf("imap%03d", i))
		raws = append(raws, raw)
		ids = append(ids, id)
	}
	return raws, ids
}

// messageID reads the Message-ID of a raw message as the server returns
// it, without angle brackets.
func messageID(raw []byte) string {
	head := raw
	if i := headerEnd(raw); i >= 0 {
		head = raw[:i]
	}
	if m := messageIDHeader.FindSubmatch(head); m != nil {
		return string(m[1])
	}
	return ""
}

// checkExactlyOnce requires ids (the stream's message_ids) to be want,
// each once, in any order.
func checkExactlyOnce(t testing.TB, got, want []string) {
	t.Helper()
	count := make(map[string]int, len(got))
	for _, id := range got {
		count[id]++
	}
	var dup, missing, extra []string
	for id, n := range count {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s ×%d", id, n))
		}
	}
	wantSet := make(map[string]bool, len(want))
	for _, id := range want {
		wantSet[id] = true
		if count[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id := range count {
		if !wantSet[id] {
			extra = append(extra, id)
		}
	}
	if len(dup)+len(missing)+len(extra) > 0 {
		slices.Sort(dup)
		slices.Sort(missing)
		slices.Sort(extra)
		t.Errorf("stream has %d entries for %d messages: queued twice %v; missing %v; unexpected %v",
			len(got), len(want), head(dup), head(missing), head(extra))
	}
}

// head shortens a list for a message.
func head(s []string) []string {
	if len(s) > 10 {
		return append(s[:10:10], fmt.Sprintf("... %d more", len(s)-10))
	}
	return s
}
