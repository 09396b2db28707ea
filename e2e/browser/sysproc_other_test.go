//go:build !linux

package browser_test

import "syscall"

// sysProcAttr has nothing to add where Pdeathsig does not exist; the
// cleanups kill every child by its pid.
func sysProcAttr() *syscall.SysProcAttr { return nil }
