//go:build !linux

package main

import (
	"errors"
	"syscall"
)

func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func setParentDeathSignal(sig syscall.Signal) error {
	return errors.New("not supported on this OS")
}
