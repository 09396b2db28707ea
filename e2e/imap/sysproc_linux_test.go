package imap_test

import "syscall"

// sysProcAttr makes the kernel kill a child if the test binary dies without
// running its cleanups (a panic or -timeout), so no mailgw is left behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
