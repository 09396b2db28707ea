package dovecottest

import (
	"syscall"
	"unsafe"
)

// groupKill says the whole process group can be killed safely once the
// master has exited: waitExited leaves it unreaped.
const groupKill = true

// sysProcAttr puts Dovecot in a process group of its own, so Kill and the
// cleanup reach every process it spawned and nothing else, and makes the
// kernel kill the master if the test binary dies without running its
// cleanups (a panic or a -timeout); its children then exit on their own
// when they lose the master. Pdeathsig fires when the starting thread
// exits; the Go runtime only ends threads of goroutines that exit while
// locked to them.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitid(2) constants, from <sys/wait.h>.
const (
	pPID    = 1
	wExited = 0x4
	wNoWait = 0x1000000
)

// waitExited blocks until process pid has exited, without reaping it:
// while it is a zombie its id cannot be reused, so its process group id
// still names only processes this package started.
func waitExited(pid int) {
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), wExited|wNoWait, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}
