// SPDX-License-Identifier: MIT

package ssh

// Rules for this file: precedence follows OpenSSH, where the first
// obtained value of an option wins (ssh_config(5), "DESCRIPTION"), and
// Nix, which puts its options on ssh's command line:
//
//	ssh [user@]host -x <NIX_SSHOPTS…> [-i key] [-oUserKnownHostsFile=…] [-C] [-p port] …
//
// (NixOS/nix src/libstore/ssh.cc, SSHMaster::startCommand). So the
// command line layer is: the URI's user, the NIX_SSHOPTS words in order,
// the machine's key, the URI's port. IdentityFile accumulates over all
// layers. ssh_config parsing is github.com/kevinburke/ssh_config; Match
// lines are evaluated here (see match.go) because it handles only a few
// criteria.

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	sshconfig "github.com/kevinburke/ssh_config"
	gossh "golang.org/x/crypto/ssh"

	"github.com/offload-nix/offload/pkg/spec"
)

// Defaults.
const (
	DefaultConnectTimeout      = 10 * time.Second
	DefaultServerAliveInterval = 15 * time.Second
	DefaultServerAliveCountMax = 3
)

// Options are the caller's knobs for Resolve and Dial.
type Options struct {
	// ConnectTimeout bounds the whole connection set-up (TCP, proxy,
	// SSH handshake, authentication) when ssh_config and NIX_SSHOPTS
	// set no ConnectTimeout. 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Env looks up environment variables (NIX_SSHOPTS, SSH_AUTH_SOCK).
	// nil means os.Getenv. HOME is not used: as for ssh(1), the home
	// directory is the user database's.
	Env func(string) string
	// Home, if set, is the directory whose .ssh is read instead of the
	// home directory of the process's user, e.g. root's for a command
	// that shows what a hook under nix-daemon would do. It must not
	// come from the environment.
	Home string
	// Logf receives warnings (ignored options, skipped keys). nil
	// discards them. It must be safe for concurrent use.
	Logf func(format string, args ...any)

	// etcDir replaces /etc/ssh in tests.
	etcDir string
	// jumpDepth counts ProxyJump hops, against loops.
	jumpDepth int
}

func (o *Options) getenv(k string) string {
	if o.Env == nil {
		return os.Getenv(k)
	}
	return o.Env(k)
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

func (o *Options) etc() string {
	if o.etcDir != "" {
		return o.etcDir
	}
	return "/etc/ssh"
}

// Settings are the resolved connection settings for one machine.
type Settings struct {
	// Host is the machine's host as written in its URI (OpenSSH's
	// "original host", which Host and Match patterns see).
	Host string
	// Local is true for a machine named exactly "localhost" with no
	// user or port: Nix runs its command locally, without SSH.
	Local bool

	HostName              string
	Port                  int
	User                  string
	IdentityFiles         []string
	IdentitiesOnly        bool
	IdentityAgent         string // socket path, "" for none
	UserKnownHostsFiles   []string
	GlobalKnownHostsFiles []string
	HostKeyAlias          string
	StrictHostKeyChecking string // "yes" or "accept-new"
	HashKnownHosts        bool
	ConnectTimeout        time.Duration
	ServerAliveInterval   time.Duration // 0 disables keepalives
	ServerAliveCountMax   int
	ProxyJump             string // "" for none
	ProxyCommand          string // "" for none, unexpanded
	// PinnedHostKey is the machines file's host key; when set it is the
	// only key accepted, and known_hosts files are not read.
	PinnedHostKey gossh.PublicKey
	// Compression is set by -C in NIX_SSHOPTS, Compression yes in
	// ssh_config and ?compress=true in the machine's URI. x/crypto/ssh
	// has no compression: it asks for internal/builder's compressed
	// copies instead, at compress-level.
	Compression bool

	// Sources maps a lowercase ssh_config keyword ("hostname", "port",
	// …, and "pinnedhostkey") to where its value came from, e.g.
	// "NIX_SSHOPTS -p", "/root/.ssh/config:12", "default".
	Sources map[string]string
	// Notes are warnings about the resolution: options ignored, Match
	// blocks not evaluated, files that could not be read.
	Notes []string

	home      string
	localUser string
	cmdUser   string // the remote user from the command line layer
}

// optionNames lists the ssh_config keywords Resolve uses, in the
// order Explain prints them.
var optionNames = []string{
	"hostname", "port", "user", "identityfile", "identitiesonly", "identityagent",
	"userknownhostsfile", "globalknownhostsfile", "hostkeyalias",
	"stricthostkeychecking", "hashknownhosts", "connecttimeout",
	"serveraliveinterval", "serveralivecountmax", "proxyjump", "proxycommand",
	"compression",
}

// ignoredOptions are keywords that offload accepts on the command line
// but does not act on, with the reason given in Explain.
var ignoredOptions = map[string]string{
	"batchmode":              "offload never prompts",
	"forwardagent":           "offload never forwards the agent",
	"forwardx11":             "offload never forwards X11",
	"controlmaster":          "offload keeps its own connection",
	"controlpath":            "offload keeps its own connection",
	"controlpersist":         "offload keeps its own connection",
	"loglevel":               "offload reports through its own log",
	"permitlocalcommand":     "offload runs no local command",
	"localcommand":           "offload runs no local command",
	"requesttty":             "offload never asks for a terminal",
	"passwordauthentication": "offload authenticates with keys only",
}

// layer is one source of option values, in precedence order.
type layer struct {
	name string
	// vals maps a keyword to its values and their sources, in order.
	vals map[string][]sourced
}

type sourced struct {
	val, from string
}

func (l *layer) add(key, val, from string) {
	if l.vals == nil {
		l.vals = map[string][]sourced{}
	}
	key = strings.ToLower(key)
	l.vals[key] = append(l.vals[key], sourced{val, from})
}

// Resolve computes the connection settings for m. It reads NIX_SSHOPTS
// through o.Env, ~/.ssh/config (or the file named by -F) and
// /etc/ssh/ssh_config. It fails only on input it cannot make sense of:
// a malformed NIX_SSHOPTS, an option value that is not valid, a host
// key in the machines file that does not parse, or a config file that
// another user could have written (perm.go).
func Resolve(m spec.Machine, o Options) (*Settings, error) {
	s := &Settings{Host: m.Host, Sources: map[string]string{}, cmdUser: m.User}
	s.home, s.localUser = homeDir(&o, s)

	if m.Host == "localhost" && m.User == "" && m.Port == 0 {
		// Nix: authority.to_string() == "localhost" runs the command
		// without ssh (src/libstore/ssh.cc, SSHMaster::isMasterRunning
		// / startCommand, fakeSSH).
		s.Local = true
		return s, nil
	}

	// Command line layer.
	var cmd layer
	cmd.name = "command line"
	if m.User != "" {
		cmd.add("user", m.User, "machine URI")
	}
	var configFile string
	if v := o.getenv("NIX_SSHOPTS"); v != "" {
		words, err := SplitShell(v)
		if err != nil {
			return nil, fmt.Errorf("ssh: NIX_SSHOPTS: %w", err)
		}
		f, err := parseArgs(words, &cmd, s)
		if err != nil {
			return nil, fmt.Errorf("ssh: NIX_SSHOPTS: %w", err)
		}
		configFile = f
	}
	if m.SSHKey != "" {
		cmd.add("identityfile", m.SSHKey, "machines file (ssh key)")
	}
	if m.Port != 0 {
		cmd.add("port", strconv.Itoa(m.Port), "machine URI")
	}
	if m.Params["compress"] == "true" {
		cmd.add("compression", "yes", "machine URI (compress=true)")
	}

	layers := []*layer{&cmd}
	if configFile != "" {
		if configFile != "none" {
			l, err := loadConfig(expandTilde(configFile, s.home), s, &o, true)
			if err != nil {
				return nil, err
			}
			layers = append(layers, l)
		}
		// ssh(1) -F: "the system-wide configuration file will be ignored".
	} else {
		for _, f := range []string{filepath.Join(s.home, ".ssh", "config"), filepath.Join(o.etc(), "ssh_config")} {
			l, err := loadConfig(f, s, &o, false)
			if err != nil {
				return nil, err
			}
			layers = append(layers, l)
		}
	}

	first := func(key string) (sourced, bool) {
		for _, l := range layers {
			if v := l.vals[key]; len(v) > 0 {
				return v[0], true
			}
		}
		return sourced{}, false
	}
	get := func(key, def string) string {
		if v, ok := first(key); ok {
			s.Sources[key] = v.from
			return v.val
		}
		if def != "" {
			s.Sources[key] = "default"
		}
		return def
	}

	// HostName and User first: other values expand %h and %r.
	hn := get("hostname", m.Host)
	s.HostName = s.expand(hn, 0, m.Host, "") // %h is the original host here
	s.User = get("user", s.localUser)
	portStr := get("port", "22")
	p, err := strconv.Atoi(portStr)
	if err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("ssh: port %q (%s): not a port number", portStr, s.Sources["port"])
	}
	s.Port = p

	// IdentityFile accumulates, command line first.
	for _, l := range layers {
		for _, v := range l.vals["identityfile"] {
			if strings.EqualFold(v.val, "none") {
				continue
			}
			f := s.expand(v.val, p, m.Host, s.User)
			if !slices.Contains(s.IdentityFiles, f) {
				s.IdentityFiles = append(s.IdentityFiles, f)
				if _, ok := s.Sources["identityfile"]; !ok {
					s.Sources["identityfile"] = v.from
				} else if !strings.Contains(s.Sources["identityfile"], v.from) {
					s.Sources["identityfile"] += ", " + v.from
				}
			}
		}
	}
	if len(s.IdentityFiles) == 0 {
		// ssh(1): the defaults are used only when no IdentityFile is given.
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			s.IdentityFiles = append(s.IdentityFiles, filepath.Join(s.home, ".ssh", n))
		}
		s.Sources["identityfile"] = "default"
	}

	if s.IdentitiesOnly, err = yesNo(get("identitiesonly", "no")); err != nil {
		return nil, fmt.Errorf("ssh: IdentitiesOnly (%s): %w", s.Sources["identitiesonly"], err)
	}
	if s.Compression, err = yesNo(get("compression", "no")); err != nil {
		return nil, fmt.Errorf("ssh: Compression (%s): %w", s.Sources["compression"], err)
	}
	if s.HashKnownHosts, err = yesNo(get("hashknownhosts", "no")); err != nil {
		return nil, fmt.Errorf("ssh: HashKnownHosts (%s): %w", s.Sources["hashknownhosts"], err)
	}
	switch a := get("identityagent", "SSH_AUTH_SOCK"); {
	case strings.EqualFold(a, "none"):
	case a == "SSH_AUTH_SOCK":
		s.IdentityAgent = o.getenv("SSH_AUTH_SOCK")
	case strings.HasPrefix(a, "$"):
		s.IdentityAgent = o.getenv(strings.TrimPrefix(a, "$"))
	default:
		s.IdentityAgent = s.expand(a, p, m.Host, s.User)
	}

	for _, f := range strings.Fields(get("userknownhostsfile", "~/.ssh/known_hosts ~/.ssh/known_hosts2")) {
		if f != "none" {
			s.UserKnownHostsFiles = append(s.UserKnownHostsFiles, s.expand(f, p, m.Host, s.User))
		}
	}
	etc := o.etc()
	for _, f := range strings.Fields(get("globalknownhostsfile", filepath.Join(etc, "ssh_known_hosts")+" "+filepath.Join(etc, "ssh_known_hosts2"))) {
		if f != "none" {
			s.GlobalKnownHostsFiles = append(s.GlobalKnownHostsFiles, s.expand(f, p, m.Host, s.User))
		}
	}
	s.HostKeyAlias = get("hostkeyalias", "")

	switch v := strings.ToLower(get("stricthostkeychecking", "yes")); v {
	case "yes", "ask":
		s.StrictHostKeyChecking = "yes"
	case "accept-new":
		s.StrictHostKeyChecking = "accept-new"
	case "no", "off":
		s.StrictHostKeyChecking = "yes"
		s.Notes = append(s.Notes, fmt.Sprintf("StrictHostKeyChecking %s (%s) ignored: offload always verifies host keys", v, s.Sources["stricthostkeychecking"]))
		s.Sources["stricthostkeychecking"] += " (ignored value " + v + ")"
	default:
		return nil, fmt.Errorf("ssh: StrictHostKeyChecking %q (%s): want yes, accept-new or no", v, s.Sources["stricthostkeychecking"])
	}

	ct := get("connecttimeout", "")
	switch {
	case ct != "":
		n, err := strconv.Atoi(ct)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("ssh: ConnectTimeout %q (%s): not a number of seconds", ct, s.Sources["connecttimeout"])
		}
		s.ConnectTimeout = time.Duration(n) * time.Second
	case o.ConnectTimeout > 0:
		s.ConnectTimeout = o.ConnectTimeout
		s.Sources["connecttimeout"] = "offload"
	default:
		s.ConnectTimeout = DefaultConnectTimeout
		s.Sources["connecttimeout"] = "default"
	}
	if s.ConnectTimeout == 0 {
		// ConnectTimeout 0 means "the system's TCP timeout" in
		// OpenSSH; a hung builder must not hang a build for minutes.
		s.ConnectTimeout = DefaultConnectTimeout
		s.Notes = append(s.Notes, "ConnectTimeout 0 replaced by the default 10s")
	}
	sai := get("serveraliveinterval", "")
	if sai == "" {
		s.ServerAliveInterval = DefaultServerAliveInterval
		s.Sources["serveraliveinterval"] = "default"
	} else {
		n, err := strconv.Atoi(sai)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("ssh: ServerAliveInterval %q (%s): not a number of seconds", sai, s.Sources["serveraliveinterval"])
		}
		s.ServerAliveInterval = time.Duration(n) * time.Second
	}
	cm := get("serveralivecountmax", strconv.Itoa(DefaultServerAliveCountMax))
	if s.ServerAliveCountMax, err = strconv.Atoi(cm); err != nil || s.ServerAliveCountMax < 1 {
		return nil, fmt.Errorf("ssh: ServerAliveCountMax %q (%s): not a positive number", cm, s.Sources["serveralivecountmax"])
	}

	// ProxyJump and ProxyCommand: whichever is obtained first wins
	// (ssh_config(5): "the first obtained value will be used").
	pj, pjOK := first("proxyjump")
	pc, pcOK := first("proxycommand")
	if pjOK && (!pcOK || layerIndex(layers, "proxyjump", pj) <= layerIndex(layers, "proxycommand", pc)) {
		if !strings.EqualFold(pj.val, "none") {
			s.ProxyJump = pj.val
		}
		s.Sources["proxyjump"] = pj.from
	} else if pcOK {
		if !strings.EqualFold(pc.val, "none") {
			s.ProxyCommand = pc.val
		}
		s.Sources["proxycommand"] = pc.from
	}

	// The machines file's host key, else ?base64-ssh-public-host-key=
	// (the machines file wins: src/libstore/machines.cc, Machine::openStore
	// in Nix 2.8, Machine::completeStoreReference now).
	b64, from := m.PublicHostKey, "machines file (host key)"
	if b64 == "" {
		b64, from = m.Params["base64-ssh-public-host-key"], "machine URI (base64-ssh-public-host-key)"
	}
	if b64 != "" {
		k, err := ParsePinnedKey(b64)
		if err != nil {
			return nil, err
		}
		s.PinnedHostKey = k
		s.Sources["pinnedhostkey"] = from
	}
	return s, nil
}

// layerIndex returns the position of the layer that supplied v for key.
func layerIndex(ls []*layer, key string, v sourced) int {
	for i, l := range ls {
		if vs := l.vals[key]; len(vs) > 0 && vs[0] == v {
			return i
		}
	}
	return len(ls)
}

// PinnedKey returns the machines file's host key field for k: base64 of
// its public key line, as ParsePinnedKey reads it.
func PinnedKey(k gossh.PublicKey) string {
	return base64.StdEncoding.EncodeToString(gossh.MarshalAuthorizedKey(k))
}

// ParsePinnedKey decodes a machines file host key: base64 of a public
// key line such as "ssh-ed25519 AAAA… comment" (src/libstore/ssh.cc,
// SSHMaster::addCommonSSHOpts).
// Plain base64 of the key blob is accepted too.
func ParsePinnedKey(b64 string) (gossh.PublicKey, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("ssh: machine host key: not base64: %w", err)
	}
	if k, _, _, _, err := gossh.ParseAuthorizedKey(raw); err == nil {
		return k, nil
	}
	if k, err := gossh.ParsePublicKey(raw); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("ssh: machine host key: %q is not a public key line", firstLine(raw))
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 60 {
		b = b[:60]
	}
	return string(b)
}

func yesNo(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q: want yes or no", v)
}

func expandTilde(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}

// expand replaces ~ and the tokens of ssh_config(5) "TOKENS" that make
// sense here: %% %d %h %n %p %r %u %i.
func (s *Settings) expand(v string, port int, orig, ruser string) string {
	v = expandTilde(v, s.home)
	if !strings.Contains(v, "%") {
		return v
	}
	out, _ := expandTokens(v, func(c byte) (string, bool, error) {
		switch c {
		case 'd':
			return s.home, true, nil
		case 'h':
			if s.HostName != "" {
				return s.HostName, true, nil
			}
			return orig, true, nil
		case 'n':
			return orig, true, nil
		case 'p':
			return strconv.Itoa(port), true, nil
		case 'r':
			return ruser, true, nil
		case 'u':
			return s.localUser, true, nil
		case 'i':
			return strconv.Itoa(os.Getuid()), true, nil
		}
		return "", false, nil
	})
	return out
}

// expandTokens replaces %% in v by % and every other %c by what token
// returns for c. A c that token does not know (ok false) stays as it is,
// and so does a % at the end; an error from token stops the expansion.
func expandTokens(v string, token func(c byte) (s string, ok bool, err error)) (string, error) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' || i+1 == len(v) {
			b.WriteByte(v[i])
			continue
		}
		i++
		if v[i] == '%' {
			b.WriteByte('%')
			continue
		}
		t, ok, err := token(v[i])
		if err != nil {
			return "", err
		}
		if !ok {
			b.WriteByte('%')
			b.WriteByte(v[i])
			continue
		}
		b.WriteString(t)
	}
	return b.String(), nil
}

// loadConfig reads one ssh_config file into a layer. A missing file is
// an empty layer; a file that does not parse is reported in the notes
// and skipped (ssh(1) would refuse to run; a build should not). A file
// that another user could have written is an error (perm.go).
func loadConfig(path string, s *Settings, o *Options, explicit bool) (*layer, error) {
	l := &layer{name: path}
	data, err := readConfig(path)
	var pe *permError
	if errors.As(err, &pe) {
		return nil, err
	}
	if err != nil {
		if !os.IsNotExist(err) || explicit {
			s.Notes = append(s.Notes, fmt.Sprintf("%s: not read: %v", path, err))
			o.logf("ssh: %s: not read: %v", path, err)
		}
		return l, nil
	}
	if err := checkIncludes(data, path, s.home, 0); err != nil {
		return nil, err
	}
	ruser := s.cmdUser
	if ruser == "" {
		ruser = s.localUser
	}
	alias := strings.ToLower(s.Host)
	data, notes := rewriteMatch(data, path, alias, ruser, s.localUser)
	s.Notes = append(s.Notes, notes...)
	cfg, err := sshconfig.DecodeBytes(data)
	if err != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("%s: not used: %v", path, err))
		o.logf("ssh: %s: not used: %v", path, err)
		return l, nil
	}
	for _, key := range optionNames {
		if key == "identityfile" {
			vals, err := cfg.GetAll(alias, key)
			if err != nil {
				continue
			}
			for _, v := range vals {
				l.add(key, v, path)
			}
			continue
		}
		v, err := cfg.Get(alias, key)
		if err != nil || v == "" {
			continue
		}
		l.add(key, v, path+lineOf(cfg, alias, key))
	}
	return l, nil
}

// lineOf finds the line of the first matching entry for key, for
// Explain.
func lineOf(cfg *sshconfig.Config, alias, key string) string {
	for _, h := range cfg.Hosts {
		if !h.Matches(alias) {
			continue
		}
		for _, n := range h.Nodes {
			if kv, ok := n.(*sshconfig.KV); ok && strings.EqualFold(kv.Key, key) {
				return ":" + strconv.Itoa(kv.Pos().Line)
			}
		}
	}
	return ""
}

// parseArgs reads ssh command line words (from NIX_SSHOPTS) into l. It
// returns the -F file, if any.
func parseArgs(words []string, l *layer, s *Settings) (configFile string, err error) {
	const withArg = "BbcDEeFIiJLlmOoPpQRSWw"
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "--" || !strings.HasPrefix(w, "-") || w == "-" {
			return "", fmt.Errorf("unexpected word %q: only options are allowed", w)
		}
		for j := 1; j < len(w); j++ {
			c := w[j]
			if !strings.ContainsRune(withArg, rune(c)) {
				switch c {
				case 'C':
					l.add("compression", "yes", "NIX_SSHOPTS -C")
				case '4', '6', 'A', 'a', 'f', 'G', 'g', 'K', 'k', 'M', 'N', 'n', 'q', 's', 'T', 't', 'V', 'v', 'X', 'x', 'Y', 'y':
					if c != 'x' && c != 'a' && c != 'q' && c != 'v' && c != 'T' {
						s.Notes = append(s.Notes, fmt.Sprintf("NIX_SSHOPTS -%c ignored", c))
					}
				default:
					return "", fmt.Errorf("unknown option -%c", c)
				}
				continue
			}
			arg := w[j+1:]
			if arg == "" {
				if i+1 == len(words) {
					return "", fmt.Errorf("option -%c needs a value", c)
				}
				i++
				arg = words[i]
			}
			from := "NIX_SSHOPTS -" + string(c)
			switch c {
			case 'F':
				if configFile == "" {
					configFile = arg
				}
			case 'i':
				l.add("identityfile", arg, from)
			case 'p':
				l.add("port", arg, from)
			case 'l':
				l.add("user", arg, from)
				if s.cmdUser == "" {
					s.cmdUser = arg
				}
			case 'J':
				l.add("proxyjump", arg, from)
			case 'o':
				k, v, err := splitOption(arg)
				if err != nil {
					return "", err
				}
				lk := strings.ToLower(k)
				from = "NIX_SSHOPTS -o" + k
				switch {
				case slices.Contains(optionNames, lk):
					l.add(lk, v, from)
					if lk == "user" && s.cmdUser == "" {
						s.cmdUser = v
					}
				case ignoredOptions[lk] != "":
					s.Notes = append(s.Notes, fmt.Sprintf("%s ignored: %s", from, ignoredOptions[lk]))
				default:
					s.Notes = append(s.Notes, fmt.Sprintf("%s ignored: offload does not use it", from))
				}
			default:
				s.Notes = append(s.Notes, fmt.Sprintf("NIX_SSHOPTS -%c %s ignored", c, arg))
			}
			break
		}
	}
	return configFile, nil
}

// splitOption splits "Key=Value" or "Key Value" as ssh -o does.
func splitOption(a string) (k, v string, err error) {
	a = strings.TrimSpace(a)
	i := strings.IndexAny(a, "= \t")
	if i <= 0 {
		return "", "", fmt.Errorf("option %q: want Key=Value", a)
	}
	k, v = a[:i], strings.TrimLeft(a[i:], " \t")
	v = strings.TrimPrefix(v, "=")
	v = strings.TrimSpace(v)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if v == "" {
		return "", "", fmt.Errorf("option %q: no value", a)
	}
	return k, v, nil
}

// Explain writes the settings, one per line, with where each came from.
func (s *Settings) Explain(w io.Writer) error {
	var b strings.Builder
	if s.Local {
		fmt.Fprintf(&b, "host %s: local, no SSH (Nix runs the command directly for a machine named localhost)\n", s.Host)
		_, err := io.WriteString(w, b.String())
		return err
	}
	line := func(k, v string) {
		src := s.Sources[strings.ToLower(k)]
		if src == "" {
			src = "default"
		}
		fmt.Fprintf(&b, "%-22s %s  (%s)\n", k, v, src)
	}
	fmt.Fprintf(&b, "host %s\n", s.Host)
	line("HostName", s.HostName)
	line("Port", strconv.Itoa(s.Port))
	line("User", s.User)
	line("IdentityFile", strings.Join(s.IdentityFiles, " "))
	line("IdentitiesOnly", yesno(s.IdentitiesOnly))
	agent := s.IdentityAgent
	if agent == "" {
		agent = "none"
	}
	line("IdentityAgent", agent)
	if s.PinnedHostKey != nil {
		line("PinnedHostKey", s.PinnedHostKey.Type()+" "+gossh.FingerprintSHA256(s.PinnedHostKey)+" (known_hosts files not used)")
	} else {
		line("UserKnownHostsFile", strings.Join(s.UserKnownHostsFiles, " "))
		line("GlobalKnownHostsFile", strings.Join(s.GlobalKnownHostsFiles, " "))
		if s.HostKeyAlias != "" {
			line("HostKeyAlias", s.HostKeyAlias)
		}
		line("StrictHostKeyChecking", s.StrictHostKeyChecking)
	}
	line("ConnectTimeout", s.ConnectTimeout.String())
	line("ServerAliveInterval", s.ServerAliveInterval.String())
	line("ServerAliveCountMax", strconv.Itoa(s.ServerAliveCountMax))
	if s.Compression {
		line("Compression", "yes (copies compressed by the builder's zstd or gzip)")
	}
	if s.ProxyJump != "" {
		line("ProxyJump", s.ProxyJump)
	}
	if s.ProxyCommand != "" {
		line("ProxyCommand", s.ProxyCommand)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func yesno(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
