//go:build !linux

package dovecottest

import "syscall"

// groupKill is false where the master cannot be waited for without
// reaping it: only the master is signalled.
const groupKill = false

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func waitExited(int) {}
