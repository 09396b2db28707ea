package redistest

import "syscall"

// sysProcAttr makes the kernel kill redis-server if the test binary dies
// without running its cleanups (a panic or a -timeout), so no server is
// left behind. Pdeathsig fires when the starting thread exits; the Go
// runtime only ends threads of goroutines that exit while locked to them.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
