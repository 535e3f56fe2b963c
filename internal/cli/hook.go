// SPDX-License-Identifier: MIT

package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/offload-nix/offload/internal/hook"
	"github.com/offload-nix/offload/pkg/config"
)

// runHook runs hook mode. Nix ≥ 2.35 ends a hook with SIGTERM and SIGKILL
// 500 ms later; older Nix sends SIGKILL at once (Nix 2.35
// src/libstore/unix/build/hook-instance.cc, HookInstance::HookInstance).
// SIGTERM cancels ctx, which closes the builder session (the remote build
// ends) and removes a half-imported output; what SIGKILL leaves is cleaned
// by the next decision (slots) and by Nix (invalid outputs).
func runHook(ctx context.Context, verbosity int, env Env) int {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt, syscall.SIGHUP)
	defer stop()
	cfg, err := config.Load(env.Getenv)
	if err != nil {
		// A broken offload.conf must not stop every build: the hook
		// runs with the defaults and says why.
		fmt.Fprintf(env.Stderr, "@nix {\"action\":\"msg\",\"level\":1,\"msg\":%q}\n", "offload: warning: "+err.Error()+"; using the defaults")
		cfg = config.Default()
	}
	henv := hook.Env{
		Stdin:    env.Stdin,
		Stderr:   env.Stderr,
		Getenv:   env.Getenv,
		PPID:     os.Getppid(),
		CloseFD5: func() { syscall.Close(5) },
	}
	if env.BuildLog != nil {
		henv.BuildLog = env.BuildLog
	}
	if env.Stdin == os.Stdin {
		henv.Stdin = pollableStdin()
	}
	return hook.Main(ctx, verbosity, cfg, henv)
}

// pollableStdin returns stdin, made non-blocking when it is a pipe (Nix
// gives the hook one) so that Go's poller reads it and a read deadline can
// end a read waiting for Nix when SIGTERM comes. A terminal or a file is
// left alone: a terminal's flags are shared with the shell.
func pollableStdin() io.Reader {
	var st unix.Stat_t
	if unix.Fstat(0, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return os.Stdin
	}
	if unix.SetNonblock(0, true) != nil {
		return os.Stdin
	}
	return os.NewFile(0, os.Stdin.Name())
}
