// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// cpuCmd runs args as a child with this process's fds 0-2, 4 and 5 (a
// build hook's: Nix's request, the hook's messages, the build log) and,
// once the child has exited but before it is reaped, appends to out the
// CPU seconds of the child alone ("user sys", all its threads, from
// /proc/PID/stat) and of the descendants it waited for ("cuser csys"). A
// child's own rusage, as /usr/bin/time reports it, would be their sum.
// It exits as the child did.
func cpuCmd(out string, args []string) int {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		return 1
	}
	defer f.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	for fd := 3; fd <= 5; fd++ {
		var file *os.File
		if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); e == 0 && fd != 3 {
			file = os.NewFile(uintptr(fd), "fd"+strconv.Itoa(fd))
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, file)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		return 1
	}
	// waitid(P_PID, pid, WEXITED|WNOWAIT): the child stays a zombie, whose
	// /proc/PID/stat still holds its times.
	const pPID, wNOWAIT = 1, 0x1000000
	var info [128]byte
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(cmd.Process.Pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|wNOWAIT, 0, 0)
		if e != syscall.EINTR {
			break
		}
	}
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat"); err == nil {
		// Fields after the command's name, which ends at the last ')':
		// state is the first, utime the 12th (field 14 of proc(5)).
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 15 {
			// USER_HZ is 100 on every Linux architecture Go supports.
			sec := func(f string) string {
				t, _ := strconv.ParseFloat(f, 64)
				return strconv.FormatFloat(t/100, 'f', 2, 64)
			}
			fmt.Fprintf(f, "%s %s %s %s\n", sec(fields[11]), sec(fields[12]), sec(fields[13]), sec(fields[14]))
		}
	}
	cmd.Wait()
	return cmd.ProcessState.ExitCode()
}
