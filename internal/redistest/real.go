package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/internal/proctest"
)

const (
	startTimeout = 10 * time.Second       // bound on waiting for a new server to answer
	pollInterval = 20 * time.Millisecond  // between readiness probes
	stopGrace    = 3 * time.Second        // between SIGTERM and SIGKILL
	probeTimeout = 500 * time.Millisecond // per readiness probe
	portAttempts = 5                      // fresh ports tried when bind fails
)

// Options configures RealWith. The zero value gives the server Real starts:
// no RDB snapshots and no append-only file, so nothing survives a restart.
type Options struct {
	// AppendOnly turns on the append-only file, so data written before
	// Stop or Kill is there again after Start. Redis flushes it once a
	// second by default; add "--appendfsync", "always" to ExtraArgs to make
	// every write durable before it is acknowledged (needed to survive Kill).
	AppendOnly bool

	// ExtraArgs go last on the redis-server command line, for example
	// []string{"--maxmemory", "1mb"}, and so override the defaults.
	ExtraArgs []string
}

// Server is a redis-server process owned by one test. It runs until the
// test ends unless the test stops or kills it first.
//
// Stop, Start and Kill report failures with the test's Fatal, so call them
// from the goroutine running the test that created the Server.
type Server struct {
	Addr    string // host:port, "127.0.0.1:PORT"
	URL     string // "redis://127.0.0.1:PORT/0", for redis.ParseURL
	Dir     string // working and data directory; removed after the test
	LogFile string // redis-server's log; its tail is shown when start-up fails

	t       testing.TB
	bin     string
	args    []string // command line without --port
	outFile string   // stdout and stderr, for errors before the log opens

	mu   sync.Mutex        // serialises Start, Stop, Kill and the cleanup
	proc *proctest.Process // nil while stopped
}

// errBind marks a start-up that failed because the port was taken.
var errBind = errors.New("redistest: port already in use")

// Real starts a redis-server on 127.0.0.1 with the default Options. See
// RealWith.
func Real(t testing.TB) *Server {
	t.Helper()
	return RealWith(t, Options{})
}

// RealWith starts a redis-server binary from PATH on 127.0.0.1 and a free
// port, in a fresh temporary directory, and waits until it answers PING.
// The process is terminated (SIGTERM, then SIGKILL after 3 s) and reaped
// when the test ends. If the chosen port is taken before redis-server can
// bind it, RealWith tries up to five ports.
//
// A missing redis-server fails the test; see the package documentation for
// MAILGW_SKIP_REAL.
func RealWith(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := lookRedisServer(t)

	// TempDir registers its removal before our cleanup is registered, so
	// the process is gone before its directory is removed.
	dir := t.TempDir()
	s := &Server{
		Dir:     dir,
		LogFile: filepath.Join(dir, "redis.log"),
		t:       t,
		bin:     bin,
		outFile: filepath.Join(dir, "redis.out"),
	}
	s.args = []string{
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--dir", dir,
		"--logfile", s.LogFile,
		"--save", "",
		"--appendonly", yesNo(opts.AppendOnly),
	}
	s.args = append(s.args, opts.ExtraArgs...)
	t.Cleanup(s.cleanup)

	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range portAttempts {
		var port int
		port, err = proctest.FreePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "redis://" + s.Addr + "/0"
		if err = s.launch(); err == nil {
			t.Logf("redistest: redis-server pid %d listening on %s, dir %s", s.proc.Pid(), s.Addr, s.Dir)
			return s
		}
		if !errors.Is(err, errBind) {
			break
		}
	}
	t.Fatal(err)
	return nil
}

// lookRedisServer returns the path of redis-server or ends the test.
func lookRedisServer(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		return bin
	}
	if os.Getenv("MAILGW_SKIP_REAL") == "1" && os.Getenv("CI") == "" && os.Getenv("MAILGW_REQUIRE_REAL") == "" {
		t.Skip("redis-server not installed; run scripts/test.sh")
	}
	t.Fatalf("redistest: redis-server not installed (%v); run scripts/test.sh, which installs it, "+
		"or set MAILGW_SKIP_REAL=1 to skip tests that need it (ignored when CI or MAILGW_REQUIRE_REAL is set)", err)
	return ""
}

// Client returns a client for the server with go-redis defaults, closed
// when t ends. Tests that need other timeouts or retries can build their
// own client from Addr or URL.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop shuts the server down with SIGTERM (SIGKILL after 3 s) and waits for
// it to exit, to simulate an outage. The data directory stays; Start brings
// the server back. Stop on a stopped server does nothing.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.terminate(s.proc)
	s.proc = nil
}

// Kill ends the server with SIGKILL and waits for it, to simulate a crash:
// nothing is flushed. Start brings the server back. Kill on a stopped
// server does nothing.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.Kill()
	s.proc = nil
}

// Start restarts a stopped or killed server on the same port and data
// directory and waits until it answers PING, loading any append-only file
// first. It fails the test if the server is running or the port has been
// taken in the meantime.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		if !s.proc.Exited() {
			s.t.Fatalf("redistest: Start: redis-server on %s is already running", s.Addr)
		}
		s.t.Logf("redistest: redis-server on %s had exited by itself: %v", s.Addr, s.proc.Err())
		s.proc = nil
	}
	if err := s.launch(); err != nil {
		s.t.Fatal(err)
	}
}

// cleanup ends the process at the end of the test.
func (s *Server) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	if s.proc.Exited() {
		s.t.Logf("redistest: redis-server on %s had exited by itself: %v", s.Addr, s.proc.Err())
	} else {
		s.terminate(s.proc)
	}
	s.proc = nil
}

// terminate sends SIGTERM, then SIGKILL if p has not exited after
// stopGrace, and waits until p is reaped.
func (s *Server) terminate(p *proctest.Process) {
	if p.Terminate(stopGrace) {
		s.t.Logf("redistest: redis-server on %s ignored SIGTERM for %v; killed it", s.Addr, stopGrace)
	}
}

// launch starts redis-server on s.Addr and waits until it is ready. On
// success it sets s.proc; on failure the process is gone and the error
// carries the server's output, wrapping errBind if the port was taken.
// The caller holds s.mu.
func (s *Server) launch() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	logOff, outOff := proctest.FileSize(s.LogFile), proctest.FileSize(s.outFile)
	out, err := os.OpenFile(s.outFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	cmd := exec.Command(s.bin, append([]string{"--port", port}, s.args...)...)
	cmd.Dir = s.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	p, err := proctest.Start(cmd)
	_ = out.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("redistest: start %s: %w", s.bin, err)
	}

	// Checking the pid makes sure a stranger that grabbed the port is not
	// mistaken for our server.
	err = p.WaitReady(startTimeout, pollInterval, func() error { return probe(s.Addr, p.Pid()) })
	if err != nil {
		exited := p.Exited()
		if !exited {
			p.Kill()
		}
		output := proctest.Tail(s.outFile, outOff) + proctest.Tail(s.LogFile, logOff)
		if exited && bindFailed(output) {
			return fmt.Errorf("%w: redis-server could not listen on %s; output:\n%s", errBind, s.Addr, output)
		}
		return fmt.Errorf("redistest: redis-server on %s: %w; output:\n%s", s.Addr, err, output)
	}
	s.proc = p
	return nil
}

// probe sends PING and INFO server over plain RESP and succeeds if the
// answer is PONG (not LOADING) from the process pid.
func probe(addr string, pid int) error {
	conn, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := io.WriteString(conn, "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimRight(line, "\r\n"); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	line, err = r.ReadString('\n')
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimRight(line, "\r\n"), "$"))
	if err != nil || !strings.HasPrefix(line, "$") {
		return fmt.Errorf("INFO answered %q", line)
	}
	info := make([]byte, n)
	if _, err := io.ReadFull(r, info); err != nil {
		return err
	}
	want := "process_id:" + strconv.Itoa(pid) + "\r\n"
	if !bytes.Contains(info, []byte(want)) {
		return fmt.Errorf("%s is served by another process", addr)
	}
	return nil
}

func bindFailed(output string) bool {
	return strings.Contains(output, "Address already in use") ||
		strings.Contains(output, "Failed listening on port")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
