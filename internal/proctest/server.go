package proctest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ErrBind marks a start-up that failed because the port was taken.
var ErrBind = errors.New("port already in use")

// rebindPause is the wait between start attempts on a port still taken.
const rebindPause = 100 * time.Millisecond

// ServerSpec says how a Server runs its child.
type ServerSpec struct {
	Name    string        // in messages, with the package: "redistest: redis-server"
	Dir     string        // the child's working directory
	OutFile string        // the child's stdout and stderr: errors before its log opens
	LogFile string        // the server's own log
	Group   bool          // in a process group of its own, as with StartGroup
	Ready   time.Duration // bound on waiting for a new child to become ready
	Poll    time.Duration // between readiness probes
	Grace   time.Duration // between SIGTERM and SIGKILL

	// Command returns the child's command line for its address,
	// "127.0.0.1:PORT". Its Stdout, Stderr and Dir are set by the Server.
	Command func(addr string) *exec.Cmd

	// Probe succeeds once the child, process pid, serves addr.
	Probe func(addr string, pid int) error
}

// Server is a child listening on 127.0.0.1 that a test may stop, kill
// and start again on the same port, to simulate outages and crashes.
// Its methods serialise on one mutex, so PID may be called from any
// goroutine and never sees a start or stop half done.
type Server struct {
	spec ServerSpec
	t    testing.TB // for Logf only: the caller decides what fails the test
	addr string     // set once by StartOnFreePort, then only read

	mu   sync.Mutex
	proc *Process // nil while stopped
}

// NewServer returns a stopped Server that logs to t. The caller's cleanup
// calls Close.
func NewServer(t testing.TB, spec ServerSpec) *Server {
	return &Server{spec: spec, t: t}
}

// Addr is where the child listens, "127.0.0.1:PORT", once StartOnFreePort
// has succeeded.
func (s *Server) Addr() string { return s.addr }

// PID is the child's process id, 0 while stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}

// StartOnFreePort picks a free port, calls configure with it (nil for a
// child that needs no more than its address), starts the child and waits
// until it is ready. A free port is free only until someone else takes
// it, so a port taken before the child binds it is given up for another,
// up to attempts ports in all.
func (s *Server) StartOnFreePort(attempts int, configure func(port int) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range attempts {
		var port int
		if port, err = FreePort(); err != nil {
			return fmt.Errorf("%s: find a free port: %w", s.spec.Name, err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if configure != nil {
			if err = configure(port); err != nil {
				return fmt.Errorf("%s: %w", s.spec.Name, err)
			}
		}
		if err = s.launch(); !errors.Is(err, ErrBind) {
			return err
		}
	}
	return err
}

// Start starts a stopped or killed child again on the same port and waits
// until it is ready. A port still held by a dying process is retried for
// up to rebind. It is an error to start a running child.
func (s *Server) Start(rebind time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		if !s.proc.Exited() {
			return fmt.Errorf("%s on %s is already running", s.spec.Name, s.addr)
		}
		s.logExited()
	}
	deadline := time.Now().Add(rebind)
	for {
		err := s.launch()
		if !errors.Is(err, ErrBind) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(rebindPause)
	}
}

// Stop sends SIGTERM and waits until the child is reaped, killing it (its
// whole group with Group) if it has not exited after Grace. Stop on a
// stopped Server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.terminate()
	}
}

// Kill sends SIGKILL to the child (to its whole group with Group) and waits
// until it is reaped. Kill on a stopped Server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.Kill()
		s.proc = nil
	}
}

// Close stops the child, if it is still running, at the end of the test,
// and logs it if it had exited by itself meanwhile.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.proc == nil:
	case s.proc.Exited():
		s.logExited()
	default:
		s.terminate()
	}
}

// logExited notes a child that exited without being told to, and forgets
// it. The caller holds s.mu.
func (s *Server) logExited() {
	s.t.Logf("%s on %s had exited by itself: %v", s.spec.Name, s.addr, s.proc.Err())
	s.proc = nil
}

// terminate stops the running child. The caller holds s.mu.
func (s *Server) terminate() {
	if s.proc.Terminate(s.spec.Grace) {
		what := "it"
		if s.spec.Group {
			what = "its process group"
		}
		s.t.Logf("%s on %s ignored SIGTERM for %v; killed %s", s.spec.Name, s.addr, s.spec.Grace, what)
	}
	s.proc = nil
}

// launch starts the child on s.addr and waits until it is ready. On
// success it sets s.proc; on failure the child is gone and the error
// carries what it wrote, wrapping ErrBind if the port was taken. The
// caller holds s.mu.
func (s *Server) launch() error {
	sp := s.spec
	logOff, outOff := FileSize(sp.LogFile), FileSize(sp.OutFile)
	out, err := os.OpenFile(sp.OutFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", sp.Name, err)
	}
	cmd := sp.Command(s.addr)
	cmd.Dir = sp.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	p, err := start(cmd, sp.Group)
	_ = out.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("%s: start %s: %w", sp.Name, cmd.Path, err)
	}

	err = p.WaitReady(sp.Ready, sp.Poll, func() error { return sp.Probe(s.addr, p.Pid()) })
	if err != nil {
		exited := p.Exited()
		if !exited {
			p.Kill()
		}
		output := Tail(sp.OutFile, outOff) + Tail(sp.LogFile, logOff)
		if exited && bindFailed(output) {
			return fmt.Errorf("%s could not listen on %s, %w; output:\n%s", sp.Name, s.addr, ErrBind, output)
		}
		return fmt.Errorf("%s on %s: %w; output:\n%s", sp.Name, s.addr, err, output)
	}
	s.proc = p
	return nil
}

// bindFailed reports whether a child's output says its port was taken:
// both servers print the errno's text, and redis-server also its own
// words when it gives up.
func bindFailed(output string) bool {
	return strings.Contains(output, "Address already in use") ||
		strings.Contains(output, "Failed listening on port")
}
