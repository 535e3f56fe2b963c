// SPDX-License-Identifier: MIT

// Package hook is offload running as Nix's build hook: it reads Nix's
// settings and requests, chooses a builder for each derivation, and for an
// accepted one copies the inputs there, builds, and brings the outputs home
// into the local store before it exits. It reaches builders through
// internal/builder and assembles its decisions with internal/decide, as
// the commands do.
//
// The order matters (docs/internals.md): offload connects to the builder
// before it answers "# accept", because after the answer nothing can fall
// back to a local build; and it registers the outputs before it exits,
// because Nix then only checks that they are valid.
//
// Rules: every line on standard error goes through the hookproto.Logger;
// nothing is written to the build log (file descriptor 4) before accept;
// every slot, session and child process has one owner that releases it on
// every path, SIGTERM included; and a slot held by a SIGKILLed hook is
// reclaimed by the next decision on the host (pkg/slots).
package hook

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/localstore"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/wire"
)

// Exit codes the hook returns after accepting. Nix 2.8 … 2.28 reports 100
// as a build failure and 101 as a timeout (Nix 2.8
// src/libstore/build/derivation-goal.cc, DerivationGoal::buildDone); newer
// Nix treats every non-zero code alike (NixOS/nix 99d0dd3, Nix 2.29).
const (
	exitOK          = 0
	exitFailed      = 1
	exitBuildFailed = 100
	exitTimedOut    = 101
)

// Env is the hook's view of its process.
type Env struct {
	Stdin  io.Reader
	Stderr io.Writer
	// BuildLog is file descriptor 4: the build log Nix reads after accept.
	// Nil when absent (the log is then dropped).
	BuildLog io.Writer
	// CloseFD5 closes file descriptor 5, which Nix passes as a read end
	// of the build log pipe; a hook must not keep it. May be nil.
	CloseFD5 func()
	Getenv   func(string) string
	// PPID is the parent's process id (Nix), to find its nix-store.
	PPID int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// hook is the state of one hook process, kept across the try requests it
// declines or postpones.
type hook struct {
	env      Env
	cfg      *config.Config
	log      *hookproto.Logger
	in       *wire.Reader
	settings map[string]string
	machines []spec.Machine
	local    pick.Local
	opts     pick.Options
	over     []config.ExecEntry // system-exec
	state    *slots.File        // nil: no shared state (one warning said why)
	// links are the link measures without shared state (squash.go).
	linksMu  sync.Mutex
	links    map[string]slots.Link
	loads    []pick.Load
	snap     []slots.Builder
	gen      uint32
	decision pick.Decision
	// unreachable holds, per builder, why this process failed to reach
	// it: it is not tried again, as in Nix's own hook, on top of the
	// shared unhealthy mark.
	unreachable []string
	lastReq     hookproto.Request
	// spare is a connection kept across one re-decision (after reading a
	// builder's load), used again if the same builder is chosen.
	spare *builder.Conn
	// warm is a connection opened while waiting for a full builder
	// (warm.go).
	warm     *warmConn
	store    *localstore.Store
	storeErr error
	// execs backs the loads' Exec entries for the request's system.
	execs []pick.SystemExec
	// The request's inputs built lately per machine (affinity.go), and
	// its derivation as read for it.
	inputsFor string
	inputs    []int
	ring      []slots.Decision
	drvPath   string
	drv       *drv.Derivation
	// dial reaches a builder in place of builder.Dial (nil); tests give
	// it a builder of their own.
	dial func(ctx context.Context, m *spec.Machine) (*builder.Conn, error)
}

// Main runs the hook protocol until Nix closes its input or a build ends,
// and returns the exit code.
//
// cfg is offload's settings (pkg/config); the hook reads each where it
// uses it.
func Main(ctx context.Context, verbosity int, cfg *config.Config, env Env) int {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if dir := env.Getenv(builder.EnvRelay); dir != "" {
		if err := builder.ServeRelay(ctx, dir, cfg.Duration("connect-persist")); err != nil {
			return exitFailed
		}
		return exitOK
	}
	return newHook(verbosity, cfg, env).main(ctx)
}

// newHook makes the hook for env, whose Now and Getenv Main has set.
func newHook(verbosity int, cfg *config.Config, env Env) *hook {
	return &hook{
		env: env,
		cfg: cfg,
		log: hookproto.NewLogger(env.Stderr, verbosity),
		in:  wire.NewReader(bufio.NewReaderSize(env.Stdin, 64<<10)),
	}
}

// main is Main once the hook is made: it answers requests until one is
// built or Nix closes its input, and returns the exit code.
func (h *hook) main(ctx context.Context) int {
	defer func() {
		if h.state != nil {
			h.state.Close()
		}
	}()
	// Nix ends a hook waiting for its next request with SIGTERM: the
	// read must end then (a pollable stdin takes a deadline).
	if d, ok := h.env.Stdin.(interface{ SetReadDeadline(time.Time) error }); ok {
		defer context.AfterFunc(ctx, func() { d.SetReadDeadline(time.Now()) })()
	}
	code, err := h.run(ctx)
	if err != nil && ctx.Err() != nil {
		// Stopped by a signal, not failed: nobody reads the reason.
		err = nil
	}
	if err != nil {
		h.log.Errorf("%v", err)
	}
	return code
}

func (h *hook) run(ctx context.Context) (int, error) {
	var err error
	h.settings, err = hookproto.ReadSettings(h.in)
	if err != nil {
		return exitFailed, err
	}
	if err := h.setup(); err != nil {
		return exitFailed, err
	}
	var req hookproto.Request
	for {
		err := hookproto.ReadRequest(h.in, &req)
		if errors.Is(err, io.EOF) || errors.Is(err, hookproto.ErrNotTry) {
			return exitOK, nil
		}
		if err != nil {
			return exitFailed, err
		}
		code, done, err := h.try(ctx, &req)
		if done || err != nil {
			return code, err
		}
	}
}

// setup reads the machines and the local machine's description from the
// settings Nix sent: they, not the hook's own guess, are what Nix uses.
func (h *hook) setup() error {
	s := h.settings
	ms, warnings, err := spec.ParseBuilders(s["builders"], spec.Options{
		LocalSystem: s["system"],
		Lenient:     true,
		Name:        "builders",
	})
	for _, w := range warnings {
		// Lines that only Nix's own older build-remote reads differently
		// do not concern the hook that is running: offload is.
		if !w.OlderNix {
			h.log.Warnf("%s: %s", w.Source, w.Msg)
		}
	}
	if err != nil {
		// Lenient parsing fails only on what concerns every line (an
		// include cycle, an oversized file): no builder can be trusted.
		return fmt.Errorf("reading builders: %w", err)
	}
	h.machines = ms
	h.unreachable = make([]string, len(ms))
	h.loads = make([]pick.Load, len(ms))
	h.local = pick.Local{
		System:         s["system"],
		ExtraPlatforms: strings.Fields(s["extra-platforms"]),
		Features:       strings.Fields(s["system-features"]),
		SpeedFactor:    h.cfg.LocalSpeedFactor(),
		LoadPerCPU:     decide.LoadPerCPU(decide.Loadavg),
	}
	if h.opts, err = decide.Options(h.cfg, h.env.Getenv); err != nil {
		return err
	}
	if h.over, err = decide.SystemExec(h.cfg); err != nil {
		return err
	}
	if len(ms) > 0 {
		h.openState()
	}
	return nil
}

func (h *hook) openState() {
	f, err := decide.OpenSlots(h.cfg.StateDir(), h.machines, slots.Options{
		Logf:   h.log.Warnf,
		Getenv: h.env.Getenv,
	})
	if err != nil {
		h.log.Warnf("builder load is not shared with other builds on this machine: %v", err)
		return
	}
	h.state = f
}

// decide fills h.loads from the shared state and chooses.
func (h *hook) decide(req *pick.Request) {
	now := h.env.Now()
	if h.state != nil {
		// Free the slots of hooks that died without releasing them
		// (Nix ≤ 2.34 SIGKILLs a hook at once): Snapshot counts them
		// busy, and a builder full of dead slots would be postponed
		// forever, since Acquire (which also reclaims) is never reached.
		h.state.Reclaim()
		h.gen = h.state.Generation()
		h.snap = h.state.Snapshot(h.snap[:0])
	}
	if len(h.execs) != len(h.machines) {
		h.execs = make([]pick.SystemExec, len(h.machines))
	}
	decide.Loads(h.loads, h.execs, h.machines, h.snap, req.System, h.over, now)
	req.EmulationFailed = decide.EmulationFailed(h.state, req.DrvName, h.cfg.Duration("emulation-failure-memory"), now)
	if in := h.inputsThere(req.DrvPath); in != nil {
		for i := range h.loads {
			h.loads[i].InputsThere = in[i]
		}
	}
	for i, err := range h.unreachable {
		if err != "" {
			h.loads[i].Unreachable = true
			h.loads[i].LastError = err
		}
	}
	pick.Choose(&h.decision, h.machines, h.loads, *req, h.local, h.opts, now)
}

// recordDecision keeps the decision in the shared ring, for `offload
// status --log`: under nix-daemon it is the lasting answer to "why was this
// not offloaded?".
func (h *hook) recordDecision(drvName string, a pick.Answer, builder, why string) {
	if h.state == nil {
		return
	}
	h.state.LogDecision(slots.Decision{Time: h.env.Now(), Drv: drvName, Answer: a, Builder: builder, Reason: why})
}
