// SPDX-License-Identifier: MIT

package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// ErrNoBuilder is wrapped by Find's error when nothing matches.
var ErrNoBuilder = errors.New("no such builder")

// Find returns the index in ms of the machine named by nameOrURI: its URI
// (Key), the same URI as a machines file may write it (e.g. "root@b1" for
// "ssh://root@b1"), or its short Name. A name that several machines share
// is an error that lists their URIs.
func Find(ms []Machine, nameOrURI string) (int, error) {
	for i, m := range ms {
		if m.URI == nameOrURI {
			return i, nil
		}
	}
	var probe Machine
	if _, err := probe.setURI(nameOrURI); err == nil && probe.URI != nameOrURI {
		for i, m := range ms {
			if m.URI == probe.URI {
				return i, nil
			}
		}
	}
	found := -1
	var uris []string
	for i, m := range ms {
		if m.Name == nameOrURI {
			if found < 0 {
				found = i
			}
			uris = append(uris, m.URI)
		}
	}
	switch {
	case len(uris) > 1:
		return -1, fmt.Errorf("spec: %q names several builders (%s): give the URI", nameOrURI, strings.Join(uris, ", "))
	case found < 0:
		return -1, fmt.Errorf("spec: %w %q", ErrNoBuilder, nameOrURI)
	}
	return found, nil
}

// Lint returns warnings about likely mistakes in ms that Nix accepts: a
// builder listed twice, max jobs 0, a machine with no systems, a mandatory
// feature not listed as supported, an SSH key file that is missing or
// readable by others, and a builder on localhost. statFile stats key
// files; nil means os.Stat.
func Lint(ms []Machine, statFile func(string) (fs.FileInfo, error)) []Warning {
	if statFile == nil {
		statFile = os.Stat
	}
	var ws []Warning
	warn := func(m Machine, format string, args ...any) {
		ws = append(ws, Warning{Source: m.Source, Msg: fmt.Sprintf(format, args...)})
	}
	seen := make(map[string]string, len(ms))
	for _, m := range ms {
		if first, dup := seen[m.Key()]; dup {
			warn(m, "%s is listed twice (first at %s): Nix treats the two lines as separate builders, each with its own max jobs", m.Key(), first)
		} else {
			seen[m.Key()] = m.Source
		}
		if m.MaxJobs == 0 {
			warn(m, "%s has max jobs 0: it matches builds but never gets one", m.Key())
		}
		if len(m.Systems) == 0 {
			warn(m, "%s lists no systems: it never gets a build", m.Key())
		}
		for _, f := range m.MandatoryFeatures {
			if !slices.Contains(m.SupportedFeatures, f) {
				warn(m, "%s: mandatory feature %q is not also listed as supported; Nix counts mandatory features as supported, so this works, but listing it in field 6 says so plainly", m.Key(), f)
			}
		}
		if m.SSHKey != "" && m.isSSH() {
			fi, err := statFile(m.SSHKey)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				warn(m, "%s: SSH key %s does not exist", m.Key(), m.SSHKey)
			case err != nil:
				warn(m, "%s: SSH key %s: %v", m.Key(), m.SSHKey, unwrapPath(err))
			case fi.Mode().Perm()&0o077 != 0:
				warn(m, "%s: SSH key %s is readable by others (mode %#o); ssh refuses such keys: chmod 600 %s", m.Key(), m.SSHKey, fi.Mode().Perm(), m.SSHKey)
			}
		}
		if m.isSSH() {
			switch {
			case m.Host == "localhost" && m.User == "" && m.Port == 0:
				warn(m, "%s: Nix runs a builder called localhost without SSH, against the same store; the build deadlocks on its output locks", m.Key())
			case m.Host == "localhost" || m.Host == "127.0.0.1" || m.Host == "::1":
				warn(m, "%s is this machine: building there uses the same store, which deadlocks on the output locks", m.Key())
			}
		}
	}
	return ws
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
