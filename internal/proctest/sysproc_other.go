//go:build !linux

package proctest

import "syscall"

// groupKill is false where a leader cannot be waited for without reaping
// it: only the leader is signalled.
const groupKill = false

// sysProcAttr has no Pdeathsig to set here; the cleanups kill every child
// by its pid.
func sysProcAttr(group bool) *syscall.SysProcAttr {
	if group {
		return &syscall.SysProcAttr{Setpgid: true}
	}
	return nil
}

func killGroup(int) {}

func waitExited(int) {}
