// SPDX-License-Identifier: MIT

package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/offload-nix/offload/internal/hook"
	"github.com/offload-nix/offload/pkg/pick"
)

// runHook runs hook mode. Nix ≥ 2.35 ends a hook with SIGTERM and SIGKILL
// 500 ms later; older Nix sends SIGKILL at once (nix-protocols.md §2.9).
// SIGTERM cancels ctx, which closes the builder session (the remote build
// ends) and removes a half-imported output; what SIGKILL leaves is cleaned
// by the next decision (slots) and by Nix (invalid outputs).
func runHook(ctx context.Context, verbosity int, env Env) int {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt, syscall.SIGHUP)
	defer stop()
	cfg := hookConfig(env)
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

func hookConfig(env Env) hook.Config {
	cfg := hook.Config{
		ConnectTimeout:      10 * time.Second,
		StateDir:            "/nix/var/nix/offload",
		Emulation:           pick.EmulationPrefer,
		EmulationPenalty:    1,
		LocalSpeedFactor:    1,
		UnhealthyBackoff:    30 * time.Second,
		UnhealthyBackoffMax: 10 * time.Minute,
		PostponeWait:        2 * time.Second,
	}
	if v := env.Getenv("OFFLOAD_STATE_DIR"); v != "" {
		cfg.StateDir = v
	}
	if v := env.Getenv("OFFLOAD_CONNECT_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			cfg.ConnectTimeout = d
		}
	}
	return cfg
}
