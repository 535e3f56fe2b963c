// SPDX-License-Identifier: MIT

// Command benchtool is the helper of bench/run.sh and bench/slowlink.sh.
// It has four modes:
//
//   - With BENCH_HOOK set, it is a build hook shim: Nix runs it as its
//     build hook; it starts a monitor process and then execs the hook named
//     by BENCH_HOOK in its own place, with the same arguments, parent and
//     file descriptors, except that fd 2 goes to the monitor, which relays
//     it to Nix byte for byte. The monitor appends to BENCH_RAW, under the
//     tag BENCH_TAG, the time from the shim's start to the first "# "
//     answer line and, when the hook exits, the peak resident set size of
//     the hook process and of the hook with its descendants (VmHWM from
//     /proc, sampled every 5 ms; for the tree, the largest sum over the
//     processes alive at one sample), and the time at which the hook's
//     stderr closed.
//   - "benchtool time N CMD..." runs CMD N times and prints the median wall
//     time in milliseconds and the largest peak RSS in KiB (getrusage of
//     the child).
//   - "benchtool cpu OUT CMD..." runs CMD (a build hook: it keeps fds 4
//     and 5) and appends the CPU seconds of CMD's own process and of the
//     children it waited for to OUT (bench/slowlink.sh).
//   - "benchtool report RAW META MD SVG" reads the records and writes the
//     results table and chart.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if spec := os.Getenv("BENCH_MONITOR"); spec != "" {
		os.Exit(monitor(spec))
	}
	if real := os.Getenv("BENCH_HOOK"); real != "" {
		os.Exit(shim(real))
	}
	if len(os.Args) >= 4 && os.Args[1] == "time" {
		n, err := strconv.Atoi(os.Args[2])
		if err == nil {
			err = timeCmd(n, os.Args[3:])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtool:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) >= 4 && os.Args[1] == "cpu" {
		os.Exit(cpuCmd(os.Args[2], os.Args[3:]))
	}
	if len(os.Args) == 6 && os.Args[1] == "report" {
		if err := report(os.Args[2], os.Args[3], os.Args[4], os.Args[5]); err != nil {
			fmt.Fprintln(os.Stderr, "benchtool:", err)
			os.Exit(1)
		}
		return
	}
	fmt.Fprintln(os.Stderr, "usage: benchtool time N CMD... | benchtool cpu OUT CMD... | benchtool report RAW META MD SVG (or BENCH_HOOK=... as a build hook)")
	os.Exit(2)
}

// shim becomes the real hook (same process, so the hook's parent is Nix
// and it keeps fds 0, 1, 4 and 5 as Nix made them) after starting a
// monitor that receives the hook's stderr through a pipe and relays it to
// Nix byte for byte.
func shim(real string) int {
	start := time.Now().UnixNano()
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		return 1
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "BENCH_HOOK=") {
			env = append(env, e)
		}
	}
	mon := &exec.Cmd{
		Path:   "/proc/self/exe",
		Args:   []string{"benchtool-monitor"},
		Env:    append(env, fmt.Sprintf("BENCH_MONITOR=%d,%d", os.Getpid(), start)),
		Stdin:  pr,
		Stdout: os.Stderr,
		Stderr: os.Stderr,
	}
	// The monitor must not hold the build log pipes (fds 4 and 5): Nix
	// waits for their end. The hook needs them open across exec.
	setCloexec(true)
	err = mon.Start()
	setCloexec(false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		return 1
	}
	if err := syscall.Dup3(int(pw.Fd()), 2, 0); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		return 1
	}
	var noMon []string
	for _, e := range env {
		if !strings.HasPrefix(e, "BENCH_") {
			noMon = append(noMon, e)
		}
	}
	err = syscall.Exec(real, append([]string{real}, os.Args[1:]...), noMon)
	fmt.Fprintln(os.Stderr, "benchtool: exec", real+":", err)
	return 1
}

func setCloexec(on bool) {
	flag := uintptr(0)
	if on {
		flag = syscall.FD_CLOEXEC
	}
	for _, fd := range []uintptr{4, 5} {
		syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFD, flag)
	}
}

// monitor relays the hook's stderr from stdin to stdout, records the time
// of the first "# " line, and samples the hook's process tree until the
// hook is gone.
func monitor(spec string) int {
	var pid int
	var start int64
	if _, err := fmt.Sscanf(spec, "%d,%d", &pid, &start); err != nil {
		return 1
	}
	tag := os.Getenv("BENCH_TAG")
	raw, err := os.OpenFile(os.Getenv("BENCH_RAW"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return 1
	}
	record := func(metric string, value any, note string) {
		// One write per line: O_APPEND keeps concurrent hooks' lines whole.
		raw.WriteString(fmt.Sprintf("%s\t%s\t%v\t%s\n", tag, metric, value, note))
	}
	// Non-blocking, so that reads can time out once the hook is gone but
	// a descendant still holds its stderr.
	syscall.SetNonblock(0, true)
	in := os.NewFile(0, "hook-stderr")

	peaks := map[int]int{} // pid → latest VmHWM (KiB)
	names := map[int]string{}
	treeKB := 0    // largest sum of VmHWM over processes alive together
	var live []int // at that sample
	stop := make(chan struct{})
	sampled := make(chan struct{})
	self := os.Getpid()
	go func() {
		defer close(sampled)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var alive []int
			if !sampleTree(pid, self, peaks, names, &alive) {
				in.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				return
			}
			sum := 0
			for _, p := range alive {
				sum += peaks[p]
			}
			if sum > treeKB {
				treeKB, live = sum, alive
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()

	buf := make([]byte, 64<<10)
	var line []byte // start of the current line, at most 64 bytes
	answered := false
	for {
		n, err := in.Read(buf)
		b := buf[:n]
		for _, c := range b {
			if c == '\n' {
				if !answered && len(line) >= 2 && line[0] == '#' && line[1] == ' ' {
					answered = true
					record("answer_ms", ms(time.Duration(time.Now().UnixNano()-start)), strings.TrimSpace(string(line[2:])))
				}
				line = line[:0]
				continue
			}
			if len(line) < 64 {
				line = append(line, c)
			}
		}
		if n > 0 {
			os.Stdout.Write(b)
		}
		if err != nil {
			break
		}
	}
	done := time.Now().UnixNano()
	close(stop)
	<-sampled
	var parts []string
	for _, p := range live {
		parts = append(parts, fmt.Sprintf("%s:%d", names[p], peaks[p]))
	}
	sort.Strings(parts)
	record("done_ms", ms(time.Duration(done-start)), "")
	record("hook_rss_kb", peaks[pid], names[pid])
	record("tree_rss_kb", treeKB, strings.Join(parts, " "))
	raw.Close()
	return 0
}

// sampleTree records VmHWM of pid and its descendants and appends their
// pids to alive.
// It reports false when pid itself has exited (gone or a zombie). The
// monitor (skip) is left out.
func sampleTree(pid, skip int, peaks map[int]int, names map[int]string, alive *[]int) bool {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	if strings.Contains(string(status), "\nState:\tZ") {
		return false
	}
	*alive = append(*alive, pid)
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "Name:"); ok {
			names[pid] = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if kb > peaks[pid] {
				peaks[pid] = kb
			}
		}
	}
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	for _, t := range tasks {
		kids, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
		for _, k := range strings.Fields(string(kids)) {
			if c, err := strconv.Atoi(k); err == nil && c != skip {
				sampleTree(c, skip, peaks, names, alive)
			}
		}
	}
	return true
}

func ms(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 2, 64) }

func timeCmd(n int, args []string) error {
	var walls []float64
	maxKB := int64(0)
	for i := 0; i < n; i++ {
		cmd := exec.Command(args[0], args[1:]...)
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		walls = append(walls, d.Seconds()*1000)
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && int64(ru.Maxrss) > maxKB {
			maxKB = int64(ru.Maxrss)
		}
	}
	fmt.Printf("%.2f %d\n", median(walls), maxKB)
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
