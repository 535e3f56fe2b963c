// SPDX-License-Identifier: MIT

package ssh

// Rules for this file: under nix-daemon offload runs as root for every
// user, so no file another local user can change may steer it. As ssh(1)
// does, the home directory comes from the user database, never from
// $HOME (which sudo -E and su pass on), and a config file that another
// user (other than root) owns or that group or others can write is
// refused (OpenSSH readconf.c, "Bad owner or permissions"). Stricter
// than ssh(1): known_hosts files must pass the same check to vouch for
// a host or be written to, accept-new never follows a symbolic link,
// and a private key that group or others can read is refused whoever
// owns it (OpenSSH authfile.c sshkey_perm_ok checks only the user's own
// files). Every refusal is one line naming the file and the fix.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// maxConfigSize caps what is read of one ssh_config file.
const maxConfigSize = 1 << 20

// homeDir returns the home directory and the name of the user the
// process runs as, from the user database (os/user reads /etc/passwd
// without cgo). o.Home wins when set. Without a database entry, $HOME
// is used only if it is a directory of this user's that group and
// others cannot write; else "/", where no ~/.ssh is expected.
func homeDir(o *Options, s *Settings) (home, name string) {
	uid := os.Getuid()
	// Not user.Current: without cgo it falls back to $HOME.
	u, uerr := user.LookupId(strconv.Itoa(uid))
	if uerr == nil {
		name = u.Username
	}
	switch {
	case o.Home != "":
		return o.Home, name
	case uerr == nil && u.HomeDir != "":
		return u.HomeDir, name
	}
	if h := o.getenv("HOME"); h != "" {
		if fi, err := os.Stat(h); err == nil && fi.IsDir() && trusted(fi) == "" {
			s.Notes = append(s.Notes, fmt.Sprintf("uid %d has no entry in the user database; using HOME=%s", uid, h))
			return h, name
		}
	}
	s.Notes = append(s.Notes, fmt.Sprintf("uid %d has no entry in the user database and HOME is not a directory of its own: no ~/.ssh files are read", uid))
	return "/", name
}

// trusted says why a file others could change is not to be trusted, or
// "" when only its owner, who is the process's user or root, can.
func trusted(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "no owner information"
	}
	if uid := int(st.Uid); uid != 0 && uid != os.Getuid() {
		return fmt.Sprintf("it belongs to uid %d, not to uid %d or root", uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Sprintf("group or others can write it (mode %#o)", fi.Mode().Perm())
	}
	return ""
}

// fix is what to do about a file trusted refused.
func fix(path, why string) string {
	if strings.HasPrefix(why, "it belongs") {
		return "remove it, or chown " + strconv.Itoa(os.Getuid()) + " " + path + " once its contents are checked"
	}
	return "chmod go-w " + path
}

// readConfig reads an ssh_config file that only its owner, the user or
// root, can change. A missing file is returned as the error from
// os.Open; a refused one as an error naming the file and the fix.
func readConfig(path string) ([]byte, error) {
	return readChecked(path, func(fi fs.FileInfo) error {
		if why := trusted(fi); why != "" {
			return &permError{fmt.Sprintf("ssh: bad owner or permissions on %s: %s; %s", path, why, fix(path, why))}
		}
		return nil
	})
}

// readChecked reads up to maxConfigSize bytes of path unless refuse,
// given the opened file's information, returns an error. Checking the
// open file, not the name, leaves no gap for the file to be swapped.
func readChecked(path string, refuse func(fs.FileInfo) error) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := refuse(fi); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(f, maxConfigSize))
}

// permError is a file refused for its owner or mode.
type permError struct{ msg string }

func (e *permError) Error() string { return e.msg }

// readPrivateKey reads an identity file that group and others cannot
// read.
func readPrivateKey(path string) ([]byte, error) {
	return readChecked(path, func(fi fs.FileInfo) error {
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return &permError{fmt.Sprintf("identity file %s is not used: its permissions %#o let others read the private key; chmod 600 %s", path, perm, path)}
		}
		return nil
	})
}

// trustedKnownHosts says why a known_hosts file may not vouch for a host,
// or "" when it may.
func trustedKnownHosts(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if why := trusted(fi); why != "" {
		return fmt.Sprintf("%s is not used: %s; %s", path, why, fix(path, why)), nil
	}
	return "", nil
}

// maxIncludeDepth is how deep Include directives nest, as in
// github.com/kevinburke/ssh_config (and OpenSSH's READCONF_MAX_DEPTH).
const maxIncludeDepth = 5

// checkIncludes applies readConfig's check to every file the Include
// directives in data name, and to the files those include. The
// ssh_config package reads included files by itself; a relative name
// is looked up in its idea of the home directory (os/user's, which
// falls back to $HOME), so both that and home are checked.
func checkIncludes(data []byte, from, home string, depth int) error {
	for _, line := range strings.Split(string(data), "\n") {
		key, rest := splitDirective(line)
		if !strings.EqualFold(key, "include") {
			continue
		}
		if depth >= maxIncludeDepth {
			return fmt.Errorf("ssh: %s: Include nested more than %d deep", from, maxIncludeDepth)
		}
		for _, pat := range strings.Fields(rest) {
			if strings.HasPrefix(pat, "#") {
				break
			}
			for _, g := range includeGlobs(pat, from, home) {
				matches, _ := filepath.Glob(g)
				for _, m := range matches {
					inc, err := readConfig(m)
					if err != nil {
						var pe *permError
						if errors.As(err, &pe) {
							return fmt.Errorf("%w (included from %s)", err, from)
						}
						continue // the ssh_config package reports it
					}
					if err := checkIncludes(inc, m, home, depth+1); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// splitDirective splits an ssh_config line into its keyword and the
// rest ("Key value", "Key=value").
func splitDirective(line string) (key, rest string) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", ""
	}
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return line, ""
	}
	rest = strings.TrimLeft(line[i:], " \t")
	rest = strings.TrimPrefix(rest, "=")
	return line[:i], rest
}

// includeGlobs are the patterns an Include of pat in the file from may
// read, as github.com/kevinburke/ssh_config resolves them.
func includeGlobs(pat, from, home string) []string {
	if filepath.IsAbs(pat) {
		return []string{pat}
	}
	if strings.HasPrefix(filepath.Clean(from), "/etc/ssh") {
		return []string{filepath.Join("/etc/ssh", pat)}
	}
	var globs []string
	homes := []string{home}
	if u, err := user.Current(); err == nil {
		homes = append(homes, u.HomeDir)
	} else {
		homes = append(homes, os.Getenv("HOME"))
	}
	for _, h := range homes {
		if h == "" {
			continue
		}
		if strings.HasPrefix(pat, "~/") {
			globs = append(globs, filepath.Join(h, pat[2:]))
		} else {
			globs = append(globs, filepath.Join(h, ".ssh", pat))
		}
	}
	return globs
}
