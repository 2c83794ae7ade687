//go:build linux

package main

import (
	"os"
	"syscall"
)

// childSysProcAttr makes the kernel kill a component if the supervisor dies
// without cleaning up (e.g. SIGKILL). Setpgid keeps a Ctrl-C in the terminal
// from reaching the children directly so the supervisor can stop them in
// order.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// setParentDeathSignal asks the kernel to send sig to this process when its
// parent exits; if the parent is already gone, exit right away.
func setParentDeathSignal(sig syscall.Signal) error {
	ppid := os.Getppid()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(sig), 0); errno != 0 {
		return errno
	}
	if os.Getppid() != ppid {
		_ = syscall.Kill(os.Getpid(), sig)
	}
	return nil
}
