// SPDX-License-Identifier: MIT

package cli

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/wire"
)

func run(t *testing.T, stdin []byte, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), append([]string{"offload"}, args...), Env{
		Stdin:  bytes.NewReader(stdin),
		Stdout: &out,
		Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return out.String(), errb.String(), code
}

func TestHookArgs(t *testing.T) {
	for _, tt := range []struct {
		args []string
		v    int
		ok   bool
	}{
		{[]string{"3"}, 3, true},                    // Nix 2.8: execv(build-hook, {basename, verbosity})
		{[]string{"hook", "7"}, 7, true},            // Nix ≥ 2.12 with build-hook = /path/offload hook
		{[]string{"0"}, 0, true},                    // verbosity 0 (--quiet)
		{[]string{"hook"}, 0, false},                // typed by a person: kong says the argument is missing
		{[]string{"status"}, 0, false},              // a command
		{[]string{"machines", "3"}, 0, false},       // a command with a stray number is not the hook
		{[]string{"-1"}, 0, false},                  // not a verbosity
		{[]string{"extra", "words", "3"}, 0, false}, // only "hook" may stand before the verbosity
		{[]string{}, 0, false},
	} {
		v, ok := hookArgs(tt.args)
		if v != tt.v || ok != tt.ok {
			t.Errorf("hookArgs(%q) = %d, %v; want %d, %v", tt.args, v, ok, tt.v, tt.ok)
		}
	}
}

// settingsBlock is what Nix writes first on the hook's stdin.
func settingsBlock(t *testing.T, settings map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := wire.NewWriter(&buf)
	hookproto.WriteSettings(w, settings, nil)
	w.Flush()
	return buf.Bytes()
}

// With no builders at all the hook answers decline-permanently, as Nix's
// own hook does, so Nix stops asking for the rest of the build.
func TestHookModeNoBuildersNix28(t *testing.T) {
	in := settingsBlock(t, map[string]string{"builders": "", "system": "x86_64-linux"})
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	hookproto.WriteRequest(w, &hookproto.Request{System: "x86_64-linux", DrvPath: "/nix/store/00000000000000000000000000000000-x.drv"})
	w.Flush()
	in = append(in, b.Bytes()...)
	for _, args := range [][]string{{"3"}, {"hook", "3"}} {
		stdout, stderr, code := run(t, in, map[string]string{"OFFLOAD_STATE_DIR": t.TempDir()}, args...)
		if code != 0 || stdout != "" {
			t.Errorf("offload %q: code %d, stdout %q", args, code, stdout)
		}
		if !strings.Contains(stderr, "# decline-permanently\n") {
			t.Errorf("offload %q: stderr %q, want # decline-permanently", args, stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
			if !strings.HasPrefix(line, "# ") && !strings.HasPrefix(line, "@nix {") {
				t.Errorf("offload %q: stderr line %q is neither an answer nor @nix JSON", args, line)
			}
		}
	}
}

// Nix closing the hook's input at once (it had nothing to ask) ends the
// hook quietly.
func TestHookModeEOF(t *testing.T) {
	_, stderr, code := run(t, settingsBlock(t, map[string]string{"builders": "ssh://b1 x86_64-linux"}), map[string]string{"OFFLOAD_STATE_DIR": t.TempDir()}, "3")
	if code != 0 || strings.Contains(stderr, "# ") {
		t.Errorf("code %d, stderr %q", code, stderr)
	}
	_, stderr, code = run(t, []byte{1, 0, 0}, nil, "3")
	if code != 1 || !strings.Contains(stderr, "@nix") {
		t.Errorf("truncated settings: code %d, stderr %q; want 1 and an @nix message", code, stderr)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{[]string{"version"}, 0, "offload dev", ""},
		{[]string{"--version"}, 0, "dev", ""},
		{[]string{"--help"}, 0, "Usage: offload", ""},
		{[]string{"no-such-command"}, 2, "", "offload: unexpected argument no-such-command"},
		{[]string{"machines", "--builders", "ssh://b1 x86_64-linux - 8 2 kvm"}, 0, "ssh://b1", ""},
		{[]string{"machines", "--builders", "ssh://b1 x86_64-linux - eight"}, 2, "", `offload: builders:1: max jobs "eight": not a whole number`},
		{[]string{"machines", "--json", "--builders", "b2 aarch64-linux"}, 0, `"uri": "ssh://b2"`, ""},
		{[]string{"drain", "b9", "--builders", "ssh://b1 x86_64-linux"}, 2, "", "offload: "},
		{[]string{"config"}, 0, "connect-timeout", ""},
	} {
		stdout, stderr, code := run(t, nil, map[string]string{"OFFLOAD_STATE_DIR": t.TempDir()}, tt.args...)
		if code != tt.code || !strings.Contains(stdout, tt.out) || !strings.Contains(stderr, tt.err) {
			t.Errorf("offload %q = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q", tt.args, code, stdout, stderr, tt.code, tt.out, tt.err)
		}
	}
}

func TestDrainUndrain(t *testing.T) {
	env := map[string]string{"OFFLOAD_STATE_DIR": t.TempDir()}
	spec := "ssh://root@b1 x86_64-linux - 2; ssh://b2 x86_64-linux"
	for _, tt := range []struct {
		args []string
		out  string
	}{
		{[]string{"drain", "b1", "--builders", spec}, "drained ssh://root@b1"},
		{[]string{"undrain", "ssh://root@b1", "--builders", spec}, "undrained ssh://root@b1"},
	} {
		stdout, stderr, code := run(t, nil, env, tt.args...)
		if code != 0 || !strings.Contains(stdout, tt.out) {
			t.Errorf("offload %q = %d, %q, %q", tt.args, code, stdout, stderr)
		}
	}
}

// TestOpenFileClosedFD: asking for a descriptor that is not open (fd 4
// in the connection relay, which inherits none) must leave nothing
// behind that closes that number later. Before, a dropped *os.File's
// finalizer closed it at the next collection, when it had become one of
// the relay's own connections.
func TestOpenFileClosedFD(t *testing.T) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	fd, err := syscall.Dup(p[1]) // a free number, kept free below
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	if f := openFile(fd, "build-log"); f != nil {
		t.Fatalf("openFile(%d) of a closed descriptor = %v, want nil", fd, f)
	}
	// The number is taken again, by something else.
	if err := syscall.Dup3(p[1], fd, syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	syscall.Close(p[1])
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond) // finalizers run on their own goroutine
	if _, err := syscall.Write(fd, []byte("x")); err != nil {
		t.Errorf("fd %d, reused after openFile, was closed behind its owner's back: %v", fd, err)
	}
}
