package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

	t   testing.TB
	run *proctest.Server
}

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
	s := &Server{Dir: dir, LogFile: filepath.Join(dir, "redis.log"), t: t}
	args := []string{
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--dir", dir,
		"--logfile", s.LogFile,
		"--save", "",
		"--appendonly", yesNo(opts.AppendOnly),
	}
	args = append(args, opts.ExtraArgs...)
	s.run = proctest.NewServer(t, proctest.ServerSpec{
		Name:    "redistest: redis-server",
		Dir:     dir,
		OutFile: filepath.Join(dir, "redis.out"),
		LogFile: s.LogFile,
		Ready:   startTimeout,
		Poll:    pollInterval,
		Grace:   stopGrace,
		Command: func(addr string) *exec.Cmd {
			_, port, _ := net.SplitHostPort(addr)
			return exec.Command(bin, append([]string{"--port", port}, args...)...)
		},
		// Checking the pid makes sure a stranger that grabbed the port is
		// not mistaken for our server.
		Probe: probe,
	})
	t.Cleanup(s.run.Close)
	if err := s.run.StartOnFreePort(portAttempts, nil); err != nil {
		t.Fatal(err)
	}
	s.Addr = s.run.Addr()
	s.URL = "redis://" + s.Addr + "/0"
	t.Logf("redistest: redis-server pid %d listening on %s, dir %s", s.run.PID(), s.Addr, s.Dir)
	return s
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
func (s *Server) Stop() { s.run.Stop() }

// Kill ends the server with SIGKILL and waits for it, to simulate a crash:
// nothing is flushed. Start brings the server back. Kill on a stopped
// server does nothing.
func (s *Server) Kill() { s.run.Kill() }

// Start restarts a stopped or killed server on the same port and data
// directory and waits until it answers PING, loading any append-only file
// first. It fails the test if the server is running or the port has been
// taken in the meantime.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.run.Start(0); err != nil {
		s.t.Fatal(err)
	}
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

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
