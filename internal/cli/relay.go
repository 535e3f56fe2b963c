// SPDX-License-Identifier: MIT

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/offload-nix/offload/internal/builder"
)

type relayCmd struct {
	Stop relayStopCmd `cmd:"" help:"Stop this user's connection relays."`
}

func (relayCmd) Help() string {
	return `The connection relay keeps SSH connections to builders, and store
sessions started ahead, for the hooks of one user (connect-persist; root's
serves nix-daemon's hooks). The first hook that needs it starts it, and it
exits after connect-persist without hooks. offload status -v shows it.

Example:
  sudo offload relay stop`
}

type relayStopCmd struct{}

func (relayStopCmd) Help() string {
	return `Makes the relay stop taking hooks (they connect by themselves, or the
next one starts a fresh relay), and those other offload binaries of the
same user left running; builds running through them go on to their end,
and they exit then. Run it as the user whose relay it is: root for
nix-daemon's hooks.

Example:
  sudo offload relay stop`
}

func (relayStopCmd) Run(rc *runContext) error {
	dir, err := rc.relayDir()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(rc.ctx, 5*time.Second)
	defer cancel()
	// This binary's relay, and those other offload binaries of this user
	// left (an upgrade's old one runs until it has been idle for
	// connect-persist): each in a directory of its own beside this one.
	dirs := []string{dir}
	parent := filepath.Dir(dir)
	if ents, err := os.ReadDir(parent); err == nil {
		for _, e := range ents {
			if d := filepath.Join(parent, e.Name()); e.IsDir() && d != dir {
				dirs = append(dirs, d)
			}
		}
	}
	stopped := 0
	for _, d := range dirs {
		err := builder.StopRelay(ctx, d)
		if builder.NoRelay(err) {
			continue
		}
		if err != nil {
			return failed(fmt.Errorf("relay stop: %w", err), "")
		}
		fmt.Fprintf(rc.env.Stdout, "relay at %s stopping\n", d)
		stopped++
	}
	if stopped == 0 {
		fmt.Fprintf(rc.env.Stdout, "no relay runs at %s\n", dir)
	}
	return nil
}

// testOnlyRelayDir, if set, is the relay directory, for tests that must
// not meet root's real one.
var testOnlyRelayDir string

// relayDir is this user's relay directory.
func (rc *runContext) relayDir() (string, error) {
	if testOnlyRelayDir != "" {
		return testOnlyRelayDir, nil
	}
	c, err := rc.settings()
	if err != nil {
		return "", err
	}
	dir := builder.RelayDir(rc.env.Getenv, c.StateDir())
	if dir == "" {
		return "", failed(errors.New("relay: no usable directory (its socket path would be too long)"), "")
	}
	return dir, nil
}

// writeRelay writes what the user's relay holds, one line per builder,
// for status -v; nothing when none runs.
func (rc *runContext) writeRelay(w io.Writer) {
	dir, err := rc.relayDir()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(rc.ctx, time.Second)
	defer cancel()
	sts, err := builder.RelayStatus(ctx, dir)
	if err != nil {
		return
	}
	fmt.Fprintf(w, "\nrelay %s:\n", dir)
	if len(sts) == 0 {
		fmt.Fprintf(w, "  no connections\n")
	}
	for _, st := range sts {
		fmt.Fprintf(w, "  %s: %d connections, %d sessions, %d started ahead\n", st.Target, st.Connections, st.Sessions, st.Ready)
	}
}
