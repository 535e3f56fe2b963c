// SPDX-License-Identifier: MIT

package ssh

// Rules for this file: a host key is always verified. A pinned key
// (machines file) is the only key accepted, whatever the host name or port
// (stricter than Nix, which writes a temporary known_hosts,
// src/libstore/ssh.cc, SSHMaster::addCommonSSHOpts). Otherwise known_hosts
// files decide, looked up as OpenSSH does (sshconnect.c check_host_key): by
// HostKeyAlias when set, else by HostName, as "[host]:port" when the port
// is not 22.

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a host key that was refused: unknown, changed, or not
// the pinned one.
type HostKeyError struct {
	// Host is the name the key was looked up under, e.g. "b1",
	// "[b1]:2222" or a HostKeyAlias.
	Host string
	// Key is the key the server offered.
	Key gossh.PublicKey
	// Pinned is the machines file's key, if one was pinned.
	Pinned gossh.PublicKey
	// Want holds the keys known_hosts has for Host; empty means the
	// host is unknown.
	Want []knownhosts.KnownKey
	// Files are the known_hosts files that were read; the first is the
	// one to fix for an unknown host.
	Files []string
	// Err is the underlying error for certificates and revoked keys.
	Err error
}

func (e *HostKeyError) Unwrap() error { return e.Err }

// Fingerprint returns the SHA256 fingerprint of the offered key.
func (e *HostKeyError) Fingerprint() string {
	if e.Key == nil {
		return ""
	}
	return gossh.FingerprintSHA256(e.Key)
}

func (e *HostKeyError) Error() string {
	offered := ""
	if e.Key != nil {
		offered = e.Key.Type() + " " + gossh.FingerprintSHA256(e.Key)
	}
	switch {
	case e.Pinned != nil:
		return fmt.Sprintf("host key for %s is %s, but the machines file pins %s %s: if the builder's key really changed, update the host key field (base64 of its /etc/ssh/ssh_host_*_key.pub)",
			e.Host, offered, e.Pinned.Type(), gossh.FingerprintSHA256(e.Pinned))
	case e.Err != nil:
		return fmt.Sprintf("host key for %s (%s) refused: %v (known_hosts files: %s)", e.Host, offered, e.Err, strings.Join(e.Files, ", "))
	case len(e.Want) == 0:
		file := "~/.ssh/known_hosts"
		if len(e.Files) > 0 {
			file = e.Files[0]
		}
		return fmt.Sprintf("host key for %s is unknown: the server offers %s, which is in none of %s; check the fingerprint on the builder (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then add its key to %s as %q or put its base64 in the machines file",
			e.Host, offered, strings.Join(e.Files, ", "), file, e.Host+" "+e.Key.Type()+" AAAA…")
	default:
		var b strings.Builder
		for i, w := range e.Want {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s:%d (%s %s)", w.Filename, w.Line, w.Key.Type(), gossh.FingerprintSHA256(w.Key))
		}
		return fmt.Sprintf("host key for %s CHANGED: the server offers %s, known_hosts has %s; if the builder was reinstalled, remove the old entry (ssh-keygen -R '%s' -f FILE) and add the new key, else someone may be intercepting the connection",
			e.Host, offered, b.String(), e.Host)
	}
}

// knownHostsName is the name a host's key is looked up under.
func (s *Settings) knownHostsName() string {
	if s.HostKeyAlias != "" {
		return s.HostKeyAlias
	}
	if s.Port == 22 {
		return s.HostName
	}
	return "[" + s.HostName + "]:" + strconv.Itoa(s.Port)
}

// knownHostsAddr is knownHostsName as "host:port" for the knownhosts
// package.
func (s *Settings) knownHostsAddr() string {
	if s.HostKeyAlias != "" {
		return net.JoinHostPort(s.HostKeyAlias, "22")
	}
	return net.JoinHostPort(s.HostName, strconv.Itoa(s.Port))
}

// algorithmsFor lists the host key algorithms that present key type t.
func algorithmsFor(t string) []string {
	switch t {
	case gossh.KeyAlgoRSA:
		return []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256, gossh.KeyAlgoRSA}
	case gossh.CertAlgoRSAv01:
		return []string{gossh.CertAlgoRSASHA512v01, gossh.CertAlgoRSASHA256v01, gossh.CertAlgoRSAv01}
	}
	return []string{t}
}

var probeKey = sync.OnceValue(func() gossh.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	k, err := gossh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})

// hostKeyCheck returns the callback and the host key algorithms to
// offer, and a function that reports which files were read.
func (s *Settings) hostKeyCheck(o *Options) (gossh.HostKeyCallback, []string, error) {
	name := s.knownHostsName()
	if s.PinnedHostKey != nil {
		want := s.PinnedHostKey
		cb := func(_ string, _ net.Addr, key gossh.PublicKey) error {
			if keyEqual(key, want) {
				return nil
			}
			return &HostKeyError{Host: name, Key: key, Pinned: want}
		}
		return cb, algorithmsFor(want.Type()), nil
	}

	var files []string
	for _, f := range append(append([]string(nil), s.UserKnownHostsFiles...), s.GlobalKnownHostsFiles...) {
		why, err := trustedKnownHosts(f)
		if err != nil {
			continue
		}
		if why != "" {
			s.Notes = append(s.Notes, why)
			o.logf("ssh: %s", why)
			continue
		}
		if _, err := knownhosts.New(f); err != nil {
			s.Notes = append(s.Notes, fmt.Sprintf("%s: not used: %v", f, err))
			o.logf("ssh: %s: not used: %v", f, err)
			continue
		}
		files = append(files, f)
	}
	// Name the user's file first in messages even if it does not exist yet.
	shown := files
	if len(s.UserKnownHostsFiles) > 0 && (len(files) == 0 || files[0] != s.UserKnownHostsFiles[0]) {
		shown = append([]string{s.UserKnownHostsFiles[0]}, files...)
	}
	var db gossh.HostKeyCallback
	if len(files) > 0 {
		var err error
		if db, err = knownhosts.New(files...); err != nil {
			return nil, nil, fmt.Errorf("ssh: %w", err)
		}
	}
	addr := s.knownHostsAddr()
	remoteAddr := &net.TCPAddr{IP: net.IPv4zero}

	// Ask the database which keys it has for the host, with a key it
	// cannot hold, to offer the server those key types first. Its
	// answer includes @cert-authority keys, which stand for host
	// certificates: when there are any, certificates go first.
	var algos []string
	if db != nil {
		cas := certAuthorities(files)
		if len(cas) > 0 {
			for _, a := range gossh.SupportedAlgorithms().HostKeys {
				if strings.Contains(a, "-cert-") {
					algos = append(algos, a)
				}
			}
		}
		var ke *knownhosts.KeyError
		if err := db(addr, remoteAddr, probeKey()); errors.As(err, &ke) {
			for _, w := range ke.Want {
				if cas[string(w.Key.Marshal())] {
					continue
				}
				for _, a := range algorithmsFor(w.Key.Type()) {
					if !contains(algos, a) {
						algos = append(algos, a)
					}
				}
			}
		}
	}
	if len(algos) > 0 {
		for _, a := range gossh.SupportedAlgorithms().HostKeys {
			if !contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}

	cb := func(_ string, _ net.Addr, key gossh.PublicKey) error {
		var err error
		if db == nil {
			err = &knownhosts.KeyError{}
		} else {
			err = db(addr, remoteAddr, key)
		}
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			if len(ke.Want) == 0 && s.StrictHostKeyChecking == "accept-new" {
				if aerr := s.addKnownHost(key, o); aerr != nil {
					return &HostKeyError{Host: name, Key: key, Files: shown, Err: aerr}
				}
				return nil
			}
			return &HostKeyError{Host: name, Key: key, Want: ke.Want, Files: shown}
		}
		return &HostKeyError{Host: name, Key: key, Files: shown, Err: err}
	}
	return cb, algos, nil
}

// certAuthorities returns the keys of @cert-authority lines.
func certAuthorities(files []string) map[string]bool {
	cas := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(data), "@cert-authority") {
			continue
		}
		for len(data) > 0 {
			marker, _, key, _, rest, err := gossh.ParseKnownHosts(data)
			if err != nil {
				break
			}
			if marker == "cert-authority" {
				cas[string(key.Marshal())] = true
			}
			data = rest
		}
	}
	return cas
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func keyEqual(a, b gossh.PublicKey) bool {
	return a.Type() == b.Type() && string(a.Marshal()) == string(b.Marshal())
}

// addKnownHost records key in the first user known_hosts file
// (StrictHostKeyChecking accept-new).
func (s *Settings) addKnownHost(key gossh.PublicKey, o *Options) error {
	if len(s.UserKnownHostsFiles) == 0 {
		return errors.New("accept-new: no UserKnownHostsFile to record the key in")
	}
	f := s.UserKnownHostsFiles[0]
	if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	host := knownhosts.Normalize(s.knownHostsAddr())
	if s.HashKnownHosts {
		host = knownhosts.HashHostname(host)
	}
	// Never through a symbolic link, and only to a file of the user's
	// that nobody else can write (perm.go).
	fh, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("accept-new: %s is a symbolic link, which offload does not write through: make it a file of its own, or add the key to the file it points to yourself", f)
	}
	if err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	fi, err := fh.Stat()
	if err == nil {
		why := trusted(fi)
		if st, ok := fi.Sys().(*syscall.Stat_t); why == "" && ok && int(st.Uid) != os.Getuid() {
			why = fmt.Sprintf("it belongs to uid %d, not to uid %d", st.Uid, os.Getuid())
		}
		if why == "" && !fi.Mode().IsRegular() {
			why = "it is not a regular file"
		}
		if why != "" {
			fh.Close()
			return fmt.Errorf("accept-new: %s is not written: %s; %s", f, why, fix(f, why))
		}
	}
	_, err = fh.WriteString(host + " " + string(gossh.MarshalAuthorizedKey(key)))
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	o.logf("ssh: added host key %s %s for %s to %s (StrictHostKeyChecking accept-new)", key.Type(), gossh.FingerprintSHA256(key), s.knownHostsName(), f)
	return nil
}
