// SPDX-License-Identifier: MIT

package ssh

// Rules for this file: nothing prompts. An encrypted identity file is
// used only through an ssh-agent that holds its key. Explicit identity
// files are offered before other agent keys, so a server's MaxAuthTries
// (default 6) is not used up by unrelated agent keys.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// auth holds the signers for one connection.
type auth struct {
	signers []gossh.Signer
	files   []string // where each signer came from
	notes   []string // keys that could not be used, and why
	agent   io.Closer
}

func (a *auth) close() {
	if a.agent != nil {
		a.agent.Close()
	}
}

func (a *auth) add(sg gossh.Signer, from string) {
	pk := sg.PublicKey().Marshal()
	for _, x := range a.signers {
		if string(x.PublicKey().Marshal()) == string(pk) {
			return
		}
	}
	a.signers = append(a.signers, sg)
	a.files = append(a.files, from)
}

// loadAuth gathers signers from the identity files and the agent.
func (s *Settings) loadAuth(o *Options) *auth {
	a := &auth{}
	var agentSigners []gossh.Signer
	if s.IdentityAgent != "" {
		c, err := net.Dial("unix", s.IdentityAgent)
		if err != nil {
			a.notes = append(a.notes, fmt.Sprintf("ssh-agent at %s: %v", s.IdentityAgent, err))
		} else {
			a.agent = c
			agentSigners, err = agent.NewClient(c).Signers()
			if err != nil {
				a.notes = append(a.notes, fmt.Sprintf("ssh-agent at %s: %v", s.IdentityAgent, err))
			}
		}
	}
	inAgent := func(pub gossh.PublicKey) gossh.Signer {
		if pub == nil {
			return nil
		}
		for _, sg := range agentSigners {
			if keyEqual(sg.PublicKey(), pub) {
				return sg
			}
		}
		return nil
	}
	isDefault := s.Sources["identityfile"] == "default"
	for _, f := range s.IdentityFiles {
		data, err := readPrivateKey(f)
		var pe *permError
		if errors.As(err, &pe) {
			a.notes = append(a.notes, pe.msg)
			o.logf("ssh: %s", pe.msg)
			continue
		}
		if err != nil {
			// A .pub file alone names an agent key (ssh_config(5) IdentityFile).
			if pub := readPub(f + ".pub"); pub != nil {
				if sg := inAgent(pub); sg != nil {
					a.add(sg, f+" (agent)")
					continue
				}
			}
			if !isDefault {
				a.notes = append(a.notes, fmt.Sprintf("identity file %s: %v", f, err))
				o.logf("ssh: identity file %s: %v", f, err)
			}
			continue
		}
		sg, err := gossh.ParsePrivateKey(data)
		var pm *gossh.PassphraseMissingError
		switch {
		case err == nil:
			a.add(sg, f)
		case errors.As(err, &pm):
			pub := pm.PublicKey
			if pub == nil {
				pub = readPub(f + ".pub")
			}
			if sg := inAgent(pub); sg != nil {
				a.add(sg, f+" (agent)")
				continue
			}
			msg := fmt.Sprintf("identity file %s is encrypted and no ssh-agent holds its key: run ssh-add %s in an agent that offload can reach through SSH_AUTH_SOCK, or use a key without a passphrase (offload never asks for one)", f, f)
			a.notes = append(a.notes, msg)
			o.logf("ssh: %s", msg)
		default:
			if pub, _, _, _, perr := gossh.ParseAuthorizedKey(data); perr == nil {
				if sg := inAgent(pub); sg != nil {
					a.add(sg, f+" (agent)")
					continue
				}
				a.notes = append(a.notes, fmt.Sprintf("identity file %s is a public key that no ssh-agent holds", f))
				continue
			}
			a.notes = append(a.notes, fmt.Sprintf("identity file %s: %v", f, err))
			o.logf("ssh: identity file %s: %v", f, err)
		}
	}
	if !s.IdentitiesOnly {
		for _, sg := range agentSigners {
			a.add(sg, "ssh-agent")
		}
	}
	return a
}

func readPub(f string) gossh.PublicKey {
	data, err := os.ReadFile(f)
	if err != nil {
		return nil
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(data)
	if err != nil {
		return nil
	}
	return pub
}

// describe lists the keys offered, for an authentication error.
func (a *auth) describe() string {
	var b strings.Builder
	for i, sg := range a.signers {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s (%s)", sg.PublicKey().Type(), gossh.FingerprintSHA256(sg.PublicKey()), a.files[i])
	}
	return b.String()
}
