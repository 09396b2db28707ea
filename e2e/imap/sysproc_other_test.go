//go:build !linux

package imap_test

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
