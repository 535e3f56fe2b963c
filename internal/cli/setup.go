// SPDX-License-Identifier: MIT

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/offload-nix/offload/pkg/nixconf"
	"github.com/offload-nix/offload/pkg/spec"
)

type setupCmd struct {
	Write bool   `help:"Make the local changes: set build-hook in nix.conf (a backup is kept)."`
	Force bool   `help:"With --write, replace a build-hook that names another program."`
	JSON  bool   `help:"Print the findings as JSON."`
	Hook  string `help:"Path of the offload binary Nix should run (default: this one)." placeholder:"PATH"`
}

func (setupCmd) Help() string {
	return `Looks at this machine's Nix (version, single-user or nix-daemon, which
nix.conf is in force, the builders) and prints, step by step, what is
missing and the exact line that fixes it. With --write it sets build-hook
in nix.conf itself (once; a backup of the file is kept). It never restarts
nix-daemon: it says when that is needed.

Example:
  offload setup
  sudo offload setup --write`
}

// step is one finding of setup.
type step struct {
	OK   bool   `json:"ok"`
	What string `json:"what"`
	Fix  string `json:"fix,omitempty"`
}

type setupReport struct {
	NixVersion string `json:"nixVersion"`
	Daemon     bool   `json:"daemon"`
	NixConf    string `json:"nixConf"`
	Hook       string `json:"hook"`
	Steps      []step `json:"steps"`
	Changed    bool   `json:"changed"`
}

func (c setupCmd) Run(rc *runContext) error {
	r := &setupReport{}
	hookPath := c.Hook
	if hookPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return failed(fmt.Errorf("finding this program's path: %w", err), "pass --hook /path/to/offload")
		}
		hookPath = exe
	}
	if abs, err := filepath.Abs(hookPath); err == nil {
		hookPath = abs
	}
	r.Hook = hookPath
	add := func(ok bool, what, fix string) { r.Steps = append(r.Steps, step{OK: ok, What: what, Fix: fix}) }

	// 1. Nix itself.
	r.NixVersion = nixVersion(rc.ctx)
	switch {
	case r.NixVersion == "":
		add(false, "Nix not found on PATH", "install Nix first (Debian: apt-get install nix-bin)")
	case strings.Contains(strings.ToLower(r.NixVersion), "lix"):
		add(false, "found "+r.NixVersion+": Lix ≥ 2.94 talks to its build hook in Cap'n Proto RPC, which offload does not speak", "use Nix, or Lix's own remote builds")
	default:
		add(true, "found "+r.NixVersion, "")
	}
	r.Daemon = usesDaemon(rc.env.Getenv)
	if r.Daemon {
		add(true, "builds run through nix-daemon: the hook runs as root, with root's SSH keys, ~/.ssh/config and known_hosts", "")
	} else {
		add(true, "single-user Nix: the hook runs as you, with your SSH keys and ~/.ssh/config", "")
	}

	// 2. build-hook in nix.conf.
	conf, err := nixconf.Load(rc.env.Getenv)
	if err != nil {
		return usageErr(fmt.Errorf("reading Nix's configuration: %w", err), "fix the line it names")
	}
	r.NixConf = filepath.Join(conf.ConfDir, "nix.conf")
	current, origin, set := conf.Get("build-hook")
	wantLine := "build-hook = " + hookPath
	hookOK := set && strings.Fields(current) != nil && strings.Fields(current)[0] == hookPath
	switch {
	case hookOK:
		add(true, "build-hook is offload ("+origin+")", "")
	case set && current != "" && !c.Force:
		add(false, fmt.Sprintf("build-hook is %q (%s), not offload", current, origin),
			fmt.Sprintf("replace that line with %q (offload setup --write --force does it)", wantLine))
	default:
		fix := fmt.Sprintf("add %q to %s", wantLine, r.NixConf)
		if !r.Daemon && os.Geteuid() != 0 {
			fix += fmt.Sprintf(", or for your user only: export NIX_CONFIG=%q", wantLine)
		}
		add(false, "build-hook does not name offload", fix)
	}

	// 3. Builders.
	setting, borigin := conf.Builders(rc.env.Getenv)
	ms, warnings, perr := spec.ParseBuilders(setting, spec.Options{})
	switch {
	case perr != nil:
		add(false, "builders ("+borigin+"): "+perr.Error(), "fix that line; `offload machines` shows how it is read")
	case len(ms) == 0:
		add(false, "no builders ("+borigin+" is empty or missing)",
			fmt.Sprintf("list builders in %s, one per line: ssh://root@build1 x86_64-linux,aarch64-linux - 8 4 big-parallel - <base64 host key>", filepath.Join(conf.ConfDir, "machines")))
	default:
		add(true, fmt.Sprintf("%d builder(s) from %s", len(ms), borigin), "")
		for _, w := range append(warnings, spec.Lint(ms, os.Stat)...) {
			add(false, w.Source+": "+w.Msg, "")
		}
		for _, m := range ms {
			if m.PublicHostKey == "" {
				add(false, m.Name+": no host key pinned in the machines line; the known_hosts of the user the hook runs as must have it",
					"add field 8: base64 -w0 /etc/ssh/ssh_host_ed25519_key.pub (run on "+m.Name+")")
			}
		}
		add(true, "on each builder the SSH user must be root or in trusted-users (or require-sigs = false there)", "run `offload check` to see each builder's answer")
	}
	if v, _, ok := conf.Get("max-jobs"); ok && v != "0" {
		add(true, "max-jobs = "+v+": builds may also run here; set max-jobs = 0 to send every build away", "")
	}

	// 4. --write.
	if c.Write && !hookOK {
		if set && current != "" && !c.Force {
			return failed(fmt.Errorf("build-hook is already %q (%s)", current, origin), "pass --force to replace it")
		}
		if err := writeHookLine(r.NixConf, wantLine); err != nil {
			return failed(err, "run as root, or add the line yourself")
		}
		r.Changed = true
		add(true, "wrote "+wantLine+" to "+r.NixConf+" (backup: "+r.NixConf+".before-offload)", "")
		if r.Daemon {
			add(false, "nix-daemon reads nix.conf when it starts", "restart it: systemctl restart nix-daemon")
		}
	}

	if c.JSON {
		enc := json.NewEncoder(rc.env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		for i, s := range r.Steps {
			mark := "✓"
			if !s.OK {
				mark = "✗"
			}
			fmt.Fprintf(rc.env.Stdout, "%2d. %s %s\n", i+1, mark, s.What)
			if s.Fix != "" {
				fmt.Fprintf(rc.env.Stdout, "       fix: %s\n", s.Fix)
			}
		}
	}
	for _, s := range r.Steps {
		if !s.OK && s.Fix != "" {
			return silentExit(ExitFailed)
		}
	}
	return nil
}

// writeHookLine sets build-hook in the nix.conf at path: it replaces an
// existing build-hook line (never adds a second) or appends one, keeping a
// backup of the file as it was, and writes the new file atomically.
func writeHookLine(path, line string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var out bytes.Buffer
	replaced := false
	for _, l := range strings.SplitAfter(string(old), "\n") {
		if l == "" {
			continue
		}
		key, _, _ := strings.Cut(strings.TrimSpace(l), "=")
		if strings.TrimSpace(key) == "build-hook" {
			if !replaced {
				out.WriteString(line + "\n")
				replaced = true
			}
			continue
		}
		out.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			out.WriteString("\n")
		}
	}
	if !replaced {
		out.WriteString(line + "\n")
	}
	if bytes.Equal(out.Bytes(), old) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if old != nil {
		backup := path + ".before-offload"
		if _, err := os.Stat(backup); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(backup, old, 0o644); err != nil {
				return fmt.Errorf("keeping a backup: %w", err)
			}
		}
	}
	tmp := path + ".offload-tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func nixVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nix-store", "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// usesDaemon tells whether this user's builds go through nix-daemon: as
// Nix's `auto` store does, when the store is not writable and the socket
// exists, or when NIX_REMOTE says so.
func usesDaemon(getenv func(string) string) bool {
	if r := getenv("NIX_REMOTE"); r != "" {
		return r == "daemon" || strings.HasPrefix(r, "unix://")
	}
	if _, err := os.Stat("/nix/var/nix/daemon-socket/socket"); err != nil {
		return false
	}
	return os.Geteuid() != 0
}
