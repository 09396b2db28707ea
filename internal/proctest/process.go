package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a started child and the goroutine that reaps it.
type Process struct {
	Cmd *exec.Cmd

	group bool          // in a process group of its own, killed as a whole
	done  chan struct{} // closed once the process has exited and been reaped
	err   error         // cmd.Wait's result; read only after done is closed
}

// Start starts cmd, which the kernel kills if the test binary dies without
// running its cleanups (where the system can do that), and reaps it in the
// background. Signals go to its pid only.
func Start(cmd *exec.Cmd) (*Process, error) { return start(cmd, false) }

// StartGroup is Start with cmd in a process group of its own, for a server
// that spawns processes: Kill ends the whole group and nothing else. Where
// the system allows it, once the leader has exited, and before it is
// reaped, whatever is left of its group is killed, so no child outlives
// it.
func StartGroup(cmd *exec.Cmd) (*Process, error) { return start(cmd, true) }

func start(cmd *exec.Cmd, group bool) (*Process, error) {
	cmd.SysProcAttr = sysProcAttr(group)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, group: group, done: make(chan struct{})}
	go func() {
		if group && groupKill {
			// Not reaped yet, the leader's id, which is the group's,
			// cannot have been handed to another process.
			waitExited(cmd.Process.Pid)
			killGroup(cmd.Process.Pid)
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Done is closed once the child has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is cmd.Wait's result; call it only after Done is closed.
func (p *Process) Err() error { return p.err }

// Exited reports whether the child has exited and been reaped.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the child, by pid.
func (p *Process) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Kill sends SIGKILL to the child, or to its whole group if started with
// StartGroup where groups can be killed safely, and waits until it is
// reaped.
func (p *Process) Kill() {
	if p.group && groupKill {
		killGroup(p.Pid())
	} else {
		_ = p.Cmd.Process.Kill()
	}
	<-p.done
}

// Terminate sends SIGTERM and waits until the child is reaped, killing it
// as Kill does if it has not exited after grace. It reports whether it had
// to kill.
func (p *Process) Terminate(grace time.Duration) (killed bool) {
	_ = p.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return false
	case <-timer.C:
		p.Kill()
		return true
	}
}

// WaitReady calls probe every interval until it succeeds, the child exits,
// or timeout passes, and returns nil or why the child is not ready.
func (p *Process) WaitReady(timeout, interval time.Duration, probe func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			return fmt.Errorf("exited during start-up: %v", p.err)
		}
		err := probe()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		select {
		case <-p.done:
		case <-time.After(interval):
		}
	}
}
