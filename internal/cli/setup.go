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
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/nixconf"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
)

// Rules: setup changes nothing but nix.conf, and that only with --write
// (a backup is kept, a build-hook line is never doubled); it never
// restarts a service. On builders it adds at most one tiny unreferenced
// path (the trust probe), the same path every time, which the builder's
// garbage collector removes.

type setupCmd struct {
	Write   bool   `help:"Make the local changes: set build-hook in nix.conf (a backup is kept)."`
	Force   bool   `help:"With --write, replace a build-hook that names another program."`
	JSON    bool   `help:"Print the findings as JSON."`
	Hook    string `help:"Path of the offload binary Nix should run (default: this one)." placeholder:"PATH"`
	Offline bool   `help:"Do not connect to the builders (skips the trust check)."`
}

func (setupCmd) Help() string {
	return `Looks at this machine's Nix (version, single-user or nix-daemon, which
nix.conf is in force, the builders) and prints, step by step, what is
missing and the exact line that fixes it. With --write it sets build-hook
in nix.conf itself (once; a backup of the file is kept). It never restarts
nix-daemon: it says when that is needed.

It connects to each builder as the hook would and checks, by adding a tiny
unsigned path over the serve protocol, that the builder's Nix trusts the
SSH user (trusted-users, or require-sigs = false there): an untrusted user
cannot upload a build's inputs. --offline skips that.

Exit code 0 when nothing is missing, 1 when something is, 2 on bad
configuration.

Example:
  offload setup
  sudo offload setup --write`
}

// step is one finding of setup. A step that is not OK and has a Fix makes
// setup exit 1; a Hint is advice that changes nothing of that.
type step struct {
	OK   bool   `json:"ok"`
	What string `json:"what"`
	Fix  string `json:"fix,omitempty"`
	Hint string `json:"hint,omitempty"`
}

// builderTrust is what setup found about one builder's trust in the SSH
// user.
type builderTrust struct {
	Name string `json:"name"`
	URI  string `json:"uri"`
	// Trusted is "yes", "no" or "unknown" (not connected: see Detail).
	Trusted string `json:"trusted"`
	Detail  string `json:"detail,omitempty"`

	// hostKey is the machines file's host key field for the key that
	// verified when setup connected ("": it did not get that far).
	hostKey string
}

type setupReport struct {
	NixVersion string `json:"nixVersion"`
	// NixSupported is false for a Nix offload cannot serve as its hook.
	NixSupported bool           `json:"nixSupported"`
	Daemon       bool           `json:"daemon"`
	NixConf      string         `json:"nixConf"`
	Hook         string         `json:"hook"`
	Builders     []builderTrust `json:"builders"`
	Steps        []step         `json:"steps"`
	Changed      bool           `json:"changed"`
	// RestartDaemon is true when nix-daemon must be restarted to see
	// the change.
	RestartDaemon bool `json:"restartDaemon"`
}

func (c setupCmd) Run(rc *runContext) error {
	r := &setupReport{Builders: []builderTrust{}}
	hookPath := c.Hook
	if hookPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return failed(fmt.Errorf("setup: finding this program's path: %w", err), "pass --hook /path/to/offload")
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
	r.NixSupported = true
	if r.NixVersion == "" {
		r.NixSupported = false
		add(false, "Nix not found on PATH (nix-store --version)", "install Nix first (Debian: apt-get install nix-bin)")
	} else {
		ok, note := nixSupport(r.NixVersion)
		r.NixSupported = ok
		if ok {
			add(true, "found "+r.NixVersion+note, "")
		} else {
			add(false, "found "+r.NixVersion+": "+note, "use Nix (2.8 to 2.34 are tested), or Lix's own remote builds instead of offload")
		}
	}
	r.Daemon = usesDaemon(rc.env.Getenv)
	if r.Daemon {
		add(true, "builds run through nix-daemon: the hook runs as root, with root's SSH keys, ~/.ssh/config and known_hosts, and the daemon's environment (not yours)", "")
	} else {
		add(true, "single-user Nix: the hook runs as you, with your SSH keys and ~/.ssh/config", "")
	}

	// 2. build-hook in nix.conf.
	conf, err := nixconf.Load(rc.env.Getenv)
	if err != nil {
		return usageErr(fmt.Errorf("setup: reading Nix's configuration: %w", err), "fix the line it names")
	}
	r.NixConf = filepath.Join(conf.ConfDir, "nix.conf")
	current, origin, set := conf.Get("build-hook")
	wantLine := "build-hook = " + hookPath
	hookOK := set && strings.Fields(current) != nil && strings.Fields(current)[0] == hookPath
	switch {
	case hookOK:
		add(true, "build-hook is offload ("+origin+")", "")
	case c.Write && set && current != "" && !c.Force:
		return failed(fmt.Errorf("setup: build-hook is already %q (%s)", current, origin), "pass --force to replace it")
	case c.Write:
		if err := writeHookLine(r.NixConf, wantLine); err != nil {
			return failed(fmt.Errorf("setup: %w", err), "run as root, or add the line yourself")
		}
		r.Changed = true
		add(true, "wrote "+wantLine+" to "+r.NixConf+" (backup: "+r.NixConf+".before-offload)", "")
		if r.Daemon {
			r.RestartDaemon = true
			add(false, "nix-daemon reads nix.conf when it starts", "restart it: systemctl restart nix-daemon (or however this machine runs it)")
		}
	case set && current != "" && !c.Force:
		add(false, fmt.Sprintf("build-hook is %q (%s), not offload", current, origin),
			fmt.Sprintf("replace that line with %q (offload setup --write --force does it)", wantLine))
	default:
		fix := fmt.Sprintf("add %q to %s (offload setup --write does it)", wantLine, r.NixConf)
		if !r.Daemon && os.Geteuid() != 0 {
			fix += fmt.Sprintf(", or for your user only: export NIX_CONFIG=%q", wantLine)
		}
		add(false, "build-hook does not name offload", fix)
	}

	// 3. Builders.
	setting, borigin := conf.Builders(rc.env.Getenv)
	if rc.global.Builders != "" {
		setting, borigin = rc.global.Builders, "--builders"
	}
	if borigin == "default" {
		borigin = strings.TrimPrefix(setting, "@") + " (Nix's default)"
	} else if f, ok := strings.CutPrefix(setting, "@"); ok && !strings.Contains(f, "\n") {
		borigin = f + " (" + borigin + ")"
	}
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
		sshOpts := rc.hookSSHOptions(r.Daemon)
		unpinned := map[int]int{} // index in ms → its step, decided once setup has connected
		for i, m := range ms {
			if m.PublicHostKey == "" {
				unpinned[i] = len(r.Steps)
				add(false, m.Name+": no host key pinned in the machines line; the known_hosts of the user the hook runs as must have it",
					"add field 8: base64 -w0 /etc/ssh/ssh_host_ed25519_key.pub (run on "+m.Name+")")
			}
			for _, f := range missingIdentities(m, sshOpts) {
				who := "your"
				if r.Daemon {
					who = "root's"
				}
				add(false, fmt.Sprintf("%s: identity file %s (%s) does not exist; the hook logs in with %s keys", m.Name, f.path, f.from, who),
					"create it (ssh-keygen -t ed25519 -f "+f.path+") and add its .pub to the builder's authorized_keys, or name another key")
			}
		}
		switch {
		case c.Offline:
			add(true, "on each builder the SSH user must be root or in trusted-users (or require-sigs = false there); not checked (--offline)", "")
		case r.Daemon && os.Geteuid() != 0:
			add(false, "on each builder the SSH user must be root or in trusted-users; not checked: under nix-daemon the hook logs in as root, and you are not root",
				"run sudo offload setup (or sudo offload check) to connect as the hook would")
		default:
			r.Builders = probeTrustAll(rc.ctx, ms, sshOpts)
			// A host key that verified through known_hosts is how Nix
			// itself checks builders by default: no failure, but pinning
			// it keeps it right wherever the machines file is used.
			for i, at := range unpinned {
				if k := r.Builders[i].hostKey; k != "" {
					r.Steps[at] = step{OK: true,
						What: ms[i].Name + ": host key verified through known_hosts (not pinned in the machines line)",
						Hint: "to pin it, put " + k + " in field 8 of " + ms[i].Name + "'s machines line (the base64 of its host key line)"}
				}
			}
			for _, b := range r.Builders {
				switch b.Trusted {
				case "yes":
					add(true, b.Name+": the SSH user is trusted there (an unsigned path was accepted)", "")
				case "no":
					add(false, b.Name+": the SSH user is not trusted there: "+b.Detail,
						"on "+b.Name+", add the SSH user to trusted-users in nix.conf (NixOS: nix.settings.trusted-users) and restart its nix-daemon")
				default:
					add(false, b.Name+": trust not checked: "+b.Detail, "run offload check "+b.Name+" to see why it cannot be reached")
				}
			}
		}
	}
	if v, _, ok := conf.Get("max-jobs"); ok && v != "0" {
		add(true, "max-jobs = "+v+": builds may also run here; set max-jobs = 0 to send every build away", "")
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
			if s.Hint != "" {
				fmt.Fprintf(rc.env.Stdout, "       hint: %s\n", s.Hint)
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

var nixVersionWords = regexp.MustCompile(`\((Nix|Lix)[^)]*\)\s+(\d+)\.(\d+)`)

// Tested versions of Nix, as client and as builder.
const (
	testedMinor    = 8
	testedMaxMinor = 34
)

// nixSupport tells whether offload can be the build hook of the Nix whose
// `nix-store --version` is version, and a note: Lix ≥ 2.94 speaks to its
// hook in Cap'n Proto RPC instead of the build-hook protocol, so offload
// cannot serve it; Nix outside the tested versions is served but said so.
func nixSupport(version string) (ok bool, note string) {
	m := nixVersionWords.FindStringSubmatch(version)
	if m == nil {
		return true, " (version not recognised; offload is tested with Nix 2." + strconv.Itoa(testedMinor) + " and 2." + strconv.Itoa(testedMaxMinor) + ")"
	}
	major, _ := strconv.Atoi(m[2])
	minor, _ := strconv.Atoi(m[3])
	if m[1] == "Lix" {
		if major > 2 || minor >= 94 {
			return false, "Lix 2.94 and later talk to the build hook in Cap'n Proto RPC, which offload does not speak; Nix would run offload and fail every remote build"
		}
		return true, " (Lix before 2.94 uses Nix's hook protocol; not tested)"
	}
	switch {
	case major != 2:
		return true, " (not tested: offload is tested with Nix 2.8 to 2.34)"
	case minor < testedMinor:
		return true, " (older than any tested Nix: offload is tested with Nix 2.8 to 2.34)"
	case minor > testedMaxMinor:
		return true, " (newer than any tested Nix: offload is tested with Nix 2.8 to 2.34)"
	}
	return true, ""
}

// hookSSHOptions are the SSH options the hook resolves its settings
// with: under nix-daemon the hook runs as root, so the .ssh read is
// root's (the daemon's NIX_SSHOPTS is not known here, so the caller's is
// kept).
func (rc *runContext) hookSSHOptions(daemon bool) ssh.Options {
	o := rc.sshOptions(rc.env.Getenv)
	if daemon && os.Geteuid() != 0 {
		o.Home = "/root"
		if u, err := user.LookupId("0"); err == nil && u.HomeDir != "" {
			o.Home = u.HomeDir
		}
	}
	return o
}

func (rc *runContext) sshOptions(env func(string) string) ssh.Options {
	timeout := ssh.DefaultConnectTimeout
	if s, err := rc.settings(); err == nil {
		timeout = s.ConnectTimeout()
	}
	return ssh.Options{ConnectTimeout: timeout, Env: env}
}

type identity struct{ path, from string }

// missingIdentities lists the identity files that m's SSH settings name
// explicitly (the machines file, ssh_config, NIX_SSHOPTS) and that do not
// exist: OpenSSH skips them silently and the login fails later with a
// less helpful message. Default identities are not listed.
func missingIdentities(m spec.Machine, opts ssh.Options) []identity {
	if m.Scheme != "ssh" && m.Scheme != "ssh-ng" {
		return nil
	}
	s, err := ssh.Resolve(m, opts)
	if err != nil || s.Local {
		return nil
	}
	from := s.Sources["identityfile"]
	if from == "" || from == "default" {
		return nil
	}
	var out []identity
	for _, f := range s.IdentityFiles {
		if _, err := os.Stat(f); errors.Is(err, os.ErrNotExist) {
			out = append(out, identity{f, from})
		}
	}
	return out
}

// probeTrustAll runs probeTrust on every ssh:// builder at once.
func probeTrustAll(ctx context.Context, ms []spec.Machine, opts ssh.Options) []builderTrust {
	out := make([]builderTrust, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		out[i] = builderTrust{Name: m.Name, URI: m.URI, Trusted: "unknown"}
		if m.Scheme != "ssh" {
			out[i].Detail = m.Scheme + ":// builders are not supported yet"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].Trusted, out[i].Detail, out[i].hostKey = testOnlyProbeTrust(ctx, m, opts)
		}()
	}
	wg.Wait()
	return out
}

// testOnlyProbeTrust is probeTrust, replaced in tests.
var testOnlyProbeTrust = probeTrust

// probeTrust connects to m and asks its Nix whether it trusts the SSH
// user (builder.Conn.ProbeTrust). hostKey is the machines file's host key
// field for the key that verified, once connected.
func probeTrust(ctx context.Context, m spec.Machine, opts ssh.Options) (trusted, detail, hostKey string) {
	ctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout+30*time.Second)
	defer cancel()
	c, err := builder.Dial(ctx, &m, builder.Options{ConnectTimeout: opts.ConnectTimeout, Getenv: opts.Env, Logf: opts.Logf})
	var he *builder.HandshakeError
	if errors.As(err, &he) && he.HostKey != nil {
		hostKey = ssh.PinnedKey(he.HostKey)
	}
	if err != nil {
		return "unknown", err.Error(), hostKey
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Abort)
	defer stop()
	if k := c.HostKey(); k != nil {
		hostKey = ssh.PinnedKey(k)
	}
	trusted, detail = c.ProbeTrust()
	return trusted, detail, hostKey
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
