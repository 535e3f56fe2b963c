// SPDX-License-Identifier: MIT

package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/remoteload"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// ReadLoad reads the builder's real state and platform with remoteload's
// fixed script, in a session of its own on c; ctx bounds it. A failed
// reading is all unknown, taken now, with why: stored all the same, other
// hooks decide as without a reading and do not read again at once.
func (c *Conn) ReadLoad(ctx context.Context) (pick.Reading, remoteload.Platform, error) {
	now := time.Now()
	s, err := c.Start(ctx, []string{remoteload.Command})
	if err != nil {
		return pick.ReadingUnknownAt(now), remoteload.Platform{}, err
	}
	defer s.Close()
	// The session ends with ctx, whichever connection it runs on.
	stop := context.AfterFunc(ctx, s.Close)
	defer stop()
	r, pl, err := remoteload.RunAll(s.Stdin, s.Stdout, s.Stderr)
	if err != nil {
		s.Close()
	}
	if werr := s.Wait(); werr != nil && r.Empty() {
		// A command that failed says more than its missing output.
		err = fmt.Errorf("%s: %w", remoteload.Command, werr)
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("no answer within the connect timeout: %w", err)
	}
	r.Time = now
	return r, pl, err
}

// probeCommands ask a builder for its version and configuration: `nix
// config show` on Nix 2.20 and later, `nix show-config` before (where `nix
// config` does not exist). Both need the nix-command feature on most
// versions. They are
// fixed words: nothing from the configuration goes into a remote shell line.
var (
	probeVersion    = []string{"nix", "--version"}
	probeConfigShow = []string{"nix", "--extra-experimental-features", "nix-command", "config", "show"}
	probeShowConfig = []string{"nix", "--extra-experimental-features", "nix-command", "show-config"}
)

// ProbeNix runs the probes on c. It returns the Nix version ("unknown" if
// the builder would not say) and the configuration, or nil and why not.
//
// The three commands run at once, and `nix config show` is preferred to
// `nix show-config` when both answer: every session on a builder can cost a
// login shell's start-up files (often the larger part of a check), so
// trying one after the other would add that to every builder on Nix before
// 2.20, where the first fails. On later Nix the second is a deprecated
// alias that still answers.
func (c *Conn) ProbeNix(ctx context.Context) (version string, conf map[string]string, why string) {
	probes := [][]string{probeVersion, probeConfigShow, probeShowConfig}
	outs := make([][]byte, len(probes))
	errs := make([]error, len(probes))
	var wg sync.WaitGroup
	for i, argv := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = c.runProbe(ctx, argv)
			if errs[i] != nil && ctx.Err() != nil {
				errs[i] = fmt.Errorf("no answer within the connect timeout: %w", errs[i])
			}
		}()
	}
	wg.Wait()
	version = "unknown"
	if errs[0] == nil {
		version = parseNixVersion(outs[0])
	}
	var whys []string
	for i := 1; i < len(probes); i++ {
		err := errs[i]
		if err == nil {
			conf = parseNixConfig(outs[i])
			if _, ok := conf["system"]; ok {
				return version, conf, ""
			}
			conf, err = nil, errors.New("no system setting in its output")
		}
		whys = append(whys, fmt.Sprintf("%s: %v", strings.Join(probes[i], " "), err))
	}
	return version, nil, "the builder would not say (" + strings.Join(whys, "; ") + ")"
}

// runProbe runs argv on c and returns its standard output (at most 1 MiB).
func (c *Conn) runProbe(ctx context.Context, argv []string) ([]byte, error) {
	s, err := c.Start(ctx, argv)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.Stdin.Close()
	tail := newTail(s.Stderr)
	out, rerr := io.ReadAll(io.LimitReader(s.Stdout, 1<<20))
	if rerr == nil && len(out) == 1<<20 {
		rerr = errors.New("more than 1 MiB of output")
	}
	if rerr != nil {
		s.Close()
	}
	err = s.Wait()
	if err == nil {
		err = rerr
	}
	if err != nil {
		if msg := tail.Last(); msg != "" {
			err = fmt.Errorf("%w: %s", err, firstLine(msg))
		}
		return nil, err
	}
	return out, nil
}

// parseNixVersion takes "nix (Nix) 2.8.0" or "nix (Lix, like Nix) 2.90.0"
// to "2.8.0" or "2.90.0 (Lix)".
func parseNixVersion(out []byte) string {
	line := firstLine(string(out))
	f := strings.Fields(line)
	if len(f) == 0 {
		return "unknown"
	}
	v := f[len(f)-1]
	if strings.Contains(line, "Lix") {
		v += " (Lix)"
	}
	return v
}

// parseNixConfig reads the "key = value" lines that nix show-config and
// nix config show print.
func parseNixConfig(out []byte) map[string]string {
	conf := map[string]string{}
	for line := range strings.SplitSeq(string(out), "\n") {
		k, v, ok := strings.Cut(line, " = ")
		if !ok {
			if k, ok = strings.CutSuffix(strings.TrimSpace(line), " ="); !ok {
				continue
			}
		}
		conf[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return conf
}

// Execs is how m runs each of its systems, as its platform pl says, for
// slots.File.SetExec.
func Execs(m *spec.Machine, pl remoteload.Platform) []slots.SystemExec {
	list := make([]slots.SystemExec, 0, len(m.Systems))
	for _, sys := range m.Systems {
		e, via := pl.Exec(sys)
		list = append(list, slots.SystemExec{System: sys, Exec: e,
			Qemu: e == pick.Emulated && strings.HasPrefix(via, "qemu-")})
	}
	return list
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
