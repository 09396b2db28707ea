package proctest

import (
	"syscall"
	"unsafe"
)

// groupKill says a process group can be killed safely once its leader
// has exited: waitExited leaves the leader unreaped.
const groupKill = true

// sysProcAttr makes the kernel kill a child if the test binary dies without
// running its cleanups (a panic or a -timeout), so nothing is left behind,
// and with group puts it in a process group of its own. A group's other
// members exit on their own when they lose their leader. Pdeathsig fires
// when the starting thread exits; the Go runtime only ends threads of
// goroutines that exit while locked to them.
func sysProcAttr(group bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: group, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to the process group pid.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// waitid(2) constants, from <sys/wait.h>.
const (
	pPID    = 1
	wExited = 0x4
	wNoWait = 0x1000000
)

// waitExited blocks until process pid has exited, without reaping it:
// while it is a zombie its id cannot be reused, so its process group id
// still names only processes the test started.
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
