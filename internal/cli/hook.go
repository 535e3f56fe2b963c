// SPDX-License-Identifier: MIT

package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

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
	cfg, err := hookConfig(env)
	if err != nil {
		// A broken offload.conf must not stop every build: the hook
		// runs with the defaults and says why.
		fmt.Fprintf(env.Stderr, "@nix {\"action\":\"msg\",\"level\":1,\"msg\":%q}\n", "offload: warning: "+err.Error()+"; using the defaults")
		cfg, _ = hookConfigFrom(config.Default())
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
	return hook.Main(ctx, verbosity, cfg, henv)
}

func hookConfig(env Env) (hook.Config, error) {
	c, err := config.Load(env.Getenv)
	if err != nil {
		return hook.Config{}, err
	}
	return hookConfigFrom(c)
}
