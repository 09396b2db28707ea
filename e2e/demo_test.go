package e2e_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The demo's fixed listen addresses (config.DefaultSMTPListen and
// config.DefaultHTTPListen).
const (
	demoSMTP = "127.0.0.1:2525"
	demoHTTP = "127.0.0.1:8080"
)

// TestDemo runs "mailgw serve" with no config and no MAILGW_* variables:
// the built-in demo with an embedded Redis, which prints a swaks command
// to paste. Its listen addresses are fixed, so when 2525 or 8080 is taken
// on this machine (other test runs use them too) the demo cannot start;
// the test then checks that it says so — exit status 1, the
// embedded-Redis warning and the bind error — instead of pasting.
func TestDemo(t *testing.T) {
	t.Parallel()
	swaksBin := requireTool(t, "swaks")
	for _, addr := range []string{demoSMTP, demoHTTP} {
		if ln, err := net.Listen("tcp", addr); err != nil {
			t.Logf("%s looks taken (%v)", addr, err)
		} else {
			_ = ln.Close()
		}
	}

	g := launch(t, "serve")
	g.Addr = demoSMTP
	// The hint goes to stdout once both listeners are bound; until then
	// someone else may be answering on 2525.
	deadline := time.Now().Add(readyTimeout)
	for !strings.Contains(g.proc.Stdout.String(), "swaks ") && !g.exited() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if g.exited() {
		code := g.wait(t, time.Second)
		stderr := g.proc.Stderr.String()
		if code != 1 || !strings.Contains(stderr, "address already in use") {
			t.Fatalf("demo exited with status %d:\n%s", code, stderr)
		}
		t.Logf("demo could not bind its fixed addresses: checked that it says so")
		if !strings.Contains(stderr, "EMBEDDED") {
			t.Errorf("demo stderr does not warn about the embedded Redis:\n%s", stderr)
		}
		return
	}
	if err := g.waitReady("localhost"); err != nil {
		t.Fatalf("demo: %v", err)
	}
	if !strings.Contains(g.proc.Stderr.String(), "EMBEDDED") {
		t.Errorf("demo stderr does not warn about the embedded Redis:\n%s", g.proc.Stderr.String())
	}

	var command string
	for _, line := range strings.Split(g.proc.Stdout.String(), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "swaks ") {
			command = l
		}
	}
	if command == "" {
		t.Fatalf("demo printed no swaks command; stdout:\n%s", g.proc.Stdout.String())
	}
	if !strings.Contains(command, "--server 127.0.0.1 --port 2525") {
		t.Errorf("swaks command does not name the demo's address: %s", command)
	}

	// Paste it into a shell as a user would, with swaks found in PATH.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(childEnv(), "PATH="+swaksDirPath(swaksBin))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pasted %q: %v\n%s", command, err, out)
	}
	if !strings.Contains(string(out), "<-  250 2.0.0 OK: queued as IT-1") {
		t.Errorf("pasted swaks command was not queued:\n%s", out)
	}
	g.stop(t)
	if n := len(decisions(g.logLines(t), "accepted")); n != 1 {
		t.Errorf("%d accepted decisions on stderr, want 1", n)
	}
}

// swaksDirPath returns PATH with swaks's directory first.
func swaksDirPath(bin string) string {
	dir := bin[:strings.LastIndexByte(bin, '/')]
	for _, kv := range childEnv() {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			return dir + ":" + p
		}
	}
	return dir
}
