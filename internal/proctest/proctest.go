package proctest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BuildMailgw builds mailgw/cmd/mailgw into a new temporary directory
// named after prefix, for a TestMain. cleanup removes the directory; call
// it once the tests have run. The go tool's output goes to os.Stderr.
func BuildMailgw(prefix string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	goBin, err := exec.LookPath("go")
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go not found in PATH: %v", err)
	}
	bin = filepath.Join(dir, "mailgw")
	build := exec.Command(goBin, "build", "-o", bin, "mailgw/cmd/mailgw")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go build mailgw: %v", err)
	}
	return bin, cleanup, nil
}

// RunMailgwTests is the body of a TestMain whose tests run mailgw: it
// builds the binary once, stores its path in *bin, runs the tests and
// removes the binary. It returns the exit code for os.Exit.
func RunMailgwTests(m *testing.M, prefix string, bin *string) int {
	path, cleanup, err := BuildMailgw(prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	*bin = path
	return m.Run()
}

// FreePort asks the kernel for a free port on 127.0.0.1. The port is free
// only until someone else takes it, so callers retry with another port
// when a child cannot bind it.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// MustFreePort is FreePort that fails the test on error.
func MustFreePort(t testing.TB) int {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// MailgwEnv is the test's environment without the variables that would
// override a mailgw child's config.
func MailgwEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MAILGW_CONFIG=") || strings.HasPrefix(kv, "MAILGW_REDIS_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Mailgw is a mailgw child of a test, with the output it has written.
type Mailgw struct {
	*Process
	Stdout, Stderr SyncBuffer
}

// StartMailgw runs the mailgw binary bin with args in MailgwEnv's
// environment. When the test ends the child is killed, by its pid, if it
// is still running, and the end of its stderr is logged if the test
// failed.
func StartMailgw(t testing.TB, bin string, args ...string) *Mailgw {
	t.Helper()
	return StartMailgwEnv(t, bin, nil, args...)
}

// StartMailgwEnv is StartMailgw with env, "KEY=value" entries, added to
// the child's environment: variables its config names, such as a
// password_env.
func StartMailgwEnv(t testing.TB, bin string, env []string, args ...string) *Mailgw {
	t.Helper()
	g := &Mailgw{}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(MailgwEnv(), env...)
	cmd.Stdout = &g.Stdout
	cmd.Stderr = &g.Stderr
	p, err := Start(cmd)
	if err != nil {
		t.Fatalf("start mailgw: %v", err)
	}
	g.Process = p
	t.Cleanup(func() {
		if !p.Exited() {
			p.Kill()
		}
		if t.Failed() {
			t.Logf("mailgw %s (pid %d) stderr%s", strings.Join(args, " "), p.Pid(), LastLines(g.Stderr.String(), 60))
		}
	})
	return g
}

// BindFailed reports whether the child has exited because a port it was
// to listen on was taken, so that a start on other ports may succeed.
func (g *Mailgw) BindFailed() bool {
	return g.Exited() && strings.Contains(g.Stderr.String(), "address already in use")
}

// SyncBuffer is a bytes.Buffer that its writers (a child's output, the
// goroutines of a logger under test) and the test may use concurrently.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// LastLines returns a heading and the last n lines of s, for a log line
// such as "stderr"+LastLines(out, 40).
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return ":\n" + strings.Join(lines, "\n")
	}
	return fmt.Sprintf(", last %d of %d lines:\n%s", n, len(lines), strings.Join(lines[len(lines)-n:], "\n"))
}

// FileSize is the size of the file name, 0 if it cannot be read.
func FileSize(name string) int64 {
	fi, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Tail returns up to the last 4 KiB written to name after offset off.
func Tail(name string, off int64) string {
	const limit = 4 << 10
	b, err := os.ReadFile(name)
	if err != nil || int64(len(b)) <= off {
		return ""
	}
	b = b[off:]
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return string(b)
}

// ProbeSMTPGreeting connects to addr once and succeeds if it greets with
// "220 host ", then says QUIT.
func ProbeSMTPGreeting(addr, host string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "220 "+host+" ") {
		return fmt.Errorf("greeting %q is not mailgw's", strings.TrimSpace(line))
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return nil
}

// DecodeJSONLines reads output of one JSON object per line, such as
// "mailgw log --json" or "mailgw replay --json", into T values.
func DecodeJSONLines[T any](t testing.TB, stdout string) []T {
	t.Helper()
	var out []T
	for line := range strings.Lines(stdout) {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("mailgw printed a line that is not JSON: %q", line)
		}
		out = append(out, v)
	}
	return out
}
