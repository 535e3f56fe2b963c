// SPDX-License-Identifier: MIT

// Package cli is the offload command: it tells hook mode (Nix starting the
// binary as its build hook) from the commands people type, parses flags
// with kong, and prints every error once, as one line that says what to do.
//
// Rules: nothing here calls os.Exit (main does, with the code Main
// returns), and nothing writes to the real stdout or stderr except through
// Env, so tests run every command in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
)

// Exit codes of every command.
const (
	// ExitOK: done, or healthy.
	ExitOK = 0
	// ExitFailed: what was asked failed, or something is unhealthy.
	ExitFailed = 1
	// ExitUsage: a usage error, or unreadable configuration or state.
	ExitUsage = 2
)

// Version is set at link time by scripts/cross-build.sh
// (-X github.com/offload-nix/offload/internal/cli.Version=…).
var Version = "dev"

// Env is what a command may touch of the outside world.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// BuildLog is file descriptor 4 in hook mode (the build log pipe Nix
	// reads after accept); nil when absent.
	BuildLog io.WriteCloser
	// Getenv reads the environment.
	Getenv func(string) string
}

// OSEnv is the environment of the running process.
func OSEnv() Env {
	e := Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	if f := openFile(4, "build-log"); f != nil {
		e.BuildLog = f
	}
	return e
}

// openFile returns fd as a file if it is open, else nil. An *os.File is
// made only for an open descriptor: one made and dropped would close fd
// when the garbage collector finalizes it, whatever fd is by then (in a
// process without fd 4, such as the connection relay, one of its own
// connections).
func openFile(fd int, name string) *os.File {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), name)
}

// exitError carries an exit code other than ExitFailed up to the printer.
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks err as a usage or configuration error (exit 2).
func usageErr(err error, hint string) error { return &exitError{code: ExitUsage, err: err, hint: hint} }

// failed marks err as a failure (exit 1) with a hint.
func failed(err error, hint string) error { return &exitError{code: ExitFailed, err: err, hint: hint} }

// silentExit ends a command with code and prints nothing more.
type silentExit int

func (s silentExit) Error() string { return "exit " + strconv.Itoa(int(s)) }

// hookArgs reports whether args (without the program name) start hook mode,
// and the verbosity Nix passed. Nix 2.8 runs `offload <verbosity>`; newer
// Nix runs the words of the build-hook setting followed by the verbosity,
// e.g. `offload hook 3` (src/libstore/unix/build/hook-instance.cc,
// HookInstance::HookInstance; docs/internals.md). The last word is the
// verbosity; words before it may be "hook" and nothing else.
func hookArgs(args []string) (verbosity int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	v, err := strconv.Atoi(args[len(args)-1])
	if err != nil || v < 0 {
		return 0, false
	}
	switch {
	case len(args) == 1:
		return v, true
	case len(args) == 2 && args[0] == "hook":
		return v, true
	}
	return 0, false
}

// Main runs offload with args (args[0] is the program name) and returns the
// exit code.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	if len(args) > 0 {
		args = args[1:]
	}
	if v, ok := hookArgs(args); ok {
		return runHook(ctx, v, env)
	}

	// `offload status` alone runs in shell prompts and status bars, often
	// many times a second: skip building the flag parser for it.
	if len(args) == 1 && args[0] == "status" {
		rc := &runContext{ctx: ctx, env: env, global: &Globals{}}
		return report(env.Stderr, statusCmd{}.Run(rc))
	}

	var c CLI
	code := -1
	parser, err := kong.New(&c,
		kong.Name("offload"),
		kong.Description("Send Nix builds to other machines over SSH.\n\nNix runs offload as its build hook (build-hook = /path/to/offload in nix.conf); these commands show and check what it does."),
		kong.Writers(env.Stdout, env.Stderr),
		kong.Exit(func(c int) { code = c }),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"version": Version},
	)
	if err != nil {
		fmt.Fprintf(env.Stderr, "offload: %v\n", err)
		return ExitUsage
	}
	kctx, err := parser.Parse(args)
	if code >= 0 { // --help or --version
		return code
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "offload: %v\n", err)
		return ExitUsage
	}
	rc := &runContext{ctx: ctx, env: env, global: &c.Globals}
	err = kctx.Run(rc)
	return report(env.Stderr, err)
}

// report prints err once, as "offload: what failed: why" and optional hint
// lines, and returns the exit code.
func report(w io.Writer, err error) int {
	if err == nil {
		return ExitOK
	}
	var s silentExit
	if errors.As(err, &s) {
		return int(s)
	}
	code := ExitFailed
	var hint string
	var ee *exitError
	if errors.As(err, &ee) {
		code, hint = ee.code, ee.hint
	}
	fmt.Fprintf(w, "offload: %s\n", printableLines(strings.TrimPrefix(err.Error(), "offload: ")))
	if hint != "" {
		fmt.Fprintf(w, "offload: hint: %s\n", printableLines(hint))
	}
	return code
}

// runContext is passed to every command's Run method.
type runContext struct {
	ctx    context.Context
	env    Env
	global *Globals
}

// Globals are flags every command takes.
type Globals struct {
	Builders string `help:"Builders, as Nix's builders setting (default: from Nix's configuration)." placeholder:"SPEC"`
}

// CLI is offload's command line.
type CLI struct {
	Globals
	Version kong.VersionFlag `help:"Print the version and exit."`

	Hook     hookCmd     `cmd:"" help:"Run as Nix's build hook (Nix starts it; not for typing)." hidden:""`
	Status   statusCmd   `cmd:"" help:"What every builder is doing, in one line."`
	Machines machinesCmd `cmd:"" help:"List the builders as Nix reads them."`
	Pick     pickCmd     `cmd:"" help:"Show which builder a derivation would go to, and why."`
	Check    checkCmd    `cmd:"" help:"Check that every builder can be reached and is what the configuration says."`
	Drain    drainCmd    `cmd:"" help:"Stop sending builds to a builder."`
	Undrain  undrainCmd  `cmd:"" help:"Send builds to a drained builder again."`
	Setup    setupCmd    `cmd:"" help:"Check this machine's Nix set-up and say what to change."`
	Config   configCmd   `cmd:"" help:"Show offload's settings and where each comes from."`
	Relay    relayCmd    `cmd:"" help:"The connection relay: stop it."`
	VersionC versionCmd  `cmd:"" name:"version" help:"Print the version."`
}

type versionCmd struct{}

func (versionCmd) Help() string {
	return `Prints the version the binary was built as (git describe of its tree).

Example:
  offload version`
}

func (versionCmd) Run(rc *runContext) error {
	fmt.Fprintf(rc.env.Stdout, "offload %s\n", Version)
	return nil
}

type hookCmd struct {
	Verbosity int `arg:"" help:"Nix's verbosity."`
}

func (h hookCmd) Run(rc *runContext) error {
	return silentExit(runHook(rc.ctx, h.Verbosity, rc.env))
}

// warnf prints a warning for a command people type.
func (rc *runContext) warnf(format string, args ...any) {
	fmt.Fprintf(rc.env.Stderr, "offload: warning: %s\n", printableLines(fmt.Sprintf(format, args...)))
}

func notYet(what string) error {
	return usageErr(fmt.Errorf("%s: not implemented yet", what), "")
}
